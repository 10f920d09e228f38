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

    @property
    def base_latent(self) -> tuple[int, int]:
        """The base size on the latent grid, (height, width)."""
        return self.base_size[0] // self.grid.spatial, self.base_size[1] // self.grid.spatial
