"""Stand-ins that watch what a job does: UNet calls counted, frames kept instead of written."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np


@contextmanager
def unet_calls(model):
    """Counts UNet forward calls (one per step: CFG is batched)."""
    calls = {"n": 0}
    handle = model.unet.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        yield calls
    finally:
        handle.remove()


class KeepFrames:
    """A VideoWriter stand-in that keeps the uint16 frames it is handed (a file would be lossy)."""

    frames: list[np.ndarray] = []

    def __init__(self, *args, **kwargs):
        KeepFrames.frames = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, frames, pts=None):
        KeepFrames.frames.append(frames)


def stop_at_question(k):
    """A ``should_stop`` that says yes from its ``k``-th question on (a step is asked once)."""
    asked = {"n": 0}

    def should_stop():
        asked["n"] += 1
        return asked["n"] >= k
    return should_stop
