"""Presets and options as one typed, validated settings object.

A preset is a TOML file whose tables are the sections below (``[output]``, ``[sampling]``, ...).
Loading goes defaults -> preset file -> command-line overrides, and every value is checked
against the dataclass field it lands in: an unknown key, a wrong type or a value out of range is a
:class:`~vidscale.errors.SettingsError` naming the file, the key and what is allowed.

This module imports no torch: the CLI builds settings before deciding whether a model is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from .errors import SettingsError

Codec = Literal[
    "prores-proxy", "prores-lt", "prores", "prores-hq", "prores-4444", "prores-4444xq",
    "h264", "h264-10bit", "h265",
]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
]
Fusion = Literal["off", "reference", "fast", "npa-only"]  # FreeScale's scale fusion


def _range(lo: float | None, hi: float | None) -> dict[str, Any]:
    """Field metadata: the allowed closed interval (None = unbounded)."""
    return {"range": (lo, hi)}


@dataclass(frozen=True)
class OutputSettings:
    """How the result is encoded."""

    codec: Codec = "prores-hq"
    crf: int = field(default=18, metadata=_range(0, 51))  # H.264/H.265 only: 17-19 masters, 23 web
    x264_preset: X264Preset = "medium"  # H.264/H.265 only
    audio: Literal["copy", "none"] = "copy"  # copy packets when the container allows, else AAC
    review: bool = False  # also write NAME_review.html beside the output (source vs result, seams)


@dataclass(frozen=True)
class UpscaleSettings:
    """What ``vidscale upscale`` does to each clip."""

    engine: Literal["freescale", "lanczos"] = "freescale"
    scale: Literal[2, 4] = 2
    detail_mask: str = ""  # matte clip or still image (white: freescale.alpha_mask); "" = none


@dataclass(frozen=True)
class ModelSettings:
    """Which weights run, where, and at what precision."""

    # "" = $VIDSCALE_MODEL, then the cache folder; a VideoCrafter2 folder or model.ckpt, or a diffusers
    # Wan folder (model_index.json naming WanPipeline); "wan" = the default Wan folder; "tiny" /
    # "wan-tiny" = random test models; "random" / "wan-random" = the full-size architectures with
    # random weights (speed and memory tests only)
    path: str = ""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    # torch.compile each repeated block (VC2: UNet blocks, falls back to eager on failure; Wan: the
    # transformer blocks, through diffusers' compile_repeated_blocks)
    compile: bool = False
    # Wan only. The flow-matching shift of the sampling schedule (more steps at high noise). Part of
    # the model's scheduler config, so 0 = the folder's own (3.0 in Wan 2.1's 480p folders; Wan's
    # authors use 5.0 at 720p). A model setting, not a sampling one, because the schedule is built
    # with the loaded model and every chunk, stage and resumed run must share it.
    flow_shift: float = field(default=0.0, metadata=_range(0.0, 100.0))
    # Wan only: diffusers' attention backend for the transformer (set_attention_backend); "" =
    # diffusers' default (torch SDPA). "flash", "sage", ... need their packages installed.
    attention_backend: Literal["", "native", "flash", "_native_cudnn", "_native_efficient", "_native_flash",
                               "flex", "sage", "xformers"] = ""


@dataclass(frozen=True)
class SamplingSettings:
    """The sampler shared by generation and upscaling.

    Family defaults: a key whose best value differs between VideoCrafter2 and Wan is either a
    sentinel the loaded model resolves (``scheduler = "auto"``, ``fps = 0``, ``model.flow_shift =
    0``) or carried by the family's presets (``wan-t2v-960p``, ``wan-upscale-2x``: Wan's guidance
    5.0, its negative prompt, 16 fps, 81 frames at 480x832). Values a user or preset sets always
    win. ``generate`` without ``--preset`` starts from the family's own preset.
    """

    steps: int = field(default=50, metadata=_range(1, 1000))
    guidance_scale: float = field(default=12.0, metadata=_range(0.0, 50.0))  # <= 1: no CFG pass
    eta: float = field(default=0.0, metadata=_range(0.0, 1.0))
    fps: int = field(default=0, metadata=_range(0, 120))  # fps conditioning; 0 = the clip's rate
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = field(default=123, metadata=_range(0, 2**63 - 1))
    # auto: the model family's own sampler (VC2: ddim; Wan: unipc, as WanPipeline), so one preset runs
    # on either family with that family's sampler. ddim: VC2's DDIM, or on Wan's flow matching
    # deterministic DDIM (Euler's method); dpm++2m: DPM-Solver++(2M) over VC2's schedule, as good in
    # ~25 steps, eta 0 only; unipc: Wan's UniPC with its corrector (Wan only)
    scheduler: Literal["auto", "ddim", "dpm++2m", "unipc"] = "auto"
    # Wan only: diffusers' transformer cache (enable_cache). none: every block at every step;
    # first-block: FirstBlockCacheConfig (skip the other blocks while the first block's output barely
    # changes); mag: MagCacheConfig with magnitude ratios vidscale calibrates on the loaded weights.
    # Both reuse earlier steps' residuals: faster, not identical to "none".
    cache: Literal["none", "first-block", "mag"] = "none"


@dataclass(frozen=True)
class FreeScaleSettings:
    """The FreeScale method; every part can be switched off for ablations."""

    restart_fraction: float = field(default=0.3, metadata=_range(0.0, 1.0))  # 0.3 of 50 -> t=681
    alpha: float = field(default=2.0, metadata=_range(0.0, 100.0))  # detail control exponent
    # Exponent where a --detail-mask is white (alpha where it is black): higher pulls less toward
    # the source, so more detail is generated there. 3.0: the paper's foreground example.
    alpha_mask: float = field(default=3.0, metadata=_range(0.0, 100.0))
    upsample: Literal["latent", "rgb"] = "latent"
    upsample_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    dilation: bool = True
    dilate_tau: float = field(default=0.7, metadata=_range(0.0, 1.0))  # dilated for 35 of 50 steps
    dilate_levels: tuple[int, ...] = (3,)  # down levels dilated (VC2 has 0..3); mid always
    fusion: Fusion = "fast"
    sigma: float = field(default=1.0, metadata=_range(0.01, 10.0))  # Gaussian blur of fusion
    blur: Literal["spatial", "released"] = "spatial"  # over (h, w) as the paper; authors' 3-D (h, w, C)
    # Rotary positions of a transformer (Wan) above its trained size: "extrapolate" (diffusers'
    # own; with fusion the local branch then sees only trained offsets), "interpolate" (positions
    # squeezed into the trained range), "ntk" (NTK-aware theta); UNets have no rotary positions.
    rope: Literal["extrapolate", "interpolate", "ntk"] = "extrapolate"
    temporal_window: int = field(default=16, metadata=_range(0, 64))  # frames; 0 = off (not 1)
    temporal_stride: int = field(default=4, metadata=_range(1, 64))  # <= temporal_window
    frequency_mixing: bool = False  # ScaleDiff LFM: needs RGB upsampling through the VAE
    mixing_factor: float = field(default=0.25, metadata=_range(0.01, 1.0))  # low band: share of DCT freqs
    structure_guidance: bool = True
    guidance_weight: float = field(default=0.5, metadata=_range(0.0, 1.0))  # weight at t = T
    guidance_power: float = field(default=1.0, metadata=_range(0.0, 10.0))  # cosine decay exponent


@dataclass(frozen=True)
class JobSettings:
    """How a long clip is cut into chunks and how much memory a chunk may use."""

    chunk_frames: int = field(default=48, metadata=_range(1, 10_000))
    overlap_frames: int = field(default=8, metadata=_range(0, 1_000))
    memory_budget_gb: float = field(default=60.0, metadata=_range(0.1, 10_000.0))
    # read + VAE-encode the next chunk and decode + write the previous one while a chunk denoises
    overlap_io: bool = True
    # save the running chunk's latent this often, so an interrupt loses at most this much; 0 = every step
    checkpoint_seconds: float = field(default=120.0, metadata=_range(0.0, 86_400.0))
    # Frames per segment: consecutive chunks grouped into segments that can run in parallel and
    # are joined by a crossfade over overlap_frames; 0 = off (one anchored chain per clip).
    segment_frames: int = field(default=0, metadata=_range(0, 1_000_000))


@dataclass(frozen=True)
class ClusterSettings:
    """Where ``--cluster`` runs work units (Ray). Nothing here changes an output, only where and
    how fast it is computed; what a unit is comes from ``[jobs]``."""

    address: str = ""  # "local" / "local:N" (a Ray started here), "auto" (`ray start`), HOST:PORT
    workers: int = field(default=0, metadata=_range(0, 10_000))  # 0 = one per GPU, else per CPU
    shared_path: str = ""  # folder all nodes see: units store results there; "" = via the driver
    retries: int = field(default=3, metadata=_range(0, 1_000))  # runs of a unit whose worker died


@dataclass(frozen=True)
class GenerateSettings:
    """Text-to-video: base size and the cascade's final size."""

    frames: int = field(default=16, metadata=_range(1, 10_000))
    base_width: int = field(default=512, metadata=_range(16, 8192))
    base_height: int = field(default=320, metadata=_range(16, 8192))
    width: int = field(default=1024, metadata=_range(16, 16384))
    height: int = field(default=640, metadata=_range(16, 16384))


@dataclass(frozen=True)
class Settings:
    """Everything one job needs, from a preset plus overrides. Sections match the TOML tables."""

    description: str = ""
    upscale: UpscaleSettings = UpscaleSettings()
    output: OutputSettings = OutputSettings()
    model: ModelSettings = ModelSettings()
    sampling: SamplingSettings = SamplingSettings()
    freescale: FreeScaleSettings = FreeScaleSettings()
    jobs: JobSettings = JobSettings()
    generate: GenerateSettings = GenerateSettings()
    cluster: ClusterSettings = ClusterSettings()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none): what decides if a job can resume."""
        data = self.to_dict()
        if sections:
            data = {name: data[name] for name in sections}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, overrides: Mapping[str, Any], source: str = "command line") -> "Settings":
        """Apply ``{"section.key": value}`` overrides (None values are ignored), validated."""
        nested: dict[str, Any] = {}
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.rpartition(".")
            (nested.setdefault(section, {}) if section else nested)[key] = value
        return _merge(self, nested, source)


def _check_value(value: Any, kind: Any, meta: Mapping[str, Any], where: str) -> Any:
    """Return ``value`` converted to ``kind`` or raise SettingsError saying what is allowed."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices or type(value) is bool:
            allowed = ", ".join(repr(c) for c in choices)
            raise SettingsError(f"{where}: {value!r} is not allowed; choose one of {allowed}")
        return value
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_check_value(v, item, meta, where) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingsError(f"{where}: expected {kind.__name__}, got {value!r}")
    lo, hi = meta.get("range", (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingsError(f"{where}: {value!r} is out of range; allowed {lo} to {hi}")
    return value


def _merge(obj: Any, data: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with ``data`` applied recursively, validated."""
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{source}: {prefix}{key}"
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise SettingsError(f"{where}: unknown key; allowed keys here: {allowed}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise SettingsError(f"{where}: expected a table [{prefix}{key}], got {value!r}")
            changes[key] = _merge(current, value, source, f"{prefix}{key}.")
        else:
            changes[key] = _check_value(value, hints[key], fields[key].metadata, where)
    return dataclasses.replace(obj, **changes)


def preset_names() -> list[str]:
    """Names of the shipped presets (``presets/*.toml``)."""
    folder = resources.files("vidscale.presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Return ``(source label, TOML text)`` for a shipped preset name or a path to a user file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        try:
            return str(candidate), candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(f"{candidate}: preset file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{candidate}: cannot read preset file: {exc}") from None
    name = str(name_or_path)
    if name not in preset_names():
        raise SettingsError(
            f"unknown preset {name!r}; shipped presets: {', '.join(preset_names())} "
            "(or pass the path of a .toml file)"
        )
    return f"preset {name}", resources.files("vidscale.presets").joinpath(f"{name}.toml").read_text()


def parse_settings(text: str, source: str, base: Settings | None = None) -> Settings:
    """Apply the TOML ``text`` (labelled ``source`` in errors) on top of ``base`` or the defaults."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: not valid TOML: {exc}") from None
    return _merge(base or Settings(), data, source)


# The keys a folder's vidscale.toml in a watch folder may set: what a colleague chooses per
# folder (codec, scale, quality and look). Not the model, the engine, memory and chunking
# (jobs.*), the cluster, nor anything naming a file (upscale.detail_mask): anyone who can drop a
# file in the inbox can write one, and those keys load code and weights, read files or exhaust
# the machine. Whole sections are listed by name; the README's list is tested against this one.
FOLDER_KEYS: tuple[str, ...] = ("description", "output.*", "upscale.scale", "sampling.*", "freescale.*")


def folder_key_allowed(key: str) -> bool:
    """True when a dotted ``section.key`` is one a folder's vidscale.toml may set (:data:`FOLDER_KEYS`)."""
    return key in FOLDER_KEYS or f"{key.partition('.')[0]}.*" in FOLDER_KEYS


def parse_folder_settings(text: str, source: str, base: Settings) -> Settings:
    """A watch folder's ``vidscale.toml`` on top of ``base``: like :func:`parse_settings`, but a key
    outside :data:`FOLDER_KEYS` is refused, named, before anything is applied."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: not valid TOML: {exc}") from None
    for key in _dotted(data):
        if not folder_key_allowed(key):
            raise SettingsError(f"{source}: {key} cannot be set in a folder's vidscale.toml (only the "
                                f"watcher's own preset and options may set it); remove it. A folder may "
                                f"set {', '.join(FOLDER_KEYS)}")
    return _merge(base, data, source)


def _dotted(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"model": {"path": ...}}`` -> ``["model.path"]`` (tables flattened, values not)."""
    keys = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            keys += _dotted(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def load_settings(preset: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then the preset (a shipped name or a file path), then ``{"section.key": value}``."""
    settings = Settings()
    if preset is not None:
        source, text = preset_text(preset)
        settings = parse_settings(text, source)
    return settings.replace(overrides or {})


def as_toml(settings: Settings) -> str:
    """The settings as a complete preset file (what ``vidscale presets NAME`` prints)."""
    lines = [f"description = {json.dumps(settings.description)}"]
    for section, values in settings.to_dict().items():
        if not isinstance(values, dict):
            continue
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


__all__ = [
    "Codec", "OutputSettings", "UpscaleSettings", "ModelSettings", "SamplingSettings",
    "FreeScaleSettings", "JobSettings", "GenerateSettings", "ClusterSettings", "Settings",
    "preset_names", "preset_text", "parse_settings", "load_settings", "as_toml", "FOLDER_KEYS",
    "folder_key_allowed", "parse_folder_settings",
]
