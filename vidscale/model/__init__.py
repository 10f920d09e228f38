"""VideoCrafter2: checkpoint conversion, the UNet with fps conditioning, text encoder and exact
tokenizer, VAE helpers, the signal-scaled DDIM schedule, and tiny random models for tests."""

from .loading import load_videocrafter2, resolve_device, resolve_dtype, resolve_model_path
from .videocrafter2 import VideoCrafter2

__all__ = ["VideoCrafter2", "load_videocrafter2", "resolve_device", "resolve_dtype", "resolve_model_path"]
