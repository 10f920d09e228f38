"""Shared machinery of the FreeScale attention processors.

- :func:`project_self_attention` / :func:`finish_attention`: the projections around the attention
  kernel exactly as diffusers' ``AttnProcessor2_0`` does them for self-attention (group_norm,
  to_q/to_k/to_v, per-head norm_q/norm_k, to_out, residual_connection, rescale_output_factor),
  so a processor only decides which tokens attend to which.
- :func:`windowed_attention`: all windows of all batch items in ONE scaled-dot-product attention,
  through index gathers described by a :class:`~vidscale.freescale.windows.WindowPlan`. Both it
  and :func:`full_attention` take the attention kernel as ``attend`` (torch's SDPA by default), so
  a model whose processor dispatches to a chosen backend (diffusers' ``dispatch_attention_fn``)
  runs its local windows on that backend too.
- :class:`PlanCache`: a bounded memo of plans, one per context (no module-level state).
- :func:`replaced_processors`: swap some processors of a diffusers model and always put the
  previous ones back, even when the body raises.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .windows import WindowPlan

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""An attention kernel on (batch, heads, length, head_dim) queries, keys and values."""


def project_self_attention(attn: Any, hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Queries, keys and values in token layout (B, N, heads * head_dim) for self-attention.

    Per-head norms (``norm_q`` / ``norm_k``, used by some models) act on the head dimension, so
    they are applied on a (B, N, heads, head_dim) view: the same values AttnProcessor2_0 computes.
    """
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    key = attn.to_k(hidden_states)
    value = attn.to_v(hidden_states)
    if attn.norm_q is not None:
        query = _per_head(attn.norm_q, query, attn.heads)
    if attn.norm_k is not None:
        key = _per_head(attn.norm_k, key, attn.heads)
    return query, key, value


def _per_head(norm: nn.Module, x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return norm(x.view(b, n, heads, c // heads)).view(b, n, c)


def finish_attention(attn: Any, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Output projection, dropout, optional residual and rescale, as AttnProcessor2_0."""
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def _heads(x: torch.Tensor, groups: int, heads: int) -> torch.Tensor:
    """(B, groups * L, C) -> (B * groups, heads, L, C // heads), a view (no copy)."""
    b, n, c = x.shape
    return x.view(b * groups, n // groups, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(B * groups, heads, L, d) -> (B, groups * L, heads * d)."""
    bg, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, (bg // batch) * length, heads * dim)


def full_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int,
    attend: Attend = F.scaled_dot_product_attention,
) -> torch.Tensor:
    """Ordinary attention of every token to every token: (B, N, C) -> (B, N, C)."""
    q, k, v = (_heads(x, 1, heads) for x in (query, key, value))
    out = attend(q, k, v)
    return _merge_heads(out, query.shape[0]).to(query.dtype)


def windowed_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, plan: WindowPlan,
    attend: Attend = F.scaled_dot_product_attention,
) -> torch.Tensor:
    """Local attention inside the windows of ``plan``: (B, N, C) -> (B, N, C).

    One ``index_select`` per tensor brings every window of every batch item side by side
    (B, W * L, C), a view makes that (B * W, heads, L, d), ONE SDPA call attends inside all of
    them, and one more gather reads each token's window outputs back and averages them with the
    plan's weights. No Python loop over windows; deterministic (gathers, no scatter-add).
    """
    batch = query.shape[0]
    n_windows = plan.query_index.shape[0]
    q = _heads(query.index_select(1, plan.query_index.flatten()), n_windows, heads)
    k = _heads(key.index_select(1, plan.key_index.flatten()), n_windows, heads)
    v = _heads(value.index_select(1, plan.key_index.flatten()), n_windows, heads)
    slots = _merge_heads(attend(q, k, v), batch).to(query.dtype)
    read = slots.index_select(1, plan.source.flatten())  # (B, N * M, C)
    if plan.weight is None:
        return read
    read = read.view(batch, plan.n_tokens, plan.source.shape[1], -1)
    return (read * plan.weight.to(read.dtype)[None, :, :, None]).sum(dim=2)


def check_plain_self_attention(
    attn: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> None:
    """Windowed processors handle token self-attention only; say so instead of computing nonsense."""
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError("windowed attention is for self-attention without a mask; this layer got "
                         "encoder_hidden_states or an attention_mask")
    if hidden_states.ndim != 3 or getattr(attn, "spatial_norm", None) is not None:
        raise ValueError(f"windowed attention expects (B, N, C) tokens, got {tuple(hidden_states.shape)}")


class PlanCache:
    """A bounded memo of window plans, keyed by geometry (a token or frame count) and placed on the
    layer's device.

    One cache is shared by the processors one context installs and dies with them, so plans are
    built once per grid size (a few per UNet) and nothing outlives the ``with`` block.
    """

    def __init__(self, build: Callable[[int], Any], max_entries: int = 32):
        self._build = build
        self._max_entries = max_entries
        self._entries: dict[tuple[int, str], Any] = {}

    def get(self, key: int, device: torch.device) -> Any:
        """The built value for ``key``, with its plans on ``device`` (built on first use)."""
        full_key = (key, str(device))
        if full_key not in self._entries:
            self._fill(full_key, key, device)
        return self._entries[full_key]

    @torch.compiler.disable
    def _fill(self, full_key: tuple[int, str], key: int, device: torch.device) -> None:
        """Build outside any torch.compile trace: plans are Python loops over every token, which
        TorchDynamo would otherwise unroll (a minute per layer at VC2 sizes). The compiled graph
        sees only the cached tensors; the miss costs one graph break on the first call."""
        if len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[full_key] = _placed(self._build(key), device)


def _placed(value: Any, device: torch.device) -> Any:
    """Move every WindowPlan inside ``value`` (a plan, a tuple holding one, or None)."""
    if isinstance(value, WindowPlan):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_placed(item, device) for item in value)
    return value


class AttentionModel(Protocol):
    """A diffusers model with swappable attention processors (``AttentionMixin``: the UNets, Wan's
    transformer)."""

    @property
    def attn_processors(self) -> dict[str, Any]: ...

    def set_attn_processor(self, processor: Any) -> None: ...


def processor_names(model: AttentionModel, pattern: str) -> list[str]:
    """Keys of ``model.attn_processors`` (``...attn1.processor``) that fully match ``pattern``."""
    return [name for name in model.attn_processors if re.fullmatch(pattern, name)]


@contextmanager
def replaced_processors(
    model: AttentionModel, make: Callable[[str, Any], Any], names: list[str]
) -> Iterator[dict[str, Any]]:
    """Install ``make(name, previous_processor)`` on the layers ``names``; restore on exit.

    diffusers' ``set_attn_processor`` pops entries from the dict it is given, so each call gets
    a fresh dict built from an untouched snapshot. The restore puts back the very same processor
    objects, also when the body raises. Yields the installed processors by name.
    """
    before = dict(model.attn_processors)
    installed = {name: make(name, before[name]) for name in names}
    try:
        model.set_attn_processor({**before, **installed})
        yield installed
    finally:
        model.set_attn_processor(dict(before))


__all__ = [
    "Attend", "project_self_attention", "finish_attention", "full_attention", "windowed_attention",
    "check_plain_self_attention", "AttentionModel", "PlanCache", "processor_names", "replaced_processors",
]
