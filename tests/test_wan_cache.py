"""``sampling.cache`` on Wan: diffusers' MagCache and First Block Cache, set up per sampling run.

On random weights only the mechanics can be checked (which steps are skipped, that results are
repeatable and that nothing is left behind); whether a cache keeps the picture needs real weights.
"""

from __future__ import annotations

import pytest
import torch

from vidscale.model import wan_cache
from vidscale.model.wan import tiny_wan
from vidscale.pipeline.generate import generate_latents
from vidscale.settings import Settings

RUN = {"sampling.prompt": "a red kite", "sampling.steps": 10, "sampling.guidance_scale": 5.0,
       "generate.frames": 9, "generate.base_width": 32, "generate.base_height": 32,
       "generate.width": 64, "generate.height": 64}
CALLS = 2 * 10 + 2 * 7  # CFG: base 10 steps, the x2 stage restarts at step 3 of 10


@pytest.fixture(scope="module")
def model():
    return tiny_wan()


def _run(model, cache: str) -> tuple[torch.Tensor, int]:
    """The cascade's final latent and how many times a block really computed (MagCache skips a
    block's body; a hook on its attention sees only real computations)."""
    computed = []
    hook = model.transformer.blocks[1].attn1.register_forward_hook(lambda *_: computed.append(1))
    try:
        settings = Settings().replace({**RUN, "sampling.cache": cache})
        return generate_latents(model, settings, generator=torch.Generator().manual_seed(0)), len(computed)
    finally:
        hook.remove()


@pytest.mark.slow
def test_mag_skips_steps_repeatably_with_ratios_calibrated_once(model, monkeypatch):
    plain, plain_calls = _run(model, "none")
    assert plain_calls == CALLS
    calibrations = []
    calibrate = wan_cache.calibrate_mag_ratios
    monkeypatch.setattr("vidscale.backends.wan.calibrate_mag_ratios",
                        lambda *args: calibrations.append(1) or calibrate(*args))
    cached, cached_calls = _run(model, "mag")
    again, _ = _run(model, "mag")
    assert calibrations == [1]  # kept on the model for the next job
    ratios = model.mag_ratios[(10, 3.0)]
    assert len(ratios) == 10 and ratios[0] == 1.0
    assert cached_calls < CALLS  # some steps reused the cached residual
    assert torch.equal(cached, again)  # a resumed or repeated job skips the same steps
    assert not torch.equal(cached, plain)


def test_caches_leave_nothing_behind(model):
    first, _ = _run(model, "none")
    for cache in ("first-block", "mag"):
        latents, _ = _run(model, cache)
        assert latents.shape == first.shape  # a cascade: the cache restarts at each stage's new size
    last, calls = _run(model, "none")
    assert calls == CALLS and torch.equal(last, first)
    assert not model.transformer.is_cache_enabled


def test_a_restarted_run_gets_the_ratios_of_its_own_steps():
    config = wan_cache.cache_config("mag", steps=10, start=3, ratios=[float(k) for k in range(10)])
    assert config.num_inference_steps == 7 and config.mag_ratios.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert wan_cache.cache_config("none", steps=10) is None
