"""What the pipelines must know of a model family before (and without) running it.

Kept free of torch so plans, ``--dry-run`` and job identities can use it. Each model family's
loader builds one :class:`ModelSpec`; :mod:`vidscale.backends` runs the family behind one seam.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatentGrid:
    """How a family's VAE maps a clip to latents: what the plan pads to and cuts along.

    VideoCrafter2 encodes frame by frame (``temporal = 1``); Wan's causal 3-D VAE keeps the first
    frame alone and folds every following ``temporal`` frames into one latent frame, so its clips
    have ``1 + k * temporal`` frames (``causal``).
    """

    channels: int = 4  # latent channels
    spatial: int = 8  # pixels per latent cell along each side
    temporal: int = 1  # frames per latent frame (after the first, when causal)
    causal: bool = False  # the first latent frame holds the first frame alone
    multiple: int = 8  # latent sides are multiples of this (VC2's UNet halves them three times)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of ``frames`` frames (which must fit the grid)."""
        if self.causal:
            return 1 + (frames - 1) // self.temporal
        return frames // self.temporal

    def frames(self, latent_frames: int) -> int:
        """Frames decoded from ``latent_frames`` latent frames."""
        if self.causal:
            return 1 + (latent_frames - 1) * self.temporal
        return latent_frames * self.temporal

    @property
    def lone(self) -> int:
        """Frames at a clip's start that the VAE encodes alone: 1 when causal, else 0."""
        return int(self.causal)

    def fit(self, frames: int) -> int:
        """The fewest frames on the grid that hold ``frames`` (>= 1): a clip's tail is padded to it."""
        groups = -(-(frames - self.lone) // self.temporal)
        return self.lone + groups * self.temporal

    def latent_index(self, frame: int) -> int:
        """The clip's latent frame that holds ``frame``. A chunk starting at ``frame`` (a multiple of
        ``temporal``) has its latent j at the clip's latent ``latent_index(frame) + j``; on a causal
        grid its latent 0 (the frame alone) sits where the clip's latent holding the frame ends."""
        return -(-frame // self.temporal) if self.causal else frame // self.temporal

    def anchored_latents(self, shared_frames: int) -> int:
        """Latent frames a chunk takes from the previous one when they share its first
        ``shared_frames`` frames; on a causal grid the lone first latent stays the chunk's own."""
        return max(0, shared_frames - self.lone) // self.temporal


VC2_GRID = LatentGrid()
# Pixels a VAE decode pass hands on at once (frames per pass = this // (H * W): 12 at 320x512, 1 at
# 1280x2048): what the plan budgets a decode for and what every family's decoder batches by.
VAE_PIXELS_PER_PASS = 2**21


@dataclass(frozen=True)
class CostModel:
    """What one denoiser call costs, for plans, memory budgets and time estimates.

    FLOPs per frame of a call over N latent cells per frame, each query attending to K cells of
    its frame: ``flops_per_token * N + flops_per_token_pair * N * K`` (K = N for global spatial
    attention); a transformer whose self-attention spans the clip (``attention_spans_frames``)
    attends to K cells of every frame. VideoCrafter2's and the tiny model's are fitted to FLOPs
    counted on the meta device, Wan's derived from its config (``tests/test_work_plan.py``,
    ``tests/test_wan_model.py`` recount them).
    Memory: every weight of the model plus one call's activations, ``activation_elements_per_token``
    elements per frame and token.
    """

    flops_per_token: float
    flops_per_token_pair: float
    parameters: float  # every weight of the model (denoiser, VAE, text encoder)
    activation_elements_per_token: float
    attention_spans_frames: bool = False  # 3-D attention (Wan): every frame's cells are attended


# Full-size VideoCrafter2: UNet 1.41 B + VAE 84 M + OpenCLIP text tower 354 M parameters; within
# 2 % of the measured TFLOP table (12.6 / 59.3 / 384 at 16 frames x 40x64 / 80x128 / 160x256);
# activations: about 24 live tensors of the level-0 width (320 channels) at peak.
VC2_COST = CostModel(flops_per_token=2.895e8, flops_per_token_pair=7068.0, parameters=1.85e9,
                     activation_elements_per_token=320 * 24)
# The tiny test model (configs.TINY_*): its UNet counted the same way; 24 tensors of its 32 channels.
TINY_COST = CostModel(flops_per_token=2.26e6, flops_per_token_pair=691.0, parameters=6.8e6,
                      activation_elements_per_token=32 * 24)


@dataclass(frozen=True)
class ModelSpec:
    """A loaded (or resolvable) model as the pipelines see it, whatever its family."""

    family: str  # "videocrafter2" | "wan"
    name: str  # for reports and job identities: different weights, different name
    is_test_model: bool  # random weights: every result says so
    base_size: tuple[int, int]  # (height, width) in pixels the model was trained at
    grid: LatentGrid = VC2_GRID
    vae_width: int = 256  # the VAE decoder's second block width: what its memory scales with
    fps: int = 28  # the frame rate generated clips are written at (and conditioned on, if the family is)
    cost: CostModel = VC2_COST

    @property
    def base_latent(self) -> tuple[int, int]:
        """The base size on the latent grid, (height, width)."""
        return self.base_size[0] // self.grid.spatial, self.base_size[1] // self.grid.spatial
