"""Presets load into typed settings; every mistake names the file, the key and what is allowed."""

import pytest

from vidscale.errors import SettingsError
from vidscale.settings import Settings, as_toml, load_settings, parse_settings, preset_names


def test_every_shipped_preset_loads_and_round_trips():
    assert {"prores-hq-2x", "h264-web-2x", "preview-lanczos-2x", "t2v-640p", "t2v-1280p"} <= set(preset_names())
    for name in preset_names():
        settings = load_settings(name)
        assert settings.description, f"{name} has no description"
        assert parse_settings(as_toml(settings), "round trip") == settings


def test_preset_values_land_in_typed_fields():
    settings = load_settings("h264-web-2x")
    assert settings.output.codec == "h264" and settings.output.crf == 20
    assert settings.upscale.scale == 2
    assert load_settings("preview-lanczos-2x").upscale.engine == "lanczos"


def test_user_file_and_overrides(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[output]\ncodec = "prores-4444"\n[freescale]\ndilate_levels = [2, 3]\n')
    settings = load_settings(path, {"sampling.seed": 7, "upscale.scale": None})
    assert settings.output.codec == "prores-4444"
    assert settings.freescale.dilate_levels == (2, 3)
    assert settings.sampling.seed == 7 and settings.upscale.scale == 2


@pytest.mark.parametrize("text, message", [
    ('[output]\ncodek = "h264"\n', "output.codek: unknown key; allowed keys here: audio, codec"),
    ('[output]\ncodec = "mpeg2"\n', "output.codec: 'mpeg2' is not allowed; choose one of 'prores-proxy'"),
    ('[output]\ncrf = "low"\n', "output.crf: expected int, got 'low'"),
    ('[output]\ncrf = 99\n', "output.crf: 99 is out of range; allowed 0 to 51"),
    ('[upscale]\nscale = 3\n', "upscale.scale: 3 is not allowed; choose one of 2, 4"),
    ('[freescale]\ndilation = 1\n', "freescale.dilation: expected true or false"),
    ('output = 3\n', "output: expected a table [output]"),
    ('[output\n', "not valid TOML"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_unknown_preset_and_missing_file():
    with pytest.raises(SettingsError, match="unknown preset 'nope'; shipped presets: balanced-2x, .*h264-web-2x"):
        load_settings("nope")
    with pytest.raises(SettingsError, match="missing.toml: preset file not found"):
        load_settings("missing.toml")


def test_digest_follows_settings():
    base = Settings()
    assert base.digest() == Settings().digest()
    assert base.replace({"sampling.seed": 5}).digest() != base.digest()
    assert base.replace({"output.crf": 30}).digest("sampling") == base.digest("sampling")
