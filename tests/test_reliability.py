"""Reliability: medaug never deletes what it did not write, never presents another configuration's
results, and turns bad input into one line (exit 2). One test per class of docs/reliability.md."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from medaug.errors import MedaugError


def medaug(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "medaug", *map(str, args)], capture_output=True, text=True, env=env)


def assert_clean_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    text = " ".join(proc.stderr.split())
    for needle in needles:
        assert needle in text, text


TINY_GAN = dict(channel_base=256, channel_max=32, z_dim=16, w_dim=16, map_layers=1)


# ---------------------------------------------------------------------------------------------
# 1. never delete what medaug did not write


def test_output_folders_never_lose_files(tiny_data, tmp_path):
    from medaug.io_utils import MARKER, output_folder, write_text

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    # the dataset itself, or a folder inside it, as the output: refused, the dataset untouched
    assert_clean_error(medaug("data", "prepare", data, "--size", "32", "--out", data), "--out", "overlaps the input")
    assert_clean_error(medaug("data", "prepare", data, "--size", "32", "--out", data / "cache"), "overlaps the input")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    # a folder holding someone else's file: refused naming it, the file kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert_clean_error(medaug("data", "prepare", data, "--size", "32", "--out", mine), "mine", "thesis.tex", "did not write")
    assert_clean_error(medaug("train", "--data", data, "--size", "32", "--epochs", "1", "--out", mine), "thesis.tex")
    assert (mine / "thesis.tex").read_text() == "precious"
    # --out an existing file
    (tmp_path / "file.txt").write_text("x")
    assert_clean_error(medaug("data", "prepare", data, "--out", tmp_path / "file.txt"), "file.txt", "is a file")
    assert (tmp_path / "file.txt").read_text() == "x"
    # a medaug folder of another kind
    output_folder(tmp_path / "a-run", "run")
    with pytest.raises(MedaugError, match="holds medaug's run output, not a samples"):
        output_folder(tmp_path / "a-run", "samples")
    # --overwrite removes what medaug wrote and keeps what the user added since; stale temp files go, modes are the umask's
    out = output_folder(tmp_path / "samples", "samples")
    write_text(out / "samples.json", "{}")
    (out / "class0").mkdir()
    write_text(out / "class0" / "a.png", "png")
    (out / "notes.txt").write_text("mine")
    (out / ".samples.json.x1y2.medaug-tmp").write_text("left by kill -9")
    assert stat.S_IMODE((out / "samples.json").stat().st_mode) == 0o666 & ~_umask()
    output_folder(out, "samples", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "notes.txt"])
    # a real gen sample into a user's folder is refused; into its own folder it needs --overwrite
    from medaug.generative.train import GenConfig, train_generator, write_samples

    train_generator(GenConfig(data=str(data), size=16, steps=2, batch_size=8, progress=False, options=TINY_GAN), tmp_path / "g")
    with pytest.raises(MedaugError, match="thesis.tex"):
        write_samples(tmp_path / "g", 2, mine, device="cpu")
    write_samples(tmp_path / "g", 2, tmp_path / "s", device="cpu")
    with pytest.raises(MedaugError, match="--overwrite"):
        write_samples(tmp_path / "g", 2, tmp_path / "s", device="cpu")
    (tmp_path / "s" / "keep.txt").write_text("mine")
    write_samples(tmp_path / "g", 3, tmp_path / "s", device="cpu", overwrite=True)
    assert (tmp_path / "s" / "keep.txt").read_text() == "mine" and len(list((tmp_path / "s").glob("*/*.png"))) == 6
    assert (mine / "thesis.tex").read_text() == "precious"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# 2. a result folder only holds results of its own configuration


def test_result_folders_hold_only_their_own_configuration(tiny_cfg, tiny_data, tmp_path, monkeypatch):
    import medaug.train as train_mod
    from medaug.config import TrainConfig
    from medaug.experiments import ExperimentConfig, make_plan, plan_runs, run_plan
    from medaug.generative.train import GenConfig, train_generator

    fit = train_mod.fit
    first = fit(tiny_cfg(method="none", epochs=1), tmp_path / "R")
    with pytest.raises(MedaugError, match=r"finished run of another configuration \(method: 'none' there, 'cutout' now"):
        fit(tiny_cfg(method="cutout", epochs=1), tmp_path / "R")
    assert fit(tiny_cfg(method="none", epochs=1), tmp_path / "R") == first  # its own config: reused
    fresh = fit(tiny_cfg(method="cutout", epochs=1), tmp_path / "R", overwrite=True)
    assert fresh["method"] == "cutout"

    # a checkpoint of an interrupted run is resumed only by the same configuration
    real_write = train_mod.write_text

    def crash(path, text):
        real_write(path, text)
        if path.name == "log.jsonl":
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cfg(method="cutout", epochs=3), tmp_path / "C")
    monkeypatch.setattr(train_mod, "write_text", real_write)
    with pytest.raises(MedaugError, match="checkpoint of another configuration.*lr: 0.001 there, 0.01 now"):
        fit(tiny_cfg(method="classical", epochs=3, lr=0.01), tmp_path / "C")
    train_mod.output_folder(tmp_path / "copy", "run")  # a copied checkpoint in a medaug run folder without config.toml
    shutil.copy(tmp_path / "C" / "checkpoint.pt", tmp_path / "copy")
    with pytest.raises(MedaugError, match="checkpoint of another configuration.*method: 'cutout' there, 'classical' now"):
        fit(tiny_cfg(method="classical", epochs=3), tmp_path / "copy")
    assert fit(tiny_cfg(method="cutout", epochs=3), tmp_path / "C")["epochs_run"] == 3  # the same config resumes

    # medaug run: a changed [train] is refused (naming the key) before any training, not reused
    exp = ExperimentConfig(name="e", out=str(tmp_path), data=[str(tiny_data)], methods=["none"], seeds=[0])
    run_plan(make_plan(exp, TrainConfig(size=32, epochs=1, batch_size=16, progress=False)))
    with pytest.raises(MedaugError, match="epochs: 1 there, 2 now"):
        run_plan(make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False)))
    # two datasets with the same folder name get distinct run folders
    other = tmp_path / "elsewhere" / tiny_data.name
    shutil.copytree(tiny_data, other)
    two = make_plan(ExperimentConfig(name="two", out=str(tmp_path), data=[str(tiny_data), str(other)], methods=["none"], seeds=[0]),
                    TrainConfig(size=32, epochs=1, progress=False))
    dirs = [d for d, _, _ in plan_runs(two)]
    assert len(set(dirs)) == 2
    with pytest.raises(MedaugError, match="listed twice"):
        plan_runs(make_plan(ExperimentConfig(data=[str(tiny_data), str(tiny_data)], methods=["none"]), TrainConfig()))

    # gen train: a GAN folder is not a diffusion model's
    base = dict(data=str(tiny_data), size=16, batch_size=8, progress=False)
    train_generator(GenConfig(model="gan", steps=2, options=TINY_GAN, **base), tmp_path / "G")
    with pytest.raises(MedaugError, match="generator of another configuration.*model: 'gan' there, 'diffusion' now"):
        train_generator(GenConfig(model="diffusion", steps=2, **base), tmp_path / "G")
