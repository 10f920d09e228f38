"""Shipped presets: one TOML file per preset, installed as the package ``vidscale.presets``."""
