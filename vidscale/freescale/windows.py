"""Window geometry for batched local attention: which tokens each window reads and writes.

Every local-attention flavour in this package (overlapping spatial windows, neighborhood patches,
temporal windows) is one :class:`WindowPlan`: per window, the flat indices of its query tokens and
of its key/value tokens, plus for every token the window slots its output is read back from and
with which normalised weights. With a plan, a layer gathers all windows of all batch items with one
``index_select``, runs ONE scaled-dot-product attention over them and reads the result back with
one more gather (see :func:`vidscale.freescale.attention.windowed_attention`).

Plans depend only on grid sizes, never on data, step or frame: every frame of every step sees the
same windows, so local attention cannot flicker from frame to frame. Windows are placed so the
last one ends exactly at the border (the released code zero-pads and jitters randomly instead;
zero tokens dilute the softmax and the jitter would be a second, unseeded source of randomness).
Plans are built on the CPU from Python integers, then moved to the layer's device once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowPlan:
    """Index tensors of one batched local attention over ``n_tokens`` tokens.

    query_index: (W, Lq) flat token index of each window's queries.
    key_index:   (W, Lk) flat token index of each window's keys and values.
    source:      (N, M) slot in the flattened (W * Lq) window output each token reads.
    weight:      (N, M) weights of those slots, summing to 1 per token (0 for padding slots);
                 None when every token reads exactly one slot (M == 1).
    """

    query_index: torch.Tensor
    key_index: torch.Tensor
    source: torch.Tensor
    weight: torch.Tensor | None

    @property
    def n_tokens(self) -> int:
        return self.source.shape[0]

    def to(self, device: torch.device | str) -> "WindowPlan":
        """The same plan on ``device``."""
        weight = None if self.weight is None else self.weight.to(device)
        return WindowPlan(
            self.query_index.to(device), self.key_index.to(device), self.source.to(device), weight
        )


def level_of(n_tokens: int, latent_size: tuple[int, int]) -> int:
    """How many times a UNet halved ``latent_size`` to reach a map of ``n_tokens`` tokens.

    Each UNet level halves the map with a stride-2, padding-1 convolution, i.e. ``ceil(n / 2)``
    per axis, so odd sizes are handled as the model handles them. Raises if no level matches.
    """
    h, w = latent_size
    level = 0
    while h * w != n_tokens:
        if (h, w) == (1, 1):
            raise ValueError(
                f"{n_tokens} tokens is not a UNet level of a {latent_size[0]}x{latent_size[1]} latent"
            )
        h, w, level = math.ceil(h / 2), math.ceil(w / 2), level + 1
    return level


def halved(size: tuple[int, int], times: int) -> tuple[int, int]:
    """``size`` after ``times`` UNet downsamplings (ceil per axis)."""
    h, w = size
    for _ in range(times):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` along an axis of ``size``: every ``stride``, and the
    last one moved back so that it ends exactly at the border (every position covered, no padding)."""
    if window >= size:
        return [0]
    count = math.ceil((size - window) / stride) + 1
    return [min(i * stride, size - window) for i in range(count)]


def reference_plan(grid: tuple[int, int], base: tuple[int, int], frames: int = 1) -> WindowPlan:
    """Overlapping base-size windows, stride half a window, uniform average of overlaps.

    This is FreeScale's local branch: each window is exactly the token grid the model saw at the
    base size. At x2 (80x128 tokens, base 40x64) it is 3 x 3 = 9 windows. With ``frames`` > 1
    the tokens are (frames, h, w) in that order (a video transformer's 3-D token grid) and every
    window takes its rectangle in all frames: local in space, global in time.
    """
    (h, w), (bh, bw) = grid, base
    wh, ww = min(bh, h), min(bw, w)
    rows = window_starts(h, wh, max(1, wh // 2))
    cols = window_starts(w, ww, max(1, ww // 2))
    windows = [_box(r, c, wh, ww, grid, frames) for r in rows for c in cols]
    return _plan(windows, windows, [[1.0] * (wh * ww * frames)] * len(windows), h * w * frames)


def neighborhood_plan(grid: tuple[int, int], base: tuple[int, int], frames: int = 1) -> WindowPlan:
    """Neighborhood Patch Attention (ScaleDiff): queries are non-overlapping patches of half the
    base window per side; keys/values are the base-size window centred on the patch, clamped
    inside the map. At x2 the attention costs a quarter of global attention and nothing is
    computed twice. Where the map is not a multiple of the patch, the last patch is moved back to
    the border and the few tokens it shares with its neighbour are averaged. ``frames``: as in
    :func:`reference_plan`, patches and windows span all frames.
    """
    (h, w), (bh, bw) = grid, base
    wh, ww = min(bh, h), min(bw, w)
    ph, pw = max(1, wh // 2), max(1, ww // 2)
    queries, keys = [], []
    for r in window_starts(h, ph, ph):
        for c in window_starts(w, pw, pw):
            kr = min(max(r - (wh - ph) // 2, 0), h - wh)
            kc = min(max(c - (ww - pw) // 2, 0), w - ww)
            queries.append(_box(r, c, ph, pw, grid, frames))
            keys.append(_box(kr, kc, wh, ww, grid, frames))
    return _plan(queries, keys, [[1.0] * (ph * pw * frames)] * len(queries), h * w * frames)


def temporal_plan(frames: int, window: int, stride: int) -> WindowPlan:
    """FreeNoise temporal windows: ``window`` frames every ``stride``, plus a final window ending at
    the last frame when ``(frames - window) % stride != 0`` (so no frame is left out), each window's
    output weighted by a pyramid [1, 2, ..., w/2, w/2, ..., 1] and normalised per frame. The
    pyramid lets a frame be decided mostly by the windows it sits in the middle of."""
    window = min(window, frames)
    pyramid = [float(min(i + 1, window - i)) for i in range(window)]
    windows = [list(range(s, s + window)) for s in window_starts(frames, window, stride)]
    return _plan(windows, windows, [pyramid] * len(windows), frames)


def _rect(row: int, col: int, height: int, width: int, grid_width: int) -> list[int]:
    """Flat row-major token indices of a height x width rectangle at (row, col)."""
    return [(row + i) * grid_width + col + j for i in range(height) for j in range(width)]


def _box(
    row: int, col: int, height: int, width: int, grid: tuple[int, int], frames: int
) -> list[int]:
    """The rectangle of :func:`_rect` in each of ``frames`` consecutive (h, w) frames."""
    rect, area = _rect(row, col, height, width, grid[1]), grid[0] * grid[1]
    return [f * area + i for f in range(frames) for i in rect]


def _plan(
    queries: list[list[int]], keys: list[list[int]], slot_weights: list[list[float]], n_tokens: int
) -> WindowPlan:
    """Build the read-back table: for every token, the slots holding its outputs and their
    normalised weights (padded with weight-0 slots to the largest count)."""
    slots: list[list[tuple[int, float]]] = [[] for _ in range(n_tokens)]
    width = len(queries[0])
    for w_index, (window, weights) in enumerate(zip(queries, slot_weights)):
        for j, (token, weight) in enumerate(zip(window, weights)):
            slots[token].append((w_index * width + j, weight))
    if any(not entry for entry in slots):
        raise ValueError("window plan leaves tokens uncovered")  # cannot happen with window_starts
    depth = max(len(entry) for entry in slots)
    source = [[s for s, _ in entry] + [entry[0][0]] * (depth - len(entry)) for entry in slots]
    normalised = [
        [wt / sum(x for _, x in entry) for _, wt in entry] + [0.0] * (depth - len(entry))
        for entry in slots
    ]
    return WindowPlan(
        query_index=torch.tensor(queries, dtype=torch.long),
        key_index=torch.tensor(keys, dtype=torch.long),
        source=torch.tensor(source, dtype=torch.long),
        weight=None if depth == 1 else torch.tensor(normalised, dtype=torch.float64),
    )


__all__ = [
    "WindowPlan", "level_of", "halved", "window_starts", "reference_plan",
    "neighborhood_plan", "temporal_plan",
]
