"""vidscale: video upscaling and text-to-video with VideoCrafter2 and FreeScale.

The package root imports nothing heavy: ``import vidscale`` and ``vidscale --help`` never load torch.
"""

__version__ = "0.1.0"
