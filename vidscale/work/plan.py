"""Plan an upscale before any model runs: geometry, chunks of frames, spatial tiles, cost.

Everything here is arithmetic on sizes (no torch, no files), so ``--dry-run`` is instant and a
plan can be stored in a job manifest and compared on resume.

Geometry comes from the model's latent grid (:class:`~vidscale.model.spec.LatentGrid`). In space,
the VAE maps ``grid.spatial`` pixels to a latent cell and the model needs latent sides that are
multiples of ``grid.multiple`` (VC2: 8, its UNet halves the latent three times; Wan: 2, its patch),
so the *upscaled* latent must be a multiple of ``grid.multiple``. Frames are therefore padded
(edge-replicated, on the right and bottom) to a multiple of ``spatial * multiple / gcd(scale,
multiple)`` pixels (VC2 at 2x: 32; Wan 2.1 at 2x: 8), and the padding is cropped from the output:
output size is always exactly ``scale x`` the input size, never a silent crop or stretch. In time,
a causal VAE (Wan's) encodes a clip's first frame alone and every following ``grid.temporal``
frames into one latent frame, so a chunk has ``1 + k * temporal`` frames; the clip's tail is padded
by repeating its last frame (``Chunk.pad``) and the padding is dropped again after decoding.

Chunks: a chunk is a run of consecutive frames denoised together (temporal attention is windowed,
so a chunk may be much longer than 16 frames). Consecutive chunks share ``overlap`` frames; the
overlap frames of chunk k+1 are *anchored*: at every step they are overwritten with chunk k's
latents for the same frames, so chunk k+1 continues chunk k's trajectory and every output frame
comes from exactly one trajectory (no crossfade, no seam). See ``vidscale.pipeline.chunks``.
Chunks start on the grid (a multiple of ``temporal`` frames), so a chunk's latent frames are the
clip's latent frames; on a causal grid consecutive chunks share ``1 + n * temporal`` frames (the
next chunk's lone first frame is the last frame of a latent frame of the previous one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..model.spec import VAE_PIXELS_PER_PASS, VC2_COST, VC2_GRID, CostModel, LatentGrid
from ..settings import Fusion, Settings

VAE_FACTOR = VC2_GRID.spatial  # VC2's pixels per latent cell
UNET_MULTIPLE = VC2_GRID.multiple  # VC2's UNet halves the latent three times
# Largest latent map (tokens per frame) for which global spatial attention is planned; above it
# scale fusion falls back to neighbourhood patch attention only (1280x2048 -> 160x256 = 40960).
MAX_GLOBAL_TOKENS = 160 * 256
# ASSUMED sustained bf16 throughput of one GPU per device class, in TFLOP/s, for --dry-run's time
# estimates: about 30 % of each class's dense bf16 datasheet peak (H100 SXM 989, A100 312,
# RTX 4090 165 with fp32 accumulation). Assumptions, not measurements: no GPU run has been timed
# yet. The estimate counts the UNet's FLOPs only (VAE, reading and encoding are left out).
ASSUMED_TFLOPS = {"H100-class GPU": 300.0, "A100-class GPU": 95.0, "RTX 4090-class GPU": 50.0}

# Peak memory of VC2's VAE decoder (the Stable Diffusion VAE: 128-256-512-512 channels) per output
# pixel, in elements of the model dtype: ~900, measured as the peak-RSS difference of decoding one
# 512x512 and one 256x256 frame in fp32 on the CPU (real architecture, random weights). In 16-bit
# dtypes GroupNorm adds an fp32 copy of its 256-channel input (VAE_GROUPNORM_BYTES_PER_PIXEL).
# Both scale with the decoder's width at full resolution (block_out_channels[1]: 256 in VC2).
VAE_DECODE_ELEMENTS_PER_PIXEL = 900
VAE_GROUPNORM_BYTES_PER_PIXEL = 256 * 4
VC2_VAE_WIDTH = 256
VAE_BUDGET_SHARE = 1 / 8  # at most this share of the budget is kept for the VAE decode
MIN_VAE_TILE = 32  # latent cells: 256 pixels, below which a tile's edge costs more than it saves


@dataclass(frozen=True)
class Geometry:
    """Sizes of one upscale, in pixels and latent cells (height, width order for latents), on the
    model's latent grid."""

    width: int
    height: int
    scale: int
    padded_width: int
    padded_height: int
    base_latent: tuple[int, int]  # the model's native latent size (VC2: 40x64), for fusion windows
    grid: LatentGrid = VC2_GRID

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.padded_height // self.grid.spatial, self.padded_width // self.grid.spatial

    @property
    def target_latent_size(self) -> tuple[int, int]:
        h, w = self.latent_size
        return h * self.scale, w * self.scale

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the output: exactly scale x the input."""
        return self.width * self.scale, self.height * self.scale

    @property
    def fusion_scale(self) -> int:
        """How many base windows fit per side (sets the blur kernel 2s-1 and the dilation)."""
        th, tw = self.target_latent_size
        bh, bw = self.base_latent
        return max(1, round(min(th / bh, tw / bw)))


def geometry_for(width: int, height: int, scale: int, base_latent: tuple[int, int] = (40, 64),
                 grid: LatentGrid = VC2_GRID) -> Geometry:
    """Pad ``width x height`` up to the pixel grid that a ``scale``-times latent on ``grid`` needs."""
    multiple = grid.spatial * grid.multiple // math.gcd(scale, grid.multiple)
    pad = lambda n: -(-n // multiple) * multiple  # noqa: E731 - round up to the grid
    return Geometry(width, height, scale, pad(width), pad(height), base_latent, grid)


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, end)`` denoised together; the first ``anchored`` are shared with (and
    follow) the previous chunk. ``pad`` copies of the last frame follow ``end`` to fill the
    latent grid (the clip's tail on a causal grid); they are dropped after decoding."""

    index: int
    start: int
    end: int
    anchored: int
    pad: int = 0

    @property
    def owned(self) -> tuple[int, int]:
        """The frames this chunk contributes to the output."""
        return self.start + self.anchored, self.end


def plan_chunks(total: int, chunk_frames: int, overlap: int, grid: LatentGrid = VC2_GRID) -> list[Chunk]:
    """Cover ``total`` frames with chunks of at most ``chunk_frames`` sharing ``overlap`` frames,
    on ``grid``.

    Every frame is owned by exactly one chunk, in order. Chunks start on the grid and hold a
    whole number of latent frames: ``lone + k * temporal`` frames (the lone first frame on a causal
    grid), ``chunk_frames`` and ``overlap`` rounded down to that (at least one latent frame after
    the lone one, and on a causal grid the lone frame is always shared); the overlap is clipped so
    each chunk adds at least one new latent frame. Only the last chunk is padded (``Chunk.pad``).
    For VideoCrafter2's grid (frame by frame) this is ``chunk_frames`` frames sharing ``overlap``.
    """
    if total <= 0:
        raise ValueError("a plan needs at least one frame")
    lone, step = grid.lone, grid.temporal
    groups = (grid.fit(total) - lone) // step  # latent frames after the lone one
    length = min(max(1, (chunk_frames - lone) // step), groups)  # of them per chunk
    shared = min(grid.anchored_latents(overlap), max(0, length - 1))
    chunks: list[Chunk] = []
    first = 0  # the chunk's first group
    while True:
        end = (first + min(length, groups - first)) * step + lone
        anchored = lone + shared * step if chunks else 0
        chunks.append(Chunk(len(chunks), first * step, min(end, total), anchored, max(0, end - total)))
        if first + length >= groups:
            return chunks
        first += length - shared


@dataclass(frozen=True)
class Segment:
    """Consecutive chunks of a clip's plan that run as one unit, independently of other segments.

    ``chunks`` are renumbered from 0 and keep the clip's frame numbers; the first is not anchored.
    Its first ``fade`` frames are the last frames of the previous segment too: the two versions
    are crossfaded there (:mod:`vidscale.pipeline.segments`).
    """

    index: int
    chunks: tuple[Chunk, ...]
    fade: int

    @property
    def start(self) -> int:
        return self.chunks[0].start

    @property
    def end(self) -> int:
        return self.chunks[-1].end


def plan_segments(chunks: list[Chunk], segment_frames: int) -> list[Segment]:
    """Group a clip's chunk plan into segments of at most ``segment_frames`` frames (at least one
    chunk each); 0 = one segment. Where the plan anchored a chunk to the one before, a new segment
    instead starts that chunk fresh and the anchored frames become the crossfade.

    A pure function of the chunk plan (so of the clip and the settings), never of the number of
    workers: a single process running the same segments is the reference for any cluster.
    """
    groups: list[list[Chunk]] = [[]]
    for chunk in chunks:
        group = groups[-1]
        fades = (group[0].anchored if len(groups) > 1 else 0) + chunk.anchored if group else 0
        # a segment keeps at least one frame of its own between the fades at its two ends
        if group and segment_frames and chunk.end - group[0].start > segment_frames \
                and group[-1].end - group[0].start > fades:
            groups.append([])
        groups[-1].append(chunk)
    segments = []
    for index, group in enumerate(groups):
        fade = group[0].anchored if index else 0
        first = group[0].index
        local = tuple(replace(c, index=c.index - first, anchored=0 if c is group[0] else c.anchored)
                      for c in group)
        segments.append(Segment(index, local, fade))
    return segments


@dataclass(frozen=True)
class Tile:
    """A window of the target latent, (top, left, height, width) in latent cells."""

    top: int
    left: int
    height: int
    width: int


def _axis_positions(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def plan_tiles(latent: tuple[int, int], tile: tuple[int, int], overlap: int) -> list[Tile]:
    """Overlapping tiles covering ``latent``; the last tile of each axis touches the border."""
    tops = _axis_positions(latent[0], tile[0], overlap)
    lefts = _axis_positions(latent[1], tile[1], overlap)
    th, tw = min(tile[0], latent[0]), min(tile[1], latent[1])
    return [Tile(top, left, th, tw) for top in tops for left in lefts]


def unet_tflops(frames: int, tokens: int, attended: int, batch: int = 1, cost: CostModel = VC2_COST) -> float:
    """Estimated TFLOP of one denoiser call over ``frames`` latent frames of ``tokens`` cells, each
    query attending to ``attended`` cells of a frame (:class:`~vidscale.model.spec.CostModel`)."""
    if cost.attention_spans_frames:
        attended *= frames
    per_frame = cost.flops_per_token * tokens + cost.flops_per_token_pair * tokens * attended
    return per_frame * frames * batch / 1e12


def vae_decode_gb(pixels: int, dtype_bytes: int, width: int = VC2_VAE_WIDTH) -> float:
    """Estimated peak memory of one VAE decode pass over ``pixels`` output pixels."""
    per_pixel = VAE_DECODE_ELEMENTS_PER_PIXEL * dtype_bytes + (VAE_GROUPNORM_BYTES_PER_PIXEL if dtype_bytes < 4 else 0)
    return pixels * per_pixel * width / VC2_VAE_WIDTH / 2**30


def plan_vae_decode(latent: tuple[int, int], free_gb: float, dtype_bytes: int,
                    width: int = VC2_VAE_WIDTH, spatial: int = VAE_FACTOR) -> tuple[list[Tile], int, int]:
    """(tiles, overlap, pixels per pass) for decoding ``latent`` frames within ``free_gb``.

    The decoder is per frame, so frames are batched up to ``VAE_PIXELS_PER_PASS`` pixels or what
    ``free_gb`` holds. A frame larger than that is cut into square latent tiles (multiples of 8,
    overlapping by a quarter) that are decoded separately and blended with linear ramps. The
    decoder's mid-block attention is global over the frame, so a tiled decode is close to, not
    equal to, the whole-frame decode: it is used only when a frame does not fit.
    """
    affordable = int(free_gb / vae_decode_gb(1, dtype_bytes, width))
    pass_pixels = max(1, min(VAE_PIXELS_PER_PASS, affordable))
    if latent[0] * latent[1] * spatial**2 <= affordable:
        return [], 0, pass_pixels
    side = max(MIN_VAE_TILE, int(math.sqrt(pass_pixels)) // spatial // UNET_MULTIPLE * UNET_MULTIPLE)
    overlap = max(UNET_MULTIPLE, side // 4 // UNET_MULTIPLE * UNET_MULTIPLE)
    tiles = plan_tiles(latent, (side, side), overlap)
    return (tiles, overlap, pass_pixels) if len(tiles) > 1 else ([], 0, pass_pixels)


def unet_memory_gb(frames: int, tokens: int, dtype_bytes: int, batch: int = 1, cost: CostModel = VC2_COST) -> float:
    """Estimated peak GPU memory of a chunk: all weights plus one denoiser call's activations."""
    weights = cost.parameters * dtype_bytes
    activations = frames * tokens * cost.activation_elements_per_token * dtype_bytes * batch
    return (weights + activations) / 2**30


@dataclass(frozen=True)
class UpscalePlan:
    """What an upscale will do; stored in the job manifest and printed by ``--dry-run``."""

    frame_range: tuple[int, int]
    geometry: Geometry
    chunks: list[Chunk]
    tiles: list[Tile]
    fusion: Fusion
    steps: int  # denoising steps actually run (after the restart)
    temporal_windows: int  # 16-frame windows in the longest chunk
    memory_gb: float
    tflops_per_step: float
    tile_overlap: int = 0  # latent cells shared by neighbouring tiles
    notes: list[str] = field(default_factory=list)
    vae_memory_gb: float = 0.0  # one whole-frame VAE decode pass
    vae_tiles: list[Tile] = field(default_factory=list)  # empty: frames are decoded whole
    vae_tile_overlap: int = 0
    vae_pixels_per_pass: int = VAE_PIXELS_PER_PASS
    overlap_io: bool = True  # reading and writing run beside the denoising
    checkpoint_seconds: float = 120.0  # the running chunk is saved this often (0: every step)

    @property
    def frame_count(self) -> int:
        return self.frame_range[1] - self.frame_range[0]

    @property
    def grid(self) -> LatentGrid:
        return self.geometry.grid

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        geometry = self.geometry
        data["geometry"].update(latent_size=geometry.latent_size,
                                target_latent_size=geometry.target_latent_size,
                                output_size=geometry.output_size)
        data["tflops_total"] = round(self.tflops_per_step * self.steps * len(self.chunks), 1)
        return data


def describe_plan(plan: dict[str, Any]) -> str:
    """``--dry-run``'s text: :meth:`UpscalePlan.to_dict` as lines a person reads."""
    g = plan["geometry"]
    start, end = plan["frame_range"]
    chunks = ", ".join(f"{c['start']}-{c['end'] - 1}" + (f" (first {c['anchored']} anchored)" if c["anchored"] else "")
                       + (f" (+{c['pad']} padded)" if c["pad"] else "") for c in plan["chunks"])
    tiles = (f"{len(plan['tiles'])} tiles of {plan['tiles'][0]['height']}x{plan['tiles'][0]['width']} latent "
             f"(overlap {plan['tile_overlap']})" if plan["tiles"] else "none")
    lines = [
        f"size      {g['width']}x{g['height']} -> {g['output_size'][0]}x{g['output_size'][1]} "
        f"(x{g['scale']}; model grid {g['padded_width']}x{g['padded_height']}, padding cropped on output)",
        f"latent    {g['latent_size'][0]}x{g['latent_size'][1]} -> {g['target_latent_size'][0]}x"
        f"{g['target_latent_size'][1]} (base {g['base_latent'][0]}x{g['base_latent'][1]})",
        f"frames    {start}-{end - 1} ({end - start}) in {len(plan['chunks'])} chunk(s): {chunks}",
        f"windows   {plan['temporal_windows']} temporal window(s) in the longest chunk",
        f"tiles     {tiles}",
        f"fusion    {plan['fusion']}, {plan['steps']} denoising steps",
        f"cost      ~{plan['memory_gb']} GB GPU memory, {plan['tflops_per_step']} TFLOP/step, "
        f"{plan['tflops_total']} TFLOP in all",
        f"decode    {_describe_vae(plan)}",
        f"run       {_describe_run(plan)}",
    ]
    return "\n".join(lines + [f"note      {note}" for note in plan["notes"]])


THIS_MACHINE = "this machine"


def estimate_seconds(tflops: float, machine: dict[str, Any] | None = None) -> dict[str, float]:
    """Seconds ``tflops`` of denoiser work take per device class at its ``ASSUMED_TFLOPS`` and, given
    ``machine`` (``{"device", "dtype", "tflops"}``: a rate measured here), on this machine."""
    seconds = {device: round(tflops / rate, 1) for device, rate in ASSUMED_TFLOPS.items()}
    if machine:
        seconds[THIS_MACHINE] = round(tflops / machine["tflops"], 1)
    return seconds


def describe_estimate(tflops: float, machine: dict[str, Any] | None = None) -> str:
    """``--dry-run``'s estimate line: time on this machine (its measured matrix rate) and per GPU
    class (an assumed rate), each labelled with what it rests on."""
    parts = []
    if machine:
        parts.append(f"~{_duration(tflops / machine['tflops'])} on this machine ({machine['device']}, "
                     f"{machine['tflops'] * 1000:.3g} GFLOP/s {machine['dtype']} measured on a matrix product "
                     "just now; real steps run slower than a plain product)")
    parts += [f"~{_duration(seconds)} on an {device} at an assumed {ASSUMED_TFLOPS[device]:g} TFLOP/s bf16 "
              "sustained" for device, seconds in estimate_seconds(tflops).items()]
    return f"{'; '.join(parts)} (an estimate: {tflops:g} TFLOP of denoiser work over those rates)"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def generate_tflops(settings: Settings, cost: CostModel = VC2_COST, grid: LatentGrid = VC2_GRID) -> float:
    """Denoiser TFLOP of ``vidscale generate``: full sampling at the base size, then each cascade
    stage's steps after the restart at its size (same cost model as an upscale plan)."""
    g, sampling = settings.generate, settings.sampling
    batch = 2 if sampling.guidance_scale > 1 else 1
    height, width = g.base_height // grid.spatial, g.base_width // grid.spatial
    base, frames = height * width, grid.latent_frames(g.frames)
    total = sampling.steps * unet_tflops(frames, base, base, batch, cost)
    refine_steps = sampling.steps - int(settings.freescale.restart_fraction * sampling.steps)
    factor = 2
    while g.base_width * factor <= g.width:
        fusion, _notes = _fusion_mode(settings.freescale.fusion, (height * factor, width * factor))
        tokens = base * factor * factor
        total += refine_steps * unet_tflops(frames, tokens, _attended(fusion, tokens, base), batch, cost)
        factor *= 2
    return round(total, 1)


def _attended(fusion: str, tokens: int, base_tokens: int) -> int:
    """Tokens each query attends to: all of them with global attention, else a base window."""
    return tokens if fusion in ("off", "reference", "fast") else min(tokens, base_tokens)


def _describe_vae(plan: dict[str, Any]) -> str:
    memory = f"VAE ~{plan['vae_memory_gb']} GB a frame"
    tiles = plan["vae_tiles"]
    if not tiles:
        return f"{memory}: whole frames"
    rows, cols = len({t["top"] for t in tiles}), len({t["left"] for t in tiles})
    return (f"{memory}: tiled {rows}x{cols}, {tiles[0]['height']}-latent tiles, "
            f"{plan['vae_tile_overlap']} overlap (blended)")


def _describe_run(plan: dict[str, Any]) -> str:
    io = "reads and writes beside the denoising" if plan["overlap_io"] else "reads, denoises and writes in turn"
    every = plan["checkpoint_seconds"]
    saves = "after every step" if every == 0 else f"every {every:g} s"
    return f"{io}; saves the running chunk {saves}"


def window_count(frames: int, window: int, stride: int) -> int:
    """Temporal windows covering ``frames`` (plus one ending on the last frame if needed)."""
    if window <= 0 or frames <= window:
        return 1
    count = (frames - window) // stride + 1
    return count + ((frames - window) % stride != 0)


def make_plan(width: int, height: int, frame_range: tuple[int, int], settings: Settings, *,
              base_latent: tuple[int, int] = (40, 64), dtype_bytes: int = 2,
              vae_width: int = VC2_VAE_WIDTH, cost: CostModel = VC2_COST,
              grid: LatentGrid = VC2_GRID) -> UpscalePlan:
    """Plan an upscale of ``frame_range`` of a ``width x height`` clip within the memory budget,
    on the model's latent ``grid`` (VideoCrafter2's by default) with its ``cost`` model.

    Chunk length comes from the budget (never more than ``jobs.chunk_frames``); if not even one
    temporal window of latent frames fits at the full size, the latent is cut into overlapping
    tiles. Global attention is dropped for neighbourhood patch attention above ``MAX_GLOBAL_TOKENS``.
    """
    geometry = geometry_for(width, height, settings.upscale.scale, base_latent, grid)
    latent = geometry.target_latent_size
    fusion, notes = _fusion_mode(settings.freescale.fusion, latent)
    batch = 2 if settings.sampling.guidance_scale > 1 else 1
    frames = grid.latent_frames(grid.fit(frame_range[1] - frame_range[0]))  # what the model sees
    window = settings.freescale.temporal_window or frames
    # The decode of one chunk runs beside the denoising of the next: it keeps a share of the budget.
    frame_pixels = latent[0] * latent[1] * grid.spatial**2
    vae_reserve = min(vae_decode_gb(max(frame_pixels, VAE_PIXELS_PER_PASS // frame_pixels * frame_pixels),
                                    dtype_bytes, vae_width), settings.jobs.memory_budget_gb * VAE_BUDGET_SHARE)
    budget = settings.jobs.memory_budget_gb - vae_reserve
    fit = _frames_that_fit(latent[0] * latent[1], budget, dtype_bytes, batch, cost)
    tiles: list[Tile] = []
    tile, tile_overlap = latent, 0
    if fit < min(frames, window):
        tile = _tile_size(latent, budget, dtype_bytes, batch, min(frames, window), grid.multiple, cost)
        tile_overlap = max(grid.multiple, tile[0] // 4 // grid.multiple * grid.multiple)
        tiles = plan_tiles(latent, tile, overlap=tile_overlap)
        fit = _frames_that_fit(tile[0] * tile[1], budget, dtype_bytes, batch, cost)
        notes.append(f"latent {latent[0]}x{latent[1]} over budget: {len(tiles)} tiles of {tile[0]}x{tile[1]}")
    chunks = plan_chunks(frame_range[1] - frame_range[0], min(settings.jobs.chunk_frames, grid.frames(max(1, fit))),
                         settings.jobs.overlap_frames, grid)
    tokens = tile[0] * tile[1]
    attended = _attended(fusion, tokens, base_latent[0] * base_latent[1])
    longest = max(grid.latent_frames(c.end + c.pad - c.start) for c in chunks)  # latent frames
    steps = settings.sampling.steps - int(settings.freescale.restart_fraction * settings.sampling.steps)
    vae_tiles, vae_overlap, pass_pixels = plan_vae_decode(latent, vae_reserve, dtype_bytes, vae_width, grid.spatial)
    return UpscalePlan(
        frame_range=frame_range, geometry=geometry, chunks=chunks, tiles=tiles, fusion=fusion,
        steps=steps,
        temporal_windows=window_count(longest, settings.freescale.temporal_window, settings.freescale.temporal_stride),
        memory_gb=round(unet_memory_gb(longest, tokens, dtype_bytes, batch, cost), 2),
        tflops_per_step=round(unet_tflops(longest, tokens, attended, batch, cost) * max(1, len(tiles)), 2),
        tile_overlap=tile_overlap, notes=notes,
        vae_memory_gb=round(vae_decode_gb(frame_pixels, dtype_bytes, vae_width), 2),
        vae_tiles=vae_tiles, vae_tile_overlap=vae_overlap, vae_pixels_per_pass=pass_pixels,
        overlap_io=settings.jobs.overlap_io, checkpoint_seconds=settings.jobs.checkpoint_seconds,
    )


def _fusion_mode(requested: Fusion, latent: tuple[int, int]) -> tuple[Fusion, list[str]]:
    if requested in ("reference", "fast") and latent[0] * latent[1] > MAX_GLOBAL_TOKENS:
        return "npa-only", [f"latent {latent[0]}x{latent[1]} too large for global attention: npa-only"]
    return requested, []


def _frames_that_fit(tokens: int, budget_gb: float, dtype_bytes: int, batch: int, cost: CostModel) -> int:
    fixed = unet_memory_gb(0, tokens, dtype_bytes, batch, cost)
    free = budget_gb - fixed
    per_frame = unet_memory_gb(1, tokens, dtype_bytes, batch, cost) - fixed
    return max(0, int(free / per_frame))


def _tile_size(latent: tuple[int, int], budget_gb: float, dtype_bytes: int, batch: int,
               frames: int, multiple: int, cost: CostModel) -> tuple[int, int]:
    """The largest tile (multiple of ``multiple``, same aspect) of which ``frames`` frames fit the budget."""
    fixed = unet_memory_gb(0, 1, dtype_bytes, batch, cost)
    free = budget_gb - fixed
    per_token = unet_memory_gb(frames, 1, dtype_bytes, batch, cost) - fixed
    shrink = math.sqrt(max(free, 0.0) / per_token / (latent[0] * latent[1]))
    snap = lambda n: max(2 * multiple, int(n * shrink) // multiple * multiple)  # noqa: E731
    return min(snap(latent[0]), latent[0]), min(snap(latent[1]), latent[1])
