"""The command line: bad input is one line on stderr, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def medaug(*args, cwd=None, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "medaug", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def assert_clean_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    text = " ".join(proc.stderr.split())
    for needle in needles:
        assert needle in text, text


def test_missing_data_folder(tmp_path):
    assert_clean_error(medaug("train", "--data", tmp_path / "nope", "--out", tmp_path / "run"), "nope", "no such file")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(medaug("train", "--data", tmp_path / "empty", "--out", tmp_path / "run"), "empty")


def test_unrecognised_layout(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hello")
    assert_clean_error(medaug("train", "--data", tmp_path / "odd", "--out", tmp_path / "run"), "odd")


def test_unknown_method_and_model(tiny_data, tmp_path):
    assert_clean_error(medaug("train", "--data", tiny_data, "--method", "magic", "--out", tmp_path / "r"), "unknown method 'magic'", "none")
    assert_clean_error(medaug("train", "--data", tiny_data, "--model", "vgg99", "--size", "32", "--epochs", "1", "--out", tmp_path / "r2"),
                       "unknown model 'vgg99'")
    assert not (tmp_path / "r2" / "metrics.json").exists()


def test_corrupt_image_names_the_file(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "copy"
    shutil.copytree(tiny_data, data)
    victim = sorted((data / "MURA-v1.1" / "train").rglob("image1.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    proc = medaug("train", "--data", data, "--size", "32", "--out", tmp_path / "run", env={"MEDAUG_CACHE": str(tmp_path / "c")})
    assert_clean_error(proc, victim.name, "corrupt")
    assert not any((tmp_path / "c").rglob("meta.json")), "no half-written cache"


def test_malformed_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nname = 1")
    assert_clean_error(medaug("run", bad), "bad.toml", "malformed TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[experiment]\ndata = ["x"]\nmethods = ["none"]\n[train]\nepochz = 3\n')
    assert_clean_error(medaug("run", unknown), "epochz")
    wrong_type = tmp_path / "type.toml"
    wrong_type.write_text('[experiment]\ndata = ["x"]\n[train]\nepochs = "many"\n')
    assert_clean_error(medaug("run", wrong_type), "epochs")


def test_class_with_no_images(tmp_path):
    root = tmp_path / "d" / "MURA-v1.1"
    (root / "train" / "XR_ELBOW" / "patient1" / "study1_negative").mkdir(parents=True)
    from PIL import Image

    Image.new("L", (32, 32)).save(root / "train" / "XR_ELBOW" / "patient1" / "study1_negative" / "image1.png")
    (root / "train_image_paths.csv").write_text("MURA-v1.1/train/XR_ELBOW/patient1/study1_negative/image1.png\n")
    assert_clean_error(medaug("train", "--data", tmp_path / "d", "--out", tmp_path / "run"), "positive", "no images")


@pytest.mark.parametrize("cmd", [["--help"], ["train", "--help"], ["run", "--help"], ["report", "--help"], ["demo", "--help"], ["data", "synth", "--help"]])
def test_help_works(cmd):
    proc = medaug(*cmd)
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_train_flags_come_from_train_config(tiny_data, tmp_path):
    """Every TrainConfig field is a flag of `medaug train` with its comment and default; a bad choice
    fails at config load, in one line naming the field and its values, before any folder is written."""
    import dataclasses

    from medaug.config import TrainConfig, field_help

    proc = medaug("train", "--help", env={"COLUMNS": "400"})
    docs = field_help(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "method_options":
            flag = "--" + f.name.replace("_", "-")
            assert flag in proc.stdout and docs[f.name].split()[0].lower() in proc.stdout.lower(), f.name
    assert "[default: 15]" in proc.stdout and "One of fp32 | bf16 | fp16" in proc.stdout
    for flag, value, needle in (("--precision", "fp64", "precision should be one of 'fp32', 'bf16', 'fp16', got 'fp64'"),
                                ("--monitor", "f1", "monitor should be one of 'auroc'"),
                                ("--epochs", "0", "epochs must be >= 1")):
        assert_clean_error(medaug("train", "--data", tiny_data, flag, value, "--out", tmp_path / "r"), needle)
        assert not (tmp_path / "r").exists()


def test_methods_shows_the_values_each_preset_sets():
    """apga's options read as they run (preset learn filled in), not as '' / None, and each other preset's values."""
    from medaug.methods.apga import PRESETS

    text = " ".join(medaug("methods", env={"COLUMNS": "400"}).stdout.split())
    apga = text[text.index("apga (starts from"):text.index("│ classical │")]  # up to the next method's row
    assert "action='bernoulli'" in apga and "prior_steps=100" in apga and "policy_width=8" in apga
    assert "=''," not in apga.replace("policy_weights=''", "") and "=None" not in apga
    for name in ("paper", "code"):
        assert f"preset={name} sets: action='threshold'" in apga
    assert f"policy_width={PRESETS['paper']['policy_width']}" in apga.split("preset=paper sets:")[1]
