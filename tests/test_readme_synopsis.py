"""The README's command synopsis is made from the CLI's own parameters, so it cannot drift from --help.

``synopsis()`` walks click's command tree in the order the commands are registered. When the test
fails it prints the block to paste; ``python tests/test_readme_synopsis.py`` rewrites the README's
block in place.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import click
from click.testing import CliRunner

from vidscale.atomic import write_bytes
from vidscale.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- synopsis: generated from --help; `python tests/test_readme_synopsis.py` rewrites it -->"
WIDTH = 104
GENERIC = {"TEXT", "FLOAT", "FLOAT RANGE"}  # click's names for plain types: the option's name says more


def leaf_commands(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """(command path, command) of every command that runs, in the order they are registered."""
    leaves = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            leaves += leaf_commands(command, (*path, name))
        else:
            leaves.append(((*path, name), command))
    return leaves


def metavar(param: click.Option, ctx: click.Context) -> str:
    """The CLI's own metavar; a choice as ``a|b``, a folder as DIR, a count as N, text by its option's name."""
    shown = param.make_metavar(ctx)
    if isinstance(param.type, click.Choice):
        return shown.strip("[]")
    if shown == "DIRECTORY":
        return "DIR"
    if shown in ("INTEGER", "INTEGER RANGE"):
        return "N"
    if shown in GENERIC:
        return max(param.opts, key=len).lstrip("-").split("-")[-1].upper()
    return shown


def usage_item(param: click.Parameter, ctx: click.Context) -> str | None:
    """One argument or option as the synopsis writes it: optional ones in brackets, --help left out."""
    if isinstance(param, click.Argument):
        return param.make_metavar(ctx)
    if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
        return None
    name = max(param.opts, key=len)
    if param.secondary_opts:
        item = f"{name}/{max(param.secondary_opts, key=len)}"
    elif param.is_flag:
        item = name
    else:
        item = f"{name} {metavar(param, ctx)}"
    return item if param.required else f"[{item}]"


def usage(path: tuple[str, ...], command: click.Command) -> list[str]:
    """One command's synopsis, wrapped at WIDTH between items, continued with a 4-space indent."""
    ctx = click.Context(command, info_name=path[-1])
    items = [" ".join(("vidscale", *path))] + [item for p in command.params if (item := usage_item(p, ctx))]
    text = " ".join(item.replace(" ", "\0") for item in items)  # an item never breaks inside
    lines = textwrap.wrap(text, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def synopsis() -> list[str]:
    return [line for path, command in leaf_commands() for line in usage(path, command)]


def readme_block(text: str) -> tuple[int, int]:
    """The line span (first, end) of the fenced block's content right after MARKER in the README."""
    lines = text.splitlines()
    assert MARKER in lines, f"README.md: no line {MARKER!r}; put it in 'Commands', above a ``` block"
    opening = lines.index(MARKER) + 1
    assert lines[opening] == "```", f"README.md: the line after {MARKER!r} must open a ``` block"
    return opening + 1, lines.index("```", opening + 1)


def rewritten(text: str) -> str:
    """The README with its synopsis block's content replaced by :func:`synopsis`."""
    lines = text.splitlines()
    first, end = readme_block(text)
    return "\n".join(lines[:first] + synopsis() + lines[end:]) + "\n"


def test_the_readme_synopsis_is_the_clis():
    text = README.read_text()
    first, end = readme_block(text)
    expected = synopsis()
    assert text.splitlines()[first:end] == expected, (
        "README.md's synopsis differs from the CLI. Run `python tests/test_readme_synopsis.py`, or paste "
        "this block under the synopsis marker:\n```\n" + "\n".join(expected) + "\n```")


def test_every_option_of_each_commands_help_is_in_its_synopsis():
    """Checked against --help's own text, so a parameter the generator skipped would show."""
    runner, seen = CliRunner(), set()
    for path, command in leaf_commands():
        help_text = runner.invoke(main, [*path, "--help"]).output
        options = set(re.findall(r"^  (?:-\w, )?(--[\w-]+)", help_text.split("Options:")[1], re.MULTILINE))
        written = " ".join(line.strip() for line in usage(path, command))
        missing = [o for o in options - {"--help"} if not re.search(rf"{o}(?=[ /\]]|$)", written)]
        assert not missing and "--help" not in written, (path, missing)
        arguments = help_text.splitlines()[0].split(" ".join(path), 1)[1].replace("[OPTIONS]", "").split()
        assert written.startswith(" ".join(("vidscale", *path, *arguments))), path
        seen |= options
    assert {"--compile", "--cluster", "--model", "--keep"} <= seen  # the parse found options at all
    assert [" ".join(p) for p, _ in leaf_commands()][:2] == ["upscale", "generate"]  # registration order


if __name__ == "__main__":
    write_bytes(README, rewritten(README.read_text()).encode())
