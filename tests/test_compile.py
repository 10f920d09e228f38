"""``model.compile``: compiled UNet blocks under FreeScale's patches equal eager, without recompiling."""

import logging

import pytest
import torch
from freescale_tiny import tiny_unet, unet_inputs
from torch._dynamo.utils import counters

from vidscale.freescale import freescale_patches, freescale_step
from vidscale.model.compile import compile_blocks, uncompile_blocks
from vidscale.model.schedule import VC2Schedule
from vidscale.pipeline.refine import Denoiser, refine
from vidscale.settings import Settings

# Steps 8 and 9 of 10: the first dilated (tau 0.9), the second not; fusion and temporal windows on.
SETTINGS = Settings().replace({"sampling.steps": 10, "freescale.restart_fraction": 0.8, "freescale.dilate_tau": 0.9,
                               "freescale.temporal_window": 2, "freescale.temporal_stride": 1})


def _refine(unet):
    reference, text = unet_inputs(3, (16, 16))
    method = SETTINGS.freescale
    denoiser = Denoiser(
        eps_fn=lambda x, t: unet(x, t, text).sample,
        stage_patches=lambda: freescale_patches(unet, method, base_size=(8, 8), target_size=(16, 16), scale=2),
        step_patches=lambda i: freescale_step(unet, method, step_index=i, num_steps=10, scale=2))
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
    return refine(denoiser, VC2Schedule(), reference, noise, SETTINGS)


@pytest.mark.slow
def test_compiled_blocks_follow_the_patches_and_compile_once(caplog):
    unet = tiny_unet()
    eager = _refine(unet)
    names = compile_blocks(unet, backend="eager")  # TorchDynamo's tracing and guards, no codegen
    assert names == [f"down_blocks.{i}" for i in range(4)] + ["mid_block"] + [f"up_blocks.{i}" for i in range(4)]
    counters.clear()
    # the eager backend runs the traced graph, i.e. the same torch calls on the same tensors: bit for bit
    assert torch.equal(_refine(unet), eager)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    # A second stage: new processors, dilation on then off again; every graph is reused.
    assert torch.equal(_refine(unet), eager)
    assert counters["stats"]["unique_graphs"] == graphs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    uncompile_blocks(unet)
    assert "forward" not in vars(unet.mid_block)


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_eager_with_one_warning(caplog):
    unet = tiny_unet()
    sample, text = unet_inputs(2, (8, 8))
    with torch.no_grad():
        eager = unet(sample, 500, text).sample

        def broken(graph, example_inputs):
            raise RuntimeError("no C++ compiler found")

        compile_blocks(unet, backend=broken)
        with caplog.at_level(logging.WARNING, logger="vidscale"):  # the same eager code: bit for bit
            assert torch.equal(unet(sample, 500, text).sample, eager)
            assert torch.equal(unet(sample, 500, text).sample, eager)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "running eagerly" in warnings[0] and "no C++ compiler" in warnings[0]
