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
from cli_helper import cli


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
    stale = tmp_path / ".s.999999999.medaug-tmp"  # a killed process's half-built folder
    (stale / "class0").mkdir(parents=True)
    write_samples(tmp_path / "g", 2, tmp_path / "s", device="cpu")
    assert not stale.exists()
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


# ---------------------------------------------------------------------------------------------
# 3. inputs that look fine and are not


def _png(path, value=0, size=(32, 32)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def test_inputs_that_look_fine_are_refused_or_warned(tiny_data, tmp_path):
    import numpy as np

    from medaug.config import TrainConfig
    from medaug.data.cache import load_dataset
    from medaug.data.index import read_index

    with pytest.raises(MedaugError, match="batch_size must be >= 2"):
        TrainConfig(batch_size=1)  # one image per batch: zero optimizer steps
    # labels: trailing spaces are the same class, a blank one is refused naming its line
    for i in range(4):
        _png(tmp_path / "c" / f"{i}.png", 40 * i)
    (tmp_path / "c" / "list.csv").write_text("path,label\n0.png,positive\n1.png,positive \n2.png,negative\n3.png,negative\n")
    assert read_index(tmp_path / "c").classes == ["negative", "positive"]
    (tmp_path / "c" / "list.csv").write_text("path,label\n0.png,positive\n1.png,\n2.png,negative\n")
    with pytest.raises(MedaugError, match=r"list.csv line 3: empty label"):
        read_index(tmp_path / "c")
    # a class that exists only in test
    for split, classes in (("train", "ab"), ("test", "abc")):
        for c in classes:
            for i in range(3):
                _png(tmp_path / "f" / split / c / f"{c}{i}.png", 10 * i + ord(c) + (split == "test") * 100)
    with pytest.raises(MedaugError, match=r"class\(es\) 'c' have no training images \(only in test\)"):
        load_dataset(tmp_path / "f", size=32, progress=False)
    # an empty class folder is named, not read as another layout
    (tmp_path / "f" / "train" / "c").mkdir()
    (tmp_path / "f" / "train" / "d").mkdir()
    with pytest.raises(MedaugError, match="class.*d have no images"):
        read_index(tmp_path / "f", "auto")
    # a MURA CSV listing MURA-v1.1x/... is outside the dataset (paths compared, not string prefixes)
    data = tmp_path / "m"
    shutil.copytree(tiny_data, data)
    csv = data / "MURA-v1.1" / "train_image_paths.csv"
    first = csv.read_text().splitlines()[0]
    csv.write_text(first.replace("MURA-v1.1/", "MURA-v1.1x/", 1) + "\n")
    with pytest.raises(MedaugError, match="escapes the dataset folder"):
        read_index(data)
    csv.write_text("")  # a 0-byte CSV
    with pytest.raises(MedaugError, match="empty file"):
        read_index(data)
    # an .npz whose train split is empty
    npz = tmp_path / "n" / "set.npz"
    npz.parent.mkdir()
    np.savez(npz, train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1), np.int64),
             test_images=np.zeros((4, 28, 28), np.uint8), test_labels=np.array([[0], [1], [0], [1]]))
    with pytest.raises(MedaugError, match="no training images"):
        read_index(npz)
    # a FIFO in place of the data: refused at once, not read (which would block)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(MedaugError, match="not a regular file or folder"):
        read_index(fifo)
    # a training image copied into test: trained on, with a warning on stderr and in metrics.json
    dup = tmp_path / "dup"
    shutil.copytree(tiny_data, dup)
    root = dup / "MURA-v1.1"
    train_img = root / (root.parent / root / "train_image_paths.csv").read_text().splitlines()[0].removeprefix("MURA-v1.1/")
    test_img = root / (root / "valid_image_paths.csv").read_text().splitlines()[0].removeprefix("MURA-v1.1/")
    shutil.copy(train_img, test_img)
    warnings = load_dataset(dup, size=32, progress=False).info["warnings"]
    assert len(warnings) == 1 and "identical to training images" in warnings[0] and test_img.name in warnings[0]


# ---------------------------------------------------------------------------------------------
# 4. no tracebacks: each bad input is one line, exit 2, naming the file or flag


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, tiny_data):
    """Files and folders for the bad-input cases, built once: a finished run, a cache, broken copies of both."""
    import json

    import numpy as np
    import torch

    from medaug.config import TrainConfig
    from medaug.data.cache import build_cache
    from medaug.data.index import read_index
    from medaug.train import fit

    root = tmp_path_factory.mktemp("bad")
    os.environ["MEDAUG_CACHE"] = str(root / "cache")
    fit(TrainConfig(data=str(tiny_data), size=32, epochs=1, batch_size=16, progress=False), root / "base")
    for name, data in (("zero", b""), ("trunc", (root / "base" / "checkpoint.pt").read_bytes()[:3000]), ("garbage", np.random.default_rng(0).bytes(4000))):
        shutil.copytree(root / "base", root / f"ck-{name}")
        (root / f"ck-{name}" / "metrics.json").unlink()
        (root / f"ck-{name}" / "checkpoint.pt").write_bytes(data)
    shutil.copytree(root / "base", root / "ck-shape")
    (root / "ck-shape" / "metrics.json").unlink()
    torch.save({"model": {"w": torch.zeros(3)}}, root / "ck-shape" / "checkpoint.pt")
    shutil.copytree(root / "base", root / "bad-metrics")
    (root / "bad-metrics" / "metrics.json").write_text("{bad")
    cache = build_cache(read_index(tiny_data), 32, root / "cache-ok", progress=False)
    shutil.copytree(cache, root / "cache-trunc")
    images = root / "cache-trunc" / "images.npy"
    os.truncate(images, images.stat().st_size // 2)
    shutil.copytree(cache, root / "cache-meta")
    (root / "cache-meta" / "meta.json").write_text('{"size": "x"}')
    (root / "header.csv").write_text("path,label\n")
    (root / "binary.toml").write_bytes(bytes(range(256)))
    (root / "seeds.toml").write_text(f'[experiment]\ndata = ["{tiny_data}"]\nseeds = ["a"]\n')
    (root / "range.toml").write_text(f'[experiment]\ndata = ["{tiny_data}"]\n[train]\nepochs = 0\n')
    (root / "file.txt").write_text("not a folder")
    (root / "a-folder").mkdir()
    for name, content in (("list", "[1, 2]"), ("seed", None)):
        run = root / f"report-{name}" / "d" / "none" / "shot-all" / "seed-0"
        run.mkdir(parents=True)
        m = json.loads((root / "base" / "metrics.json").read_text())
        m["seed"] = "zero"
        (run / "metrics.json").write_text(content or json.dumps(m))
    (root / "report-dir" / "x" / "metrics.json").mkdir(parents=True)
    (root / "badbb").mkdir()
    shutil.copy(root / "base" / "best.pt", root / "badbb")
    (root / "badbb" / "config.toml").write_text("train = 3\n")
    three = root / "three"
    for c in "abc":
        for i in range(4):
            _png(three / c / f"{i}.png", 20 * i + ord(c))
    nonutf = root / "nonutf"
    for c in "ab":
        for i in range(4):
            _png(nonutf / c / f"{i}.png", 30 * i + ord(c))
    _png(nonutf / "a" / os.fsdecode(b"\xff\xfe.png"), 99)
    from medaug.generative.train import GenConfig, train_generator

    train_generator(GenConfig(data=str(tiny_data), size=16, steps=2, batch_size=8, progress=False, options=TINY_GAN), root / "gan")
    yield root, tiny_data
    os.environ.pop("MEDAUG_CACHE", None)


def bad_cases(root, data):
    train = ("train", "--data", data, "--size", 32, "--epochs", 1)
    base = root / "base"
    return {
        "decompression bomb (pixel limit)": (("train", "--data", root / "three", "--size", 32, "--out", root / "r13"),
                                             ["pixels is over medaug's limit of 1,000", "downscale"]),
        "non-UTF-8 file name (check)": (("data", "check", root / "nonutf"), ["nonutf", "is not valid UTF-8", "rename the file"]),
        "non-UTF-8 file name (train)": (("train", "--data", root / "nonutf", "--size", 32, "--out", root / "r11"), ["is not valid UTF-8"]),
        "gen sample -o truncation=abc": (("gen", "sample", "--model", root / "gan", "--per-class", 2, "-o", "truncation=abc",
                                         "--device", "cpu", "--out", root / "r12"), ["truncation should be float", "'abc'"]),
        "header-only CSV": (("train", "--data", root / "header.csv", "--out", root / "r1"), ["header.csv", "no rows"]),
        "binary TOML": (("run", root / "binary.toml"), ["binary.toml", "not UTF-8"]),
        "typed TOML seeds": (("run", root / "seeds.toml"), ["seeds.toml", "seeds should be list of int"]),
        "TOML range": (("run", root / "range.toml"), ["range.toml [train]", "epochs must be >= 1"]),
        "--out a file": ((*train, "--out", root / "file.txt"), ["--out", "file.txt", "is a file"]),
        "corrupt metrics.json": ((*train, "--out", root / "bad-metrics"), ["bad-metrics/metrics.json", "unreadable"]),
        "0-byte checkpoint": ((*train, "--out", root / "ck-zero"), ["checkpoint.pt", "not a readable checkpoint"]),
        "truncated checkpoint": ((*train, "--out", root / "ck-trunc"), ["checkpoint.pt", "not a readable checkpoint"]),
        "garbage checkpoint": ((*train, "--out", root / "ck-garbage"), ["checkpoint.pt", "not a readable checkpoint"]),
        "wrong-shape checkpoint": ((*train, "--out", root / "ck-shape"), ["checkpoint.pt", "no record of the configuration"]),
        "-o policy_width=abc": ((*train, "--method", "apga", "--baseline", base, "-o", "policy_width=abc", "--out", root / "r2"),
                                ["policy_width should be int", "'abc'"]),
        "--device tpu": ((*train, "--device", "tpu", "--out", root / "r3"), ["--device 'tpu'", "cpu"]),
        "baseline of another class count": (("train", "--data", root / "three", "--size", 32, "--epochs", 1, "--method", "apga",
                                             "--baseline", base, "--budget", "paper", "--out", root / "r4"),
                                            ["--baseline", "does not fit", "3 classes"]),
        "truncated cache array": ((*train[:1], "--data", root / "cache-trunc", "--size", 32, "--out", root / "r5"),
                                  ["cache-trunc/images.npy", "prepare the cache again"]),
        "bad cache metadata": ((*train[:1], "--data", root / "cache-meta", "--size", 32, "--out", root / "r6"),
                               ["cache-meta/meta.json", "bad cache metadata"]),
        "report: metrics.json a list": (("report", root / "report-list"), ["metrics.json", "not a medaug metrics.json"]),
        "report: metrics.json a folder": (("report", root / "report-dir"), ["no finished runs"]),
        "report: non-integer seed": (("report", root / "report-seed"), ["metrics.json", "seed 'zero' is not an integer"]),
        "report --out FILE": (("report", base, "--out", root / "file.txt"), ["--out", "is a file"]),
        "report --bootstrap -5": (("report", base, "--bootstrap", -5), ["--bootstrap -5"]),
        "gen sample --model a classifier run": (("gen", "sample", "--model", base, "--per-class", 2, "--out", root / "r7"),
                                                ["not a generator folder"]),
        "transfer --shots 0": (("transfer", "--backbone", base, "--data", data, "--shots", 0, "--out", root / "r8"), ["--shots 0"]),
        "transfer: bad backbone config.toml": (("transfer", "--backbone", root / "badbb", "--data", data, "--shots", 2,
                                                "--out", root / "r9"), ["badbb/config.toml", "[train]"]),
        "bench --steps 0": (("bench", "--steps", 0, "--methods", "none"), ["--steps 0"]),
        "bench --windows 0": (("bench", "--windows", 0, "--methods", "none"), ["--windows 0"]),
        "bench --batch 0": (("bench", "--batch", 0, "--methods", "none"), ["--batch 0"]),
        "bench --data not a cache": (("bench", "--data", data, "--methods", "none"), ["--data", "not a prepared cache"]),
        "bench --json a folder": (("bench", "--json", root / "a-folder", "--methods", "none"), ["--json", "is a folder"]),
        "data prepare --out FILE": (("data", "prepare", data, "--out", root / "file.txt"), ["--out", "is a file"]),
        "data check --fix-list a folder": (("data", "check", data, "--fix-list", root / "a-folder"), ["a-folder", "is a folder"]),
        "--split-ratios 1:x:1": ((*train, "--split-ratios", "1:x:1", "--out", root / "r10"), ["'1:x:1'"]),
    }


CASES = list(bad_cases(*(__import__("pathlib").Path("."),) * 2))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2(bad_inputs, capsys, monkeypatch, case):
    import medaug.data.io

    args, needles = bad_cases(*bad_inputs)[case]
    if "bomb" in case:  # the 200-megapixel limit, lowered so that a 32 x 32 image is over it
        monkeypatch.setattr(medaug.data.io, "MAX_PIXELS", 1000)
    code, out, err = cli(capsys, *args)
    assert code == 2, (case, out, err)
    assert "Traceback" not in out + err and err.startswith("error:") and "unexpected" not in err, (case, err)
    for needle in needles:
        assert needle in err, (case, err)
    for n in range(1, 14):  # nothing half-written: a refused run leaves no folder
        assert not (bad_inputs[0] / f"r{n}").exists(), (case, n)


# ---------------------------------------------------------------------------------------------
# 5. smaller: no folder after a failed run, user text printed as is, Ctrl-C, report on any run folders, size summary


def test_smaller_reliability_items(tiny_cfg, tiny_data, tmp_path, capsys, monkeypatch):
    import json
    import signal

    import pandas as pd

    import medaug.train as train_mod
    from medaug.data.check import size_summary
    from medaug.generative.train import GenConfig, train_generator
    from medaug.report import collect

    # a run that fails before its first checkpoint leaves no folder (NaN loss, missing baseline, bad generator option)
    with pytest.raises(MedaugError, match="NaN"):
        train_mod.fit(tiny_cfg(lr=1e38, optimizer="sgd", epochs=2), tmp_path / "nan")
    with pytest.raises(MedaugError, match="--baseline"):
        train_mod.fit(tiny_cfg(method="apga", baseline=str(tmp_path / "nowhere")), tmp_path / "nobase")
    with pytest.raises(MedaugError, match="unknown option"):
        train_generator(GenConfig(data=str(tiny_data), size=16, steps=2, progress=False, options={"zzz": 1}), tmp_path / "gen")
    assert not any((tmp_path / name).exists() for name in ("nan", "nobase", "gen"))
    # user text is printed as is (no Rich markup or emoji codes swallowed), config errors name the TOML file
    bad = tmp_path / "[train]:x:.toml"
    bad.write_text("[train]\nepochs = 0\n")
    code, _, err = cli(capsys, "train", "--config", bad, "--data", tiny_data)
    assert code == 2 and "[train]:x:.toml" in err and "epochs must be >= 1" in err, err
    # the layout error says which layouts were tried
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    code, _, err = cli(capsys, "data", "check", tmp_path / "odd")
    assert code == 2 and "tried" in err and "mura:" in err and "imagefolder:" in err, err
    # Ctrl-C: the promised line, exit 130
    monkeypatch.setattr(train_mod, "fit", lambda *a, **k: signal.raise_signal(signal.SIGINT))
    code, _, err = cli(capsys, "train", "--data", tiny_data, "--out", tmp_path / "int")
    assert code == 130 and "interrupted; re-run the same command to resume" in err, err
    monkeypatch.undo()
    # report on one run folder, and on a folder of `medaug train --out runs/<name>`-style runs: keys from metrics.json
    train_mod.fit(tiny_cfg(epochs=1), tmp_path / "runs" / "none-0")
    train_mod.fit(tiny_cfg(method="cutout", epochs=1, seed=1), tmp_path / "runs" / "cutout-1")
    one = collect(tmp_path / "runs" / "none-0")
    assert one[["dataset", "method", "seed", "shot"]].values.tolist() == [[tiny_data.name, "none", 0, "all"]]
    both = collect(tmp_path / "runs").sort_values("method")
    assert both["method"].tolist() == ["cutout", "none"] and both["seed"].tolist() == [1, 0]
    code, out, err = cli(capsys, "report", tmp_path / "runs")
    assert code == 0 and (tmp_path / "runs" / "report" / "report.md").is_file(), err
    metrics = json.loads((tmp_path / "runs" / "none-0" / "metrics.json").read_text())
    assert metrics["method"] == "none"
    # data check: hundreds of image sizes summarised in one line
    sizes = pd.Series({f"{h}x{h + 1} L": 1000 - h for h in range(100, 400)})
    line = size_summary(sizes)
    assert line.startswith("300 distinct; height 100-399") and "295 other size(s)" in line and len(line) < 300
