"""The command line: help everywhere, usage errors exit 2, and no torch for --help."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from vidscale.cli import main

COMMANDS = [[], ["upscale"], ["generate"], ["watch"], ["probe"], ["presets"], ["model"],
            ["model", "convert"], ["model", "info"], ["selftest"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "vidscale")
def test_help_for_every_command(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, vidscale.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("args", [
    ["upscale"], ["upscale", "a.mp4", "--scale", "3"], ["upscale", "a.mp4", "--codec", "mpeg2"],
    ["upscale", "a.mp4", "--frames", "10:5"], ["generate", "x", "--size", "big"], ["nope"],
])
def test_bad_options_are_usage_errors(args):
    assert CliRunner().invoke(main, args).exit_code == 2


def test_presets_lists_and_shows():
    runner = CliRunner()
    listing = runner.invoke(main, ["presets"])
    assert listing.exit_code == 0 and "prores-hq-2x" in listing.output
    shown = runner.invoke(main, ["presets", "h264-web-2x"])
    assert shown.exit_code == 0 and 'codec = "h264"' in shown.output
    wrong = runner.invoke(main, ["presets", "nope"])
    assert wrong.exit_code == 2 and "unknown preset 'nope'" in wrong.output


def test_model_info_of_a_folder_without_weights_says_how_to_get_them(tmp_path):
    result = CliRunner().invoke(main, ["model", "info", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "huggingface.co/VideoCrafter/VideoCrafter2" in result.output and "Traceback" not in result.output


def test_model_info_of_the_tiny_model_counts_parameters():
    result = CliRunner().invoke(main, ["model", "info", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info["components"]) == {"unet", "vae", "text_encoder"}
    assert info["test_model"] and all(c["parameters"] > 0 for c in info["components"].values())


def test_watch_once_on_an_empty_folder_and_a_bad_out_dir(tmp_path):
    runner = CliRunner()
    done = runner.invoke(main, ["watch", str(tmp_path / "inbox"), "--create", "--once", "--settle", "0", "-q"])
    assert done.exit_code == 0, done.output
    assert "0 done, 0 failed" in done.output and (tmp_path / "inbox" / ".vidscale" / "status.json").exists()
    same = runner.invoke(main, ["watch", str(tmp_path / "inbox"), "--out-dir", str(tmp_path / "inbox")])
    assert same.exit_code == 2 and "cannot be the inbox itself" in same.output
