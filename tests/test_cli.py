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
    done = runner.invoke(main, ["watch", str(tmp_path / "inbox"), "--create", "--once", "--settle", "0", "-q",
                                "--preset", "preview-lanczos-2x"])
    assert done.exit_code == 0, done.output
    assert "0 done, 0 failed" in done.output and (tmp_path / "inbox" / ".vidscale" / "status.json").exists()
    same = runner.invoke(main, ["watch", str(tmp_path / "inbox"), "--out-dir", str(tmp_path / "inbox"),
                                "--preset", "preview-lanczos-2x"])
    assert same.exit_code == 2 and "cannot be the inbox itself" in same.output


def _dry_run(*args):
    result = CliRunner().invoke(main, [*map(str, args), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_upscale_without_a_preset_runs_the_shipped_default_preset(make_clip):
    from vidscale.cli import DEFAULT_UPSCALE_PRESET
    from vidscale.settings import load_settings

    assert DEFAULT_UPSCALE_PRESET == "prores-hq-2x"
    clip = make_clip(frames=4)
    plain = _dry_run("upscale", clip, "--model", "tiny")
    preset = _dry_run("upscale", clip, "--model", "tiny", "--preset", "prores-hq-2x")
    assert plain["items"] == preset["items"]
    # guidance 1.0 as the preset says (no CFG pass), not the bare settings' 12 at twice the cost
    assert load_settings(DEFAULT_UPSCALE_PRESET).sampling.guidance_scale == 1.0
    assert "[default: prores-hq-2x]" in CliRunner().invoke(main, ["upscale", "--help"]).output


def test_steps_and_memory_budget_options_reach_the_plan(make_clip):
    """The dry run plans for the model it names: VideoCrafter2's size (``random``: its architecture,
    nothing loaded) in bf16."""
    clip = make_clip(width=128, height=96, frames=4)
    vc2 = ("--model", "random", "--dtype", "bf16")
    plan = _dry_run("upscale", clip, *vc2, "--steps", "10")["items"][0]["result"]["plan"]
    assert plan["steps"] == 7  # 10 minus the restart's 30 %
    assert plan["tiles"] == []
    # VC2's bf16 weights alone take 3.45 GB: 3.47 GB leaves too little for 4 whole frames
    tight = _dry_run("upscale", clip, *vc2, "--memory-budget", "3.47")["items"][0]["result"]["plan"]
    assert len(tight["tiles"]) > 1


def test_upscale_dry_run_makes_the_real_runs_checks_and_writes_nothing(make_clip, tmp_path):
    clip = make_clip(frames=4)
    runner = CliRunner()
    suffix = runner.invoke(main, ["upscale", str(clip), "-o", str(tmp_path / "x.mp4"), "--model", "tiny", "--dry-run"])
    assert suffix.exit_code == 2 and "prores-hq is written as .mov" in suffix.output
    weights = runner.invoke(main, ["upscale", str(clip), "-o", str(tmp_path / "x.mov"), "--dry-run",
                                   "--model", str(tmp_path / "no-weights")])
    assert weights.exit_code == 2 and "vidscale model convert" in weights.output
    (tmp_path / "x.mov").write_bytes(b"earlier")
    exists = runner.invoke(main, ["upscale", str(clip), "-o", str(tmp_path / "x.mov"), "--model", "tiny", "--dry-run"])
    assert exists.exit_code == 0 and "exists (--overwrite replaces it)" in exists.output
    planned = runner.invoke(main, ["upscale", str(clip), "--out-dir", str(tmp_path / "new"), "--model", "tiny",
                                   "--dry-run"])
    assert planned.exit_code == 0, planned.output
    for words in ("engine    freescale", "codec     prores-hq", f"-> {tmp_path / 'new' / clip.stem}_2x.mov",
                  "on an H100-class GPU at an assumed 300 TFLOP/s bf16 sustained", "an estimate"):
        assert words in planned.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mov"]  # not even the --out-dir


def test_generate_dry_run_fps_and_steps(tmp_path):
    target = tmp_path / "fox.mp4"
    plan = _dry_run("generate", "a fox", "-o", target, "--model", "tiny", "--fps", "12", "--steps", "8")
    assert (plan["frame_rate"], plan["steps"], plan["output"]) == (12, 8, str(target))
    assert plan["stages"] == ["512x320", "1024x640"] and set(plan["estimate_seconds"]) >= {"H100-class GPU"}
    assert not target.exists()
    missing = CliRunner().invoke(main, ["generate", "a fox", "-o", str(target), "--dry-run",
                                        "--model", str(tmp_path / "no-weights")])
    assert missing.exit_code == 2 and "huggingface.co/VideoCrafter/VideoCrafter2" in missing.output
    wrong = CliRunner().invoke(main, ["generate", "a fox", "-o", str(tmp_path / "fox.mov"), "--codec", "prores",
                                      "--dry-run", "--model", "tiny", "-q"])
    assert wrong.exit_code == 0, wrong.output  # ProRes in .mov is fine ...
    wrong = CliRunner().invoke(main, ["generate", "a fox", "-o", str(tmp_path / "fox.mp4"), "--codec", "prores",
                                      "--dry-run", "--model", "tiny"])
    assert wrong.exit_code == 2 and "rename the output" in wrong.output  # ... in .mp4 it is not


def test_generate_names_its_output_with_the_prompts_letters_in_any_script():
    from vidscale.pipeline.generate import default_output
    from vidscale.settings import load_settings

    settings = load_settings("t2v-640p", {"sampling.prompt": "Ein Fuchs läuft über Schnee, 東京!"})
    assert default_output(settings).name == "ein-fuchs-läuft-über-schnee-東京_1024x640.mp4"


def test_model_options_with_the_lanczos_engine_are_named_as_unused(make_clip, tmp_path):
    result = CliRunner().invoke(main, ["upscale", str(make_clip(frames=4)), "--out-dir", str(tmp_path),
                                       "--preset", "preview-lanczos-2x", "--prompt", "a fox", "--model", "tiny"])
    assert result.exit_code == 0, result.output
    assert "note: --prompt, --model are not used by the lanczos engine" in result.output


def test_watch_on_a_missing_inbox_says_create_and_makes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["watch", str(tmp_path / "inbx"), "--once"])
    assert result.exit_code == 2 and "INBOX does not exist" in result.output and "--create" in result.output
    assert not (tmp_path / "inbx").exists()


def test_generate_says_a_test_model_result_is_one_and_skips_an_existing_output(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text('[model]\npath = "tiny"\ndevice = "cpu"\n[sampling]\nsteps = 2\n'
                      '[generate]\nframes = 2\nbase_width = 64\nbase_height = 64\nwidth = 128\nheight = 128\n'
                      '[output]\ncodec = "h264"\nx264_preset = "ultrafast"\n')
    target = tmp_path / "new" / "cat.mp4"  # -o into a missing folder makes it, as --out-dir does
    args = ["generate", "a cat", "--preset", str(preset), "-o", str(target), "-q"]
    made = CliRunner().invoke(main, args)
    assert made.exit_code == 0, made.output
    assert made.output.startswith(f"wrote {target} (made with a RANDOM TEST MODEL")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "skipped" in again.output and "--overwrite" in again.output


def test_frames_by_timecode_select_the_same_frames_as_by_number(make_clip, tmp_path):
    """``--frames TC-TC`` counts from the clip's own start timecode at its rate, end exclusive."""
    from conftest import frame_index
    from watch_helpers import decoded

    clip = make_clip(container="mov", frames=20, timecode="01:00:00:00")
    lanczos = ("--engine", "lanczos", "--codec", "prores-lt", "-q")
    by_number = CliRunner().invoke(main, ["upscale", str(clip), "-o", str(tmp_path / "n.mov"), "--frames", "5:15",
                                          *lanczos])
    by_timecode = CliRunner().invoke(main, ["upscale", str(clip), "-o", str(tmp_path / "t.mov"),
                                            "--frames", "01:00:00:05-01:00:00:15", *lanczos])
    assert by_number.exit_code == by_timecode.exit_code == 0, by_timecode.output
    shown = [[frame_index(rgb[::2, ::2]) for rgb in decoded(tmp_path / name)] for name in ("n.mov", "t.mov")]
    assert shown[0] == shown[1] == list(range(5, 15))


def test_a_timecode_range_on_a_clip_without_timecode_is_a_usage_error(make_clip, tmp_path):
    result = CliRunner().invoke(main, ["upscale", str(make_clip(frames=4)), "-o", str(tmp_path / "o.mov"),
                                       "--engine", "lanczos", "--frames", "01:00:00:00-01:00:00:02"])
    assert result.exit_code == 2 and "carries none; give frame numbers" in result.output
    bad = CliRunner().invoke(main, ["upscale", str(make_clip(frames=4)), "--frames", "1:00:00-2"])
    assert bad.exit_code == 2 and "is not TC-TC" in bad.output
