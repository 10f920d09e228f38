"""Progress without a terminal: whole lines (start, every 10 %, every 30 s, end, with the ETA),
nested bars too, never carriage returns."""

import io

from vidscale.progress import LINE_SECONDS, LineBar, Progress, duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_lines_not_carriage_return_redraws():
    log = io.StringIO()
    progress = Progress(stream=log)
    with progress.bar("chunks", total=2, unit="chunk") as chunks:
        for _ in range(2):
            with progress.bar("steps", total=50, unit="step") as steps:
                for _ in range(50):
                    steps.update()
            chunks.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "chunks: 0/2 chunk" and lines[-1].startswith("chunks: 2/2 chunk in ")
    assert any(line.startswith("chunks: 1/2 chunk (50%), ETA ") for line in lines)
    # the nested steps write every 10 % too (a GPU chunk is minutes long), indented, and their end
    steps = [line for line in lines if line.startswith("  steps: ")]
    assert [line.split(" step ")[0] for line in steps[:10]] == \
        [f"  steps: {n}/50" for n in range(5, 50, 5)] + ["  steps: 50/50"]
    assert steps[4].startswith("  steps: 25/50 step (50%), ETA ") and steps[9].startswith("  steps: 50/50 step in ")
    assert len(steps) == 20 and len(lines) == 1 + 20 + 1 + 1


def test_every_tenth_of_a_long_stage_is_one_line_with_its_eta():
    clock = Clock()
    log = io.StringIO()
    bar = LineBar("decode", 1000, "frame", log, clock=clock)
    bar.start()
    for _ in range(1000):
        clock.now += 0.01  # 10 s per 1000 frames
        bar.update()
    bar.finish()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[5] == "decode: 500/1000 frame (50%), ETA 5 s"
    assert lines[-1] == "decode: 1000/1000 frame in 10.0 s"


def test_a_slow_nested_bar_writes_a_line_at_least_every_30_seconds():
    """Ten steps of 12 s each: every 10 % is a line, and so is each 30 s within one step's wait;
    a bar without a total says how far it is every 30 s."""
    clock = Clock()
    log = io.StringIO()
    bar = LineBar("steps", 100, "step", log, indent=1, clock=clock)
    bar.start()  # nested: no start line
    times = []
    for _ in range(9):  # 9 % in 108 s: below 10 %, so only the 30 s rule writes
        clock.now += 12.0
        before = log.getvalue().count("\n")
        bar.update()
        if log.getvalue().count("\n") > before:
            times.append(clock.now - 1000.0)
    assert times == [36.0, 72.0, 108.0]  # the first update 30 s or more after the last line
    assert log.getvalue().splitlines()[0] == "  steps: 3/100 step (3%), ETA 19 min 24 s"  # 12 s a step, 97 to go
    untotalled = io.StringIO()
    count = LineBar("frames", None, "frame", untotalled, clock=clock)
    clock.now += LINE_SECONDS
    count.update(7)
    assert untotalled.getvalue() == "frames: 7 frame\n"


def test_a_terminal_still_gets_tqdm_and_disabled_draws_nothing():
    terminal, quiet = Terminal(), io.StringIO()
    with Progress(stream=terminal).bar("decode", total=3) as bar:
        bar.update(3)
    with Progress(enabled=False, stream=quiet).bar("decode", total=3) as bar:
        bar.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert quiet.getvalue() == ""


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (4.4, 75, 4000)] == ["4 s", "1 min 15 s", "1 h 6 min"]
