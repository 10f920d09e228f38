"""``model.compile``: torch.compile on the UNet's repeated blocks, never on the whole pipeline.

What is compiled: each down, mid and up block of the UNet (nine modules in VC2), one graph per
block and input shape. Compiling those and not the UNet's own forward keeps the parts FreeScale
changes from step to step small and visible to TorchDynamo's guards:

- restrained dilation swaps ``dilation`` / ``padding`` of some convs of ``down_blocks.2/3`` and the
  mid block between steps. Those attributes are guarded, so a block has two cached graphs
  (dilated and not) and alternates between them: no recompile per step;
- scale fusion and temporal windows replace attention processors for a whole stage. Processors of
  the same class and geometry pass the guards, so a new stage or a new chunk at the same size
  reuses the graphs; their plan building runs outside the graph (``torch.compiler.disable``).

TorchDynamo keeps at most ``recompile_limit`` graphs per Python function (8 by default), and the
blocks of one class share their ``forward``: three CrossAttnDownBlock3D instances times (base,
x2, x4) sizes times dilated or not is already more. :func:`compile_blocks` therefore raises that
process-wide limit to :data:`GRAPHS_PER_BLOCK_CLASS` (a hit limit silently runs the rest eagerly).

A block whose compilation fails (no C++ compiler, no Triton, an unsupported op) switches every
compiled block back to eager for the rest of the process, with one warning line.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel

GRAPHS_PER_BLOCK_CLASS = 64  # 3 instances x cascade sizes x dilation states x chunk lengths, with room

log = logging.getLogger("vidscale")


class _Fallback:
    """Shared by the blocks of one model: after the first compile failure everything runs eagerly."""

    def __init__(self) -> None:
        self.failed = False

    def wrap(self, name: str, eager: Callable[..., Any], backend: str | Callable[..., Any]) -> Callable[..., Any]:
        compiled = torch.compile(eager, backend=backend, dynamic=False)

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.failed:
                return eager(*args, **kwargs)
            try:
                return compiled(*args, **kwargs)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # compile errors come from the backend (inductor, triton, a compiler)
                self.failed = True
                root: BaseException = exc
                while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
                    root = inner  # the backend's own error, not dynamo's wrapper
                first = (str(root).strip().splitlines() or [""])[0][:200]
                log.warning("vidscale: torch.compile failed on %s (%s: %s); running eagerly",
                            name, type(root).__name__, first)
                return eager(*args, **kwargs)

        return forward


def block_names(unet: UNet3DConditionModel) -> list[str]:
    """The compiled blocks: ``down_blocks.i``, ``mid_block``, ``up_blocks.i``."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    names += ["mid_block"] if unet.mid_block is not None else []
    return names + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]


def compile_blocks(unet: UNet3DConditionModel, *, backend: str | Callable[..., Any] = "inductor") -> list[str]:
    """Compile each block of ``unet`` in place (lazily: graphs are made at the first calls).

    Returns the block names. Undo with :func:`uncompile_blocks`. ``backend="eager"`` traces
    without generating code (what the tests use: it checks guards and graph breaks in seconds).
    """
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, GRAPHS_PER_BLOCK_CLASS)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 16 * GRAPHS_PER_BLOCK_CLASS)
    fallback = _Fallback()
    names = block_names(unet)
    for name in names:
        block = unet.get_submodule(name)
        if "forward" in vars(block):
            raise ValueError(f"{name} is already compiled or patched")
        block.forward = fallback.wrap(name, block.forward, backend)
    return names


def uncompile_blocks(unet: UNet3DConditionModel) -> None:
    """Inverse of :func:`compile_blocks`: the blocks' own ``forward`` again."""
    for name in block_names(unet):
        vars(unet.get_submodule(name)).pop("forward", None)
