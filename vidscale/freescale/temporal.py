"""Temporal windows (FreeNoise): let a 16-frame video model attend over clips of any length.

VideoCrafter2 learned temporal attention on 16 frames and has no temporal position encoding; over
longer clips its attention spreads thin and motion degrades. Its spatial layers work per frame and
its temporal convs are local (kernel 3), so only temporal attention needs windowing: each frame
attends within windows of ``window`` frames placed every ``stride`` frames, and its output is the
pyramid-weighted average of its windows' outputs (:func:`~vidscale.freescale.windows.temporal_plan`;
a final window ends at the last frame, so unlike FreeNoise no frame is left uncovered).

Layers: attn1 and attn2 of every ``temp_attentions`` block (in UNet3D both are self-attention
over frames) and of ``transformer_in``. Hidden states arrive as (B * h * w, F, C). A clip of at
most ``window`` frames goes through the layer's previous processor untouched, so short clips give
bit-for-bit the output they would give without this context.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from .attention import (
    AttentionModel,
    PlanCache,
    check_plain_self_attention,
    finish_attention,
    processor_names,
    project_self_attention,
    replaced_processors,
    windowed_attention,
)
from .windows import temporal_plan

TEMPORAL_SELF_ATTENTION = (
    r"((down_blocks\.\d+\.|up_blocks\.\d+\.|mid_block\.)temp_attentions\.\d+|transformer_in)"
    r"\.transformer_blocks\.\d+\.attn[12]\.processor"
)


class TemporalWindowProcessor:
    """Attention processor for one temporal self-attention layer (see the module docstring)."""

    def __init__(self, inner: Any, window: int, plans: PlanCache):
        self.inner = inner
        self.window = window
        self.plans = plans

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if hidden_states.shape[1] <= self.window:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        check_plain_self_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        plan = self.plans.get(hidden_states.shape[1], hidden_states.device)
        query, key, value = project_self_attention(attn, hidden_states)
        out = windowed_attention(query, key, value, attn.heads, plan)
        return finish_attention(attn, out, hidden_states)


def temporal_attention_names(unet: AttentionModel) -> list[str]:
    """The processor keys temporal windows replace: temporal self-attention and transformer_in."""
    return processor_names(unet, TEMPORAL_SELF_ATTENTION)


@contextmanager
def temporal_windows(
    unet: AttentionModel, *, window: int = 16, stride: int = 4
) -> Iterator[dict[str, TemporalWindowProcessor]]:
    """Install :class:`TemporalWindowProcessor` on every temporal self-attention of ``unet``.

    On exit (also on an exception) the previous processor objects are back on every layer.
    Yields the installed processors by processor key.
    """
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 2 and 1 <= stride <= window, got {window}, {stride}")
    plans = PlanCache(lambda frames: temporal_plan(frames, window, stride))
    with replaced_processors(
        unet, lambda _, previous: TemporalWindowProcessor(previous, window, plans),
        temporal_attention_names(unet),
    ) as installed:
        yield installed


def reschedule_noise(noise: torch.Tensor, window: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise's noise rescheduling for generation: frames past the first window reuse the noise of
    earlier frames, shuffled in groups.

    Frames [i, i+stride) take the noise of frames [i-window, i-window+stride) in a random order
    (drawn from ``generator``), so every window starts from noise the model saw together.
    """
    noise = noise.clone()
    for start in range(window, noise.shape[2], stride):
        count = min(stride, noise.shape[2] - start)
        order = torch.randperm(stride, generator=generator, device=generator.device)[:count]
        noise[:, :, start:start + count] = noise[:, :, start - window + order.to(noise.device)]
    return noise


__all__ = ["TemporalWindowProcessor", "reschedule_noise", "temporal_attention_names", "temporal_windows"]
