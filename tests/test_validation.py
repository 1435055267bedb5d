"""Validation (docs/reliability.md, tables 6-8): every option is checked against the range its field declares
(one line naming the option, its value and the valid range), counts that multiply into memory are refused with
the estimate, data that cannot give a meaningful number is refused, and garbage files are one line, whatever
exception torch.load raises on their bytes. Deterministic: every garbage file comes from a fixed seed."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import typing

import numpy as np
import pytest

from medaug.config import Range, TrainConfig, options_from
from medaug.errors import MedaugError
from cli_helper import cli

TINY_GAN = dict(channel_base=256, channel_max=32, z_dim=16, w_dim=16, map_layers=1)
TINY_DIFFUSION = dict(channels=[8, 8], attention_levels=[False, False], norm_num_groups=4, num_head_channels=8, ddim_steps=2)


def option_classes() -> dict[str, type]:
    """Every options dataclass: the configs, each method's and each generator's Options."""
    from medaug.experiments import ExperimentConfig
    from medaug.generative.diffusion import Diffusion
    from medaug.generative.gan import GAN
    from medaug.generative.train import GenConfig
    from medaug.methods import METHODS

    classes = {"TrainConfig": TrainConfig, "ExperimentConfig": ExperimentConfig, "GenConfig": GenConfig,
               "GAN.Options": GAN.Options, "Diffusion.Options": Diffusion.Options}
    classes.update({f"{name}.Options": METHODS.get(name).Options for name in METHODS.names()})
    return classes


#: numeric fields whose valid values are a set, not a range (checked in __post_init__)
NO_RANGE = {("TrainConfig", "in_channels")}


def _numeric(tp) -> type | None:
    """int or float when annotation ``tp`` is one (also inside Optional, Annotated, list), else None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _numeric(args[0])
    if origin in (typing.Union, __import__("types").UnionType, list, tuple):
        return next(filter(None, (_numeric(a) for a in args)), None)
    return tp if tp in (int, float) else None


def _has_range(tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated and any(isinstance(m, Range) for m in args[1:]):
        return True
    return any(_has_range(a) for a in args)


def _fields():
    for cls_name, cls in option_classes().items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            kind = _numeric(hints[f.name])
            if kind is not None:
                yield cls_name, cls, f.name, kind, hints[f.name]


def test_every_numeric_option_declares_its_range_and_refuses_nan_inf_and_overflow():
    """Each int/float field of every options dataclass carries a Range; NaN, inf (floats) and 2**63 (ints) are
    refused by options_from in one line naming the field and the value; the defaults are inside the ranges."""
    checked = 0
    for cls_name, cls, name, kind, tp in _fields():
        if (cls_name, name) in NO_RANGE:
            continue
        assert _has_range(tp), f"{cls_name}.{name}: declare its range (config.Range)"
        is_list = typing.get_origin(typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp) is list
        bad_values = [float("nan"), float("inf"), -float("inf")] if kind is float else [2**63, -(2**63) - 1]
        for bad in bad_values:
            value = [bad] if is_list else bad
            with pytest.raises(MedaugError, match=rf"^{cls_name}: {name} must (each )?be .*got {bad!r}"):
                options_from(cls, {name: value}, cls_name)
        checked += 1
    assert checked > 100  # every method, generator and config (the count grows with new options)
    for cls_name, cls in option_classes().items():  # defaults are valid
        options_from(cls, {}, cls_name)


@pytest.mark.parametrize("cls_name, values, fragment", [
    ("cutmix.Options", dict(alpha=float("inf")), "alpha must be a finite number > 0, got inf"),
    ("mixup.Options", dict(alpha=0), "alpha must be a finite number > 0, got 0"),
    ("cutout.Options", dict(area_min=0.8, area_max=0.2), "area_min 0.8 must be <= area_max 0.2"),
    ("cutout.Options", dict(area_max=1.5), "area_max must be in [0, 1], got 1.5"),
    ("classical.Options", dict(p=-0.5), "p must be in [0, 1], got -0.5"),
    ("classical.Options", dict(degrees=float("nan")), "degrees must be in [0, 180], got nan"),
    ("classical.Options", dict(scale=1.0), "scale must be in [0, 1), got 1.0"),
    ("gradcam.Options", dict(threshold=2), "threshold must be in [0, 1], got 2"),
    ("apga.Options", dict(min_keep=1.0), "min_keep must be in [0, 1), got 1.0"),
    ("apga.Options", dict(init_useful=1.0), "init_useful must be 0 or in (0, 1), got 1.0"),
    ("apga.Options", dict(samples=0), "samples must be >= 1, got 0"),
    ("pgnm.Options", dict(kernel=4), "kernel=4: an odd number >= 1"),
    ("pgnm.Options", dict(global_decay=1.0), "global_decay must be in [0, 1), got 1.0"),
    ("randaugment.Options", dict(m=30), "m must be in [1, 29], got 30"),
    ("generative.Options", dict(ratio=float("nan")), "ratio must be a finite number >= 0, got nan"),
    ("end2end.Options", dict(policy_width=0), "policy_width must be >= 1, got 0"),
    ("GAN.Options", dict(truncation=float("nan")), "truncation must be in [0, 1], got nan"),
    ("GAN.Options", dict(r1_gamma=-0.5), "r1_gamma must be -1 or a finite number >= 0, got -0.5"),
    ("GAN.Options", dict(beta2=1.0), "beta2 must be in [0, 1), got 1.0"),
    ("Diffusion.Options", dict(ddim_steps=0), "ddim_steps must be >= 1, got 0"),
    ("Diffusion.Options", dict(ddim_steps=50, train_timesteps=20), "ddim_steps 50 must be <= train_timesteps 20"),
    ("Diffusion.Options", dict(eta=2.0), "eta must be in [0, 1], got 2.0"),
    ("TrainConfig", dict(eval_batch_size=0), "eval_batch_size must be >= 1, got 0"),
    ("TrainConfig", dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0, got nan"),
    ("TrainConfig", dict(patience=-3), "patience must be >= 0, got -3"),
    ("TrainConfig", dict(split_seed=-1), "split_seed must be in [0, 4294967295] (NumPy's seed range), got -1"),
    ("TrainConfig", dict(seed=2**63 - 1), "seed must be in [0, 4294967295] (NumPy's seed range), got 9223372036854775807"),
    ("TrainConfig", dict(finetune_epochs=-2), "finetune_epochs must be -1 or >= 0, got -2"),
    ("TrainConfig", dict(val_fraction=1.0), "val_fraction must be in (0, 1), got 1.0"),
    ("TrainConfig", dict(split_ratios="nan:1:1"), "--split-ratios 'nan:1:1': give three positive numbers"),
    ("ExperimentConfig", dict(seeds=[0, 2**63 - 1]), "seeds must each be in [0, 4294967295] (NumPy's seed range), got 9223372036854775807"),
    ("ExperimentConfig", dict(shots=[-1]), "shots must each be >= 0, got -1"),
    ("ExperimentConfig", dict(ray_gpus_per_run=1.5), "ray_gpus_per_run 1.5: a fraction of one GPU"),
    ("GenConfig", dict(ckpt_every=0), "ckpt_every must be >= 1, got 0"),
    ("GenConfig", dict(val_fraction=float("nan")), "val_fraction must be in (0, 1), got nan"),
])
def test_option_out_of_its_range_is_one_line_naming_it_its_value_and_the_range(cls_name, values, fragment):
    with pytest.raises(MedaugError) as err:
        options_from(option_classes()[cls_name], values, "WHERE")
    assert str(err.value).startswith("WHERE: ") and fragment in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------
# the command line: each bad input is one line, exit 2, nothing written




def _png(path, value, size=32):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(path)


def _npz(path, nan_at=None, big_label=None):
    """A MedMNIST-style float archive (train 40, val 10, test 10 images of 28 px, labels 0/1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 10), ("test", 10)):
        arrays[f"{split}_images"] = rng.random((n, 28, 28)).astype(np.float32)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    if nan_at is not None:
        arrays["train_images"][nan_at] = np.nan
    if big_label is not None:
        arrays["train_labels"][4, 0] = big_label
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_data):
    """A finished run, tiny generators, and broken datasets and files, built once."""
    from medaug.generative.train import GenConfig, train_generator
    from medaug.train import fit

    root = tmp_path_factory.mktemp("validation")
    os.environ["MEDAUG_CACHE"] = str(root / "cache")
    fit(TrainConfig(data=str(tiny_data), size=32, epochs=1, batch_size=16, progress=False), root / "base")
    train_generator(GenConfig(data=str(tiny_data), size=16, steps=2, batch_size=8, progress=False, options=TINY_GAN), root / "gan")
    train_generator(GenConfig(data=str(tiny_data), model="diffusion", size=16, steps=2, batch_size=8, progress=False,
                              options=TINY_DIFFUSION), root / "diffusion")
    _npz(root / "nan" / "nanmnist.npz", nan_at=(3, 5, 7))
    _npz(root / "biglabel" / "bigmnist.npz", big_label=10**9)
    for name, splits in (("onevalid", {"train": "ab", "valid": "a", "test": "ab"}), ("onetest", {"train": "ab", "valid": "ab", "test": "b"})):
        for split, classes in splits.items():
            for c in classes:
                for i in range(8):
                    _png(root / name / split / c / f"{i}.png", 10000 * (ord(c) - 96) + 100 * len(split) + i)  # all distinct
    csv = root / "csvdir"
    for i in range(12):
        _png(csv / "imgs" / f"{i}.png", i)
    (csv / "imgs" / "sub").mkdir()
    (csv / "data.csv").write_text("path,label\n" + "".join(f"imgs/{i}.png,{'ab'[i % 2]}\n" for i in range(12)) + "imgs/sub,a\n")
    exp = f'[experiment]\ndata = ["{tiny_data}"]\nout = "{root / "r-run"}"\n'  # refused: r-run must not appear
    (root / "seeds.toml").write_text(exp + "seeds = [9223372036854775807]\n")
    (root / "nanopt.toml").write_text(exp + 'methods = ["none", "classical"]\n[methods.classical]\nnoise_std = nan\n')
    (root / "noseeds.toml").write_text(exp + "seeds = []\n")
    (root / "bigsize.toml").write_text(exp + "[train]\nsize = 1000000\n")
    for name in ("trunc-best", "nonutf-log", "string-metric"):
        shutil.copytree(root / "base", root / name / "run")
    best = root / "trunc-best" / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[:2000])
    (root / "nonutf-log" / "run" / "log.jsonl").write_bytes(b'\xff\xfe{"epoch": 1}\n')
    m = json.loads((root / "string-metric" / "run" / "metrics.json").read_text())
    m["test"]["auroc"] = "0.9"
    (root / "string-metric" / "run" / "metrics.json").write_text(json.dumps(m))
    yield root, tiny_data
    os.environ.pop("MEDAUG_CACHE", None)


def cases(root, data):
    train = ("train", "--data", data, "--size", 32, "--epochs", 1, "--out", root / "r-train")
    sample = ("gen", "sample", "--per-class", 2, "--device", "cpu", "--out", root / "r-sample")
    huge = 10**6  # an image side (or count) whose memory no machine has
    return {
        # 4. options out of range, through every path that builds options
        "cutmix alpha=inf": ((*train, "--method", "cutmix", "-o", "alpha=inf"), ["method 'cutmix'", "alpha must be a finite number > 0, got inf"]),
        "cutout area_min > area_max": ((*train, "--method", "cutout", "-o", "area_min=0.8", "-o", "area_max=0.2"),
                                       ["area_min 0.8 must be <= area_max 0.2"]),
        "classical p=-0.5": ((*train, "--method", "classical", "-o", "p=-0.5"), ["p must be in [0, 1], got -0.5"]),
        "classical nan": ((*train, "--method", "classical", "-o", "hflip=nan"), ["hflip must be in [0, 1], got nan"]),
        "gradcam threshold=2": ((*train, "--method", "gradcam", "--baseline", root / "base", "-o", "threshold=2"),
                                ["threshold must be in [0, 1], got 2"]),
        "apga nan": ((*train, "--method", "apga", "--baseline", root / "base", "-o", "policy_lr=nan"),
                     ["policy_lr must be a finite number > 0, got nan"]),
        "--eval-batch-size 0": ((*train, "--eval-batch-size", 0), ["eval_batch_size must be >= 1, got 0"]),
        "--weight-decay nan": ((*train, "--weight-decay", "nan"), ["weight_decay must be a finite number >= 0, got nan"]),
        "--patience -3": ((*train, "--patience", -3), ["patience must be >= 0, got -3"]),
        "--split-seed -1": ((*train, "--split-seed", -1), ["split_seed must be in [0, 4294967295]", "got -1"]),
        "--seed 2**63-1": ((*train, "--seed", 2**63 - 1), ["seed must be in [0, 4294967295]", "got 9223372036854775807"]),
        "--lr inf": ((*train, "--lr", "inf"), ["lr must be a finite number > 0, got inf"]),
        "seeds = [2**63-1] (TOML)": (("run", root / "seeds.toml"), ["seeds.toml [experiment]", "seeds must each be in [0, 4294967295]"]),
        "noise_std = nan (TOML)": (("run", root / "nanopt.toml"), ["method 'classical'", "noise_std must be a finite number >= 0, got nan"]),
        "seeds = [] (TOML)": (("run", root / "noseeds.toml"), ["seeds is empty"]),
        "gen sample truncation=nan": ((*sample, "--model", root / "gan", "-o", "truncation=nan"),
                                      ["gen sample -o (gan)", "truncation must be in [0, 1], got nan"]),
        "gen sample ddim_steps=0": ((*sample, "--model", root / "diffusion", "-o", "ddim_steps=0"), ["ddim_steps must be >= 1, got 0"]),
        "gen sample ddim_steps > train_timesteps": ((*sample, "--model", root / "diffusion", "-o", "ddim_steps=5000"),
                                                    ["ddim_steps 5000 must be <= train_timesteps 1000"]),
        "gen sample guidance=nan": ((*sample, "--model", root / "diffusion", "-o", "guidance=nan"), ["guidance must be a finite number >= 0"]),
        "gen sample --seed -1": ((*sample, "--model", root / "gan", "--seed", -1), ["--seed -1: must be in [0, 4294967295]"]),
        "gen train ada_p=2": (("gen", "train", "--data", data, "--size", 16, "-o", "ada_p=2", "--out", root / "r-gen"),
                              ["ada_p must be in [0, 1], got 2"]),
        "gen train --seed -1": (("gen", "train", "--data", data, "--size", 16, "--seed", -1, "--out", root / "r-gen"),
                                ["seed must be in [0, 4294967295]"]),
        "data synth --seed -1": (("data", "synth", "--out", root / "r-synth", "--seed", -1), ["--seed -1: must be in [0, 4294967295]"]),
        "study --tolerance nan": (("study", "size", "--data", data, "--per-class", 4, "--methods", "none", "--seeds", 0,
                                   "--tolerance", "nan", "--out", root / "r-study"), ["--tolerance nan: must be a finite number >= 0"]),
        "study --epochs 0 before any generator": (("study", "size", "--data", data, "--per-class", 4, "--methods", "none,generative",
                                                   "--seeds", 0, "--epochs", 0, "--out", root / "r-study"), ["epochs must be >= 1, got 0"]),
        "gen eval --n-shot -1": (("gen", "eval", "--real", data, "--fake", root / "gan", "--n-shot", -1, "--out", root / "r-eval"),
                                 ["--n-shot -1: must be >= 0"]),
        "demo --seeds 0": (("demo", "--seeds", 0, "--data", data, "--out", root / "r-demo"), ["--seeds 0: must be >= 1"]),
        "transfer --lr nan": (("transfer", "--backbone", root / "base", "--data", data, "--shots", 2, "--lr", "nan",
                               "--out", root / "r-transfer"), ["lr must be a finite number > 0, got nan"]),
        # 4. counts that multiply into memory: refused with the estimate, before any allocation
        "gen sample --per-class 10**12": (("gen", "sample", "--model", root / "gan", "--per-class", 10**12, "--device", "cpu",
                                           "--out", root / "r-sample"), ["--per-class 1000000000000", "needs about", "of memory"]),
        "report --bootstrap 10**13": (("report", root / "base", "--bootstrap", 10**13, "--out", root / "r-report"),
                                      ["--bootstrap 10000000000000", "needs about", "of memory", "e.g. 2000"]),
        "bench --size 10**6": (("bench", "--size", huge, "--methods", "none", "--device", "cpu"), ["--size 1000000", "needs about"]),
        "train --size 10**6": (("train", "--data", data, "--size", huge, "--out", root / "r-train"), ["--size 1000000", "needs about"]),
        "data synth --size 10**6": (("data", "synth", "--out", root / "r-synth", "--size", huge), ["--size 1000000", "needs about"]),
        "data prepare --size 10**6": (("data", "prepare", data, "--size", huge, "--out", root / "r-prepare"), ["--size 1000000", "needs about"]),
        "gen train --batch-size 10**12": (("gen", "train", "--data", data, "--size", 16, "--batch-size", 10**12, "--out", root / "r-gen"),
                                          ["--batch-size 1000000000000", "needs about"]),
        "gen eval --size 10**6": (("gen", "eval", "--real", data, "--fake", root / "gan", "--size", huge, "--out", root / "r-eval"),
                                  ["--size 1000000", "needs about"]),
        "transfer --batch-size 10**11": (("transfer", "--backbone", root / "base", "--data", data, "--shots", 2,
                                          "--batch-size", 10**11, "--out", root / "r-transfer"), ["--batch-size 100000000000", "needs about"]),
        "run: [train] size = 10**6": (("run", root / "bigsize.toml"), ["--size 1000000", "needs about"]),
        # 5. data that cannot give a meaningful number
        "NaN pixel in an npz (train)": (("train", "--data", root / "nan", "--size", 28, "--epochs", 1, "--out", root / "r-train"),
                                        ["nanmnist.npz: 'train_images' image 3", "NaN or infinite pixel", "(5, 7)"]),
        "label 10**9 in an npz (data check)": (("data", "check", root / "biglabel"),
                                               ["bigmnist.npz: train_labels holds label 1000000000", "0..K-1"]),
        "label 10**9 in an npz (train)": (("train", "--data", root / "biglabel", "--size", 28, "--out", root / "r-train"),
                                          ["holds label 1000000000"]),
        "one-class validation split": (("train", "--data", root / "onevalid", "--size", 32, "--epochs", 1, "--out", root / "r-train"),
                                       ["the validation split has images of one class only ('a'", "meaningless", "--split-seed"]),
        "one-class test split": (("train", "--data", root / "onetest", "--size", 32, "--epochs", 1, "--out", root / "r-train"),
                                 ["the test split has images of one class only ('b'"]),
        "CSV row names a folder (check)": (("data", "check", root / "csvdir" / "data.csv"),
                                           ["data.csv line 14", "'imgs/sub' is a folder, not an image file"]),
        "CSV row names a folder (train)": (("train", "--data", root / "csvdir" / "data.csv", "--size", 32, "--out", root / "r-train"),
                                           ["data.csv line 14", "is a folder"]),
        # 6. garbage files
        "truncated best.pt as an extractor": (("gen", "eval", "--real", data, "--fake", root / "gan", "--no-tstr",
                                               "--extractor", root / "trunc-best" / "run", "--out", root / "r-eval"),
                                              ["best.pt: not a readable classifier checkpoint"]),
        "non-UTF-8 log.jsonl (report)": (("report", root / "nonutf-log", "--out", root / "r-report"),
                                         ["log.jsonl: not a medaug training log (UnicodeDecodeError"]),
        "string metric (report)": (("report", root / "string-metric", "--out", root / "r-report"),
                                   ["metrics.json: test.auroc is '0.9', not a number"]),
    }


CASES = list(cases(*(__import__("pathlib").Path("."),) * 2))


@pytest.mark.parametrize("case", CASES)
def test_bad_value_is_one_line_exit_2_and_writes_nothing(inputs, capsys, case):
    root = inputs[0]
    args, needles = cases(*inputs)[case]
    code, out, err = cli(capsys, *args)
    assert code == 2, (case, out, err)
    assert err.startswith("error:") and "unexpected" not in err and "Traceback" not in out + err, (case, err)
    for needle in needles:
        assert needle in err, (case, err)
    leftovers = sorted(p.name for p in root.iterdir() if p.name.startswith("r-"))
    assert not leftovers, (case, leftovers)  # refused before anything was written


def test_report_marks_nan_metrics_and_keeps_them_out_of_the_mean(tmp_path, capsys):
    """A NaN in metrics.json (a metric undefined for that run) is never tabled as a number: the cell says
    'NaN 1/3', its mean is over the other runs, and report.md lists the run."""
    from medaug.report import write_report

    for seed, auroc in enumerate((0.6, float("nan"), 0.8)):
        run = tmp_path / "runs" / "d" / "none" / "shot-all" / f"seed-{seed}"
        run.mkdir(parents=True)
        test = {"accuracy": 0.5 + seed / 100, "balanced_accuracy": 0.5, "macro_f1": 0.5, "auroc": auroc, "kappa": 0.0}
        (run / "metrics.json").write_text(json.dumps({"method": "none", "seed": seed, "n_shot": 0, "test": test}))
    folder = write_report(tmp_path / "runs")
    text = (folder / "report.md").read_text()
    assert "| d | all | 0.700 ± 0.141 (n=2) NaN 1/3 |" in text, text
    assert "NaN values" in text and "seed-1: auroc" in text
    assert "nan ±" not in text.lower().replace("nan 1/3", "")


# ---------------------------------------------------------------------------------------------
# 6. garbage checkpoints: every draw of a fixed seed is a dict or one MedaugError line


def _garbage(n: int = 200) -> list[bytes]:
    """``n`` garbage files from a fixed seed: random bytes, random bytes after a pickle header, truncated and
    byte-flipped real (zip) checkpoints and byte-flipped legacy (pickle) checkpoints."""
    import torch

    from medaug.device import rng_state
    from medaug.models.classifiers import create_classifier

    state = create_classifier("tiny", 1, 2).state_dict()
    real, legacy = io.BytesIO(), io.BytesIO()
    torch.save({"model": state, "rng": rng_state(), "state": {"epoch": 1, "history": [{"loss": 1.0}]}}, real)
    torch.save({"model": state}, legacy, _use_new_zipfile_serialization=False)
    real, legacy = real.getvalue(), legacy.getvalue()
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        kind, size = i % 5, int(rng.integers(0, 6000))
        if kind == 0:
            data = rng.bytes(size)
        elif kind == 1:
            data = b"\x80\x02" + rng.bytes(size)
        elif kind == 2:
            data = real[: int(rng.integers(0, len(real)))]
        else:
            data = bytearray(real if kind == 3 else legacy)
            for j in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
                data[j] = int(rng.integers(0, 256))
            data = bytes(data)
        out.append(data)
    return out


def test_garbage_checkpoints_and_extractors_are_one_line(tmp_path):
    """torch.load raises IndexError, KeyError, UnicodeDecodeError, TypeError, ... on such bytes; load_checkpoint
    and the quality extractor (a run folder's best.pt) turn each into one MedaugError naming the file."""
    from medaug.generative.quality import load_extractor
    from medaug.train import load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('[train]\nmodel = "tiny"\nsize = 32\n')
    refused = 0
    for i, data in enumerate(_garbage()):
        path = tmp_path / f"{i}.pt"
        path.write_bytes(data)
        try:
            assert isinstance(load_checkpoint(path), dict)
        except MedaugError as exc:
            assert str(exc).startswith(f"{path}: not") and "\n" not in str(exc), str(exc)
            refused += 1
        (run / "best.pt").write_bytes(data)
        try:
            load_extractor(run)
        except MedaugError as exc:
            assert str(exc).startswith(str(run / "best.pt")) and "\n" not in str(exc), str(exc)
    assert refused > 100  # most draws are unreadable; the rest are flipped tensor bytes that still load


def test_garbage_checkpoint_in_a_run_folder_is_one_line_or_resumes(inputs, capsys):
    """The CLI on a run folder whose checkpoint.pt is garbage (40 draws of the fixed seed): exit 2 with one
    line naming checkpoint.pt (or, for flipped tensor bytes that still load, a normal exit): never 'unexpected'."""
    root, data = inputs
    base = root / "base"
    for i, garbage in enumerate(_garbage(40)):
        run = root / "garbage-runs" / str(i)
        shutil.copytree(base, run)
        (run / "metrics.json").unlink()
        (run / "checkpoint.pt").write_bytes(garbage)
        code, out, err = cli(capsys, "train", "--data", data, "--size", 32, "--epochs", 1, "--batch-size", 16, "--no-progress",
                             "--out", run)
        assert code in (0, 2) and "unexpected" not in err and "Traceback" not in out + err, (i, err)
        if code == 2:
            assert "checkpoint.pt" in err, (i, err)
