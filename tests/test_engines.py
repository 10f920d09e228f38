"""One engine dispatch (:mod:`vidscale.jobs.engines`): every path checks and finishes a job alike.

The Python API goes through the same checks (a detail matte the job cannot use) and the same
review page as ``vidscale upscale`` and the watch folder.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vidscale
from vidscale.errors import InputError


def test_the_api_refuses_a_matte_for_the_lanczos_engine_before_any_work(make_clip, tmp_path):
    matte = tmp_path / "matte.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(matte)
    output = tmp_path / "out.mov"
    with pytest.raises(InputError, match="needs --engine freescale"):
        vidscale.upscale(make_clip(frames=3), output, preset="preview-lanczos-2x", detail_mask=str(matte))
    assert not output.exists()


def test_the_api_writes_the_review_page_as_the_cli_does(make_clip, tmp_path):
    result = vidscale.upscale(make_clip(frames=3), tmp_path / "out.mov", preset="preview-lanczos-2x", review=True)
    assert result.review == tmp_path / "out_review.html" and result.review.exists()
    assert result.to_dict()["review"] == str(result.review)
