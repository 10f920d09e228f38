"""``.ci/run`` runs exactly the README's set-up and test commands, so the two cannot drift apart:
a user who follows the README runs what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- ci: the commands .ci/run runs -->"


def readme_commands(text: str) -> list[str]:
    """The command lines of the fenced block right after ``MARKER`` (comments and blanks left out)."""
    after = text.split(MARKER, 1)[1].lstrip("\n")
    assert after.startswith("```"), f"no fenced code block right after {MARKER}"
    block = after.split("\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def in_order(wanted: list[str], lines: list[str]) -> list[str]:
    """The lines of ``wanted`` not found in ``lines`` after the previous one that was."""
    missing, position = [], 0
    for command in wanted:
        try:
            position = lines.index(command, position) + 1
        except ValueError:
            missing.append(command)
    return missing


def test_ci_runs_the_readme_commands_word_for_word_in_order():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in readme, "README.md lost the block .ci/run must follow"
    commands = readme_commands(readme)
    assert commands[-1] == "python -m pytest -q" and any("pip install" in c for c in commands)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert in_order(commands, ci_lines) == []


def test_the_check_catches_a_changed_or_reordered_line():
    commands = ["python3 -m venv .venv", "python -m pip install -e \".[test]\"", "python -m pytest -q"]
    assert in_order(commands, ["python3 -m venv .venv", "python -m pip install -q -e \".[test]\"",
                               "python -m pytest -q"]) == ["python -m pip install -e \".[test]\""]
    assert in_order(commands, list(reversed(commands))) == commands[1:]


def test_the_quickstart_output_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "samples/*_2x.*" in ignored
