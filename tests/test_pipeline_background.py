"""Reading and writing beside the denoising (``jobs.overlap_io``): same frames, errors surface.

The threads only move work in time, so a run with them must give the very frames of a run
without them; and an error in a thread must end the job with that error, not hang it or vanish.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from watch_helpers import decoded

from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.pipeline import upscale
from vidscale.pipeline.background import Prefetch, Sink
from vidscale.pipeline.upscale import upscale_clip
from vidscale.settings import Settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
        "sampling.steps": 2, "sampling.guidance_scale": 1.0, "output.codec": "h264", "output.crf": 0,
        "output.x264_preset": "ultrafast", "jobs.chunk_frames": 3, "jobs.overlap_frames": 1}


class ReaderBroke(Exception):
    pass


@pytest.fixture(scope="module")
def model():
    return tiny_videocrafter2()


def settings(**overrides) -> Settings:
    return Settings().replace({**TINY, **overrides})


def no_worker_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("vidscale-")]


def test_overlap_on_gives_the_frames_of_overlap_off(model, make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=7)
    on = upscale_clip(clip, tmp_path / "on.mp4", settings(**{"jobs.overlap_io": True}), model=model)
    off = upscale_clip(clip, tmp_path / "off.mp4", settings(**{"jobs.overlap_io": False}), model=model)
    a, b = decoded(on.output), decoded(off.output)
    assert len(a) == len(b) == 7
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert on.job_dir == off.job_dir  # a setting of how the job runs, not of what it makes


def test_an_error_in_the_reader_thread_is_the_jobs_error(model, make_clip, tmp_path, monkeypatch):
    clip = make_clip(width=64, height=48, frames=7)
    real = upscale.chunk_inputs

    def breaks_on_the_third_chunk(model, info, plan, chunk, settings):
        if chunk.index == 2:
            raise ReaderBroke(f"cannot read chunk {chunk.index}")
        return real(model, info, plan, chunk, settings)

    monkeypatch.setattr(upscale, "chunk_inputs", breaks_on_the_third_chunk)
    with pytest.raises(ReaderBroke, match="chunk 2"):
        upscale_clip(clip, tmp_path / "out.mp4", settings(), model=model)
    assert no_worker_threads()
    assert [p.name for p in tmp_path.iterdir()] == [".vidscale-jobs"]  # no output, no temporary file


def test_an_error_in_the_writer_thread_is_the_jobs_error(model, make_clip, tmp_path, monkeypatch):
    clip = make_clip(width=64, height=48, frames=7)

    def broken(*_args):
        raise OSError("disk full while writing")
        yield  # a generator, like the real one

    monkeypatch.setattr(upscale, "decoded_chunk", broken)
    with pytest.raises(OSError, match="disk full"):
        upscale_clip(clip, tmp_path / "out.mp4", settings(), model=model)
    assert no_worker_threads()
    assert [p.name for p in tmp_path.iterdir()] == [".vidscale-jobs"]


def test_prefetch_runs_one_item_ahead_and_stops_when_left():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    with Prefetch(items()) as ready:
        assert next(ready) == 0
        time.sleep(0.2)  # the thread may prepare item 1 and queue it, then item 2 waits for room
        assert len(made) <= 3
    assert no_worker_threads() and len(made) <= 3


def test_a_sink_that_failed_refuses_more_items_instead_of_hanging():
    seen = []

    def consume(item):
        if item == 1:
            raise ValueError("bad item 1")
        seen.append(item)

    with pytest.raises(ValueError, match="bad item 1"):
        with Sink(consume) as sink:
            for item in range(50):
                sink.put(item)
    assert seen == [0] and no_worker_threads()
