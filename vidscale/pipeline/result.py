"""What a run reports: an upscale (either engine) or a generated clip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

TEST_MODEL_NOTE = "made with a RANDOM TEST MODEL: noise, for checking the installation"


@dataclass(frozen=True)
class UpscaleResult:
    """One finished output: where, how big, how many frames at which exact rate, how long it took."""

    input: Path
    output: Path
    engine: str  # "lanczos" | "freescale"
    width: int
    height: int
    frames: int
    frame_rate: Fraction
    codec: str
    elapsed_seconds: float
    job_dir: Path | None = None  # freescale: the resumable job folder
    test_model: bool = False  # freescale: made with the random tiny model
    review: Path | None = None  # the review page beside the output (output.review)

    @property
    def duration(self) -> float:
        """Seconds of output."""
        return float(self.frames / self.frame_rate)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: paths as strings, the rate as "30000/1001"."""
        data: dict[str, Any] = {
            "input": str(self.input), "output": str(self.output), "engine": self.engine,
            "width": self.width, "height": self.height, "frames": self.frames,
            "frame_rate": f"{self.frame_rate.numerator}/{self.frame_rate.denominator}",
            "duration": round(self.duration, 6), "codec": self.codec,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }
        if self.job_dir is not None:
            data["job_dir"] = str(self.job_dir)
        if self.review is not None:
            data["review"] = str(self.review)
        if self.test_model:
            data["test_model"] = True
            data["note"] = TEST_MODEL_NOTE
        return data


@dataclass(frozen=True)
class GenerateResult:
    """A generated clip: where, its size and frames, and the prompt and seed that made it."""

    output: Path
    prompt: str
    width: int
    height: int
    frames: int
    frame_rate: Fraction
    codec: str
    seed: int
    elapsed_seconds: float
    test_model: bool

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(output=str(self.output), frame_rate=str(self.frame_rate))
        if self.test_model:
            data["note"] = TEST_MODEL_NOTE
        return data
