"""Progress without a terminal: whole lines (start, every 10 %, end), never carriage returns."""

import io

from vidscale.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_lines_not_carriage_return_redraws():
    log = io.StringIO()
    progress = Progress(stream=log)
    with progress.bar("chunks", total=2, unit="chunk") as chunks:
        for _ in range(2):
            with progress.bar("steps", total=50, unit="step") as steps:
                for _ in range(50):
                    steps.update()
            chunks.update()
    text = log.getvalue()
    assert "\r" not in text
    assert text.splitlines()[0] == "chunks: 0/2 chunk" and "chunks: 1/2 chunk (50%)" in text
    assert text.splitlines()[-1].startswith("chunks: 2/2 chunk in ")
    assert text.count("  steps: 50/50 step in ") == 2 and len(text.splitlines()) == 5


def test_every_tenth_of_a_long_stage_is_one_line():
    log = io.StringIO()
    with Progress(stream=log).bar("decode", total=1000, unit="frame") as bar:
        for _ in range(1000):
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[5] == "decode: 500/1000 frame (50%)"


def test_a_terminal_still_gets_tqdm_and_disabled_draws_nothing():
    terminal, quiet = Terminal(), io.StringIO()
    with Progress(stream=terminal).bar("decode", total=3) as bar:
        bar.update(3)
    with Progress(enabled=False, stream=quiet).bar("decode", total=3) as bar:
        bar.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert quiet.getvalue() == ""
