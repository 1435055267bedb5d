"""Experiments (methods x seeds, two-stage baselines reused) and the report rebuilt from files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.experiments import ExperimentConfig, make_plan, run_dir, run_plan
from medaug.report import collect, summarise, write_report


def test_plan_runs_baseline_first_and_reuses_it(tiny_data, tmp_path):
    exp = ExperimentConfig(name="t", out=str(tmp_path), data=[str(tiny_data)], methods=["apga", "cutout"], seeds=[0, 1])
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False), {"apga": {"policy_width": 4}})
    assert plan.experiment.methods[0] == "none"  # added and ordered first for the two-stage method
    results = run_plan(plan)
    assert len(results) == 6
    apga_cfg = (run_dir(plan, str(tiny_data), "apga", 0, 1) / "config.toml").read_text()
    assert str(run_dir(plan, str(tiny_data), "none", 0, 1)) in apga_cfg
    # re-running skips finished runs (metrics files untouched)
    stamps = {p: p.stat().st_mtime_ns for p in plan.root.rglob("metrics.json")}
    run_plan(plan)
    assert stamps == {p: p.stat().st_mtime_ns for p in plan.root.rglob("metrics.json")}

    df = collect(plan.root)
    assert set(df["method"]) == {"none", "apga", "cutout"} and len(df) == 6
    assert "mask_iou" in df  # apga and cutout have masks and the synthetic data has true regions
    out = write_report(plan.root)
    for name in ("report.md", "results.csv", "summary.csv", "learning_curves.png", "masks.png"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary.method == "cutout") & (summary.metric == "accuracy")].iloc[0]
    accs = df[df.method == "cutout"]["accuracy"]
    assert row["mean"] == accs.mean() and row["n"] == 2
    text = (out / "report.md").read_text()
    assert "cutout" in text and "apga" in text and "± " in text


def test_summary_paired_difference_is_per_seed():
    df = pd.DataFrame({
        "dataset": ["d"] * 6, "shot": ["all"] * 6, "method": ["none"] * 3 + ["x"] * 3,
        "seed": [0, 1, 2] * 2, "accuracy": [0.5, 0.6, 0.7, 0.6, 0.7, 0.8],
    })
    s = summarise(df, ["accuracy"])
    x = s[s.method == "x"].iloc[0]
    assert abs(x["diff"] - 0.1) < 1e-12 and x["n_paired"] == 3


def test_metrics_json_is_complete_json(tiny_cfg, tmp_path):
    from medaug.train import fit

    fit(tiny_cfg(epochs=1), tmp_path / "r")
    data = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa"):
        assert key in data["test"]


def test_every_example_config_is_valid():
    from pathlib import Path

    from medaug.experiments import load_plan

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))
    assert len(examples) >= 4
    for path in examples:
        plan = load_plan(path)  # unknown keys, methods or options raise here
        assert plan.experiment.methods[0] == "none", path


def test_plan_check_fails_in_seconds_before_any_run_trains(tiny_data, tmp_path):
    """A combination whose networks cannot run (a policy too narrow to build its decoder; a GradCAM
    layer the model lacks) fails when the plan starts, naming the method, before `none` trains."""
    import time

    for options, match in (({"apga": {"policy_width": 1}}, "plan check: method 'apga'"),
                           ({"gradcam": {"layer": "nope"}}, "layer 'nope'")):
        method = next(iter(options))
        exp = ExperimentConfig(name=method, out=str(tmp_path), data=[str(tiny_data)], methods=[method], seeds=[0])
        plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False), options)
        start = time.time()
        with pytest.raises(MedaugError, match=match):
            run_plan(plan)
        assert time.time() - start < 30
        assert not plan.root.exists()  # nothing trained, nothing written


def test_plan_check_builds_the_default_policy_on_28px_images(tiny_data, tmp_path):
    from medaug.experiments import check_plan, plan_runs

    exp = ExperimentConfig(name="p28", out=str(tmp_path), data=[str(tiny_data)], methods=["apga", "end2end"], seeds=[0])
    check_plan(plan_runs(make_plan(exp, TrainConfig(size=28, epochs=2, progress=False))))  # raises if any fails


def test_two_variants_of_one_method_run_side_by_side_and_are_reported_by_name(tiny_data, tmp_path):
    import numpy as np
    from medaug.experiments import load_plan
    from medaug.generative.quality import write_image_folder
    from medaug.report import synthetic_section

    rng = np.random.default_rng(0)
    samples = write_image_folder(rng.integers(0, 255, (8, 32, 32), dtype=np.uint8), np.array([0, 1] * 4),
                                 ["negative", "positive"], tmp_path / "samples")
    toml = tmp_path / "plan.toml"
    toml.write_text(f"""
[experiment]
name = "v"
out = "{tmp_path}"
data = ["{tiny_data}"]
methods = ["none", "generative", "generative+classical", "square"]
seeds = [0]
[train]
size = 32
epochs = 1
batch_size = 16
progress = false
[methods.generative]
samples = "{samples}"
[methods."generative+classical"]
samples = "{samples}"
[methods.square]
method = "cutout"
variant = "devries"
""")
    plan = load_plan(toml)
    run_plan(plan)
    cfgs = {m: (run_dir(plan, str(tiny_data), m, 0, 0) / "config.toml").read_text() for m in ("generative+classical", "square")}
    assert 'method = "generative"' in cfgs["generative+classical"] and "classical = true" in cfgs["generative+classical"]
    assert 'method = "cutout"' in cfgs["square"] and 'variant = "devries"' in cfgs["square"]
    plain = (run_dir(plan, str(tiny_data), "generative", 0, 0) / "config.toml").read_text()
    assert "classical = false" in plain
    df = collect(plan.root)
    assert set(df["method"]) == {"none", "generative", "generative+classical", "square"}
    assert dict(zip(df["method"], df["base_method"]))["square"] == "cutout"
    lines = synthetic_section(df, tmp_path / "report")
    assert f"### {samples} (2 runs)" in lines  # both generative variants trained on the same samples
    assert "generative+classical" in (write_report(plan.root) / "report.md").read_text()

    exp = ExperimentConfig(name="w", out=str(tmp_path), data=[str(tiny_data)], methods=["generative+ratio"], seeds=[0])
    with pytest.raises(MedaugError, match="'ratio' is not a boolean option of 'generative'"):
        make_plan(exp, TrainConfig(size=32, progress=False))
    with pytest.raises(MedaugError, match="unknown method 'nosuch'"):
        make_plan(ExperimentConfig(data=[str(tiny_data)], methods=["x"]), TrainConfig(), {"x": {"method": "nosuch"}})


def test_string_options_name_their_run_shot_seed_and_dataset(tiny_data, tmp_path):
    from medaug.experiments import plan_runs

    exp = ExperimentConfig(name="p", out=str(tmp_path), data=[str(tiny_data)], methods=["generative"], seeds=[0, 3], shots=[0, 50])
    plan = make_plan(exp, TrainConfig(), {"generative": {"samples": "g/{dataset}/shot-{shot}/seed-{seed}/samples", "ratio": 2.0}})
    got = sorted((cfg.n_shot, cfg.seed, cfg.method_options["samples"], cfg.method_options["ratio"]) for _, cfg, _ in plan_runs(plan))
    key = Path(tiny_data).name
    assert got == [(0, 0, f"g/{key}/shot-all/seed-0/samples", 2.0), (0, 3, f"g/{key}/shot-all/seed-3/samples", 2.0),
                   (50, 0, f"g/{key}/shot-50/seed-0/samples", 2.0), (50, 3, f"g/{key}/shot-50/seed-3/samples", 2.0)]
    misspelt = make_plan(exp, TrainConfig(), {"generative": {"samples": "g/shot-{shots}/samples"}})
    with pytest.raises(MedaugError, match=r"\[methods.generative\] samples: unknown placeholder \{shots\}"):
        plan_runs(misspelt)


def test_a_run_another_process_is_training_is_left_to_it(tiny_data, tmp_path, capsys):
    """Two `medaug run` of one plan share it: a run whose folder another process holds (run_lock), and a
    two-stage run on that run's `none`, are skipped and named; the next call collects them. A single
    `fit` on a held folder stops with RunBusy before writing anything."""
    from medaug.errors import RunBusy
    from medaug.train import fit, run_lock

    exp = ExperimentConfig(name="t", out=str(tmp_path), data=[str(tiny_data)], methods=["none", "gradcam", "cutout"], seeds=[0, 1])
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False))
    held = run_dir(plan, str(tiny_data), "none", 0, 1)
    with run_lock(held):
        with pytest.raises(RunBusy, match="another medaug process is training this run now"):
            fit(TrainConfig(data=str(tiny_data), size=32, epochs=1, progress=False), held)
        assert not held.exists()
        done = {out for out, _ in run_plan(plan)}
    skipped = {held, run_dir(plan, str(tiny_data), "gradcam", 0, 1)}
    assert done == {run_dir(plan, str(tiny_data), m, 0, s) for m in ("none", "gradcam", "cutout") for s in (0, 1)} - skipped
    err = capsys.readouterr().err
    assert "2 run(s) left to another medaug process" in err
    # progress = false still prints one line per run: count, state, runs left
    assert "[1/6] synth/none/shot-all/seed-0: trained, test auroc" in err and "5 left" in err
    assert re.search(r"\[\d/6\] synth/none/shot-all/seed-1: left to another process", err)
    assert len(run_plan(plan)) == 6 and all((out / "metrics.json").is_file() for out in skipped)
    again = capsys.readouterr().err
    assert "[6/6]" in again and "[1/6] synth/none/shot-all/seed-0: finished before" in again


def test_runs_the_other_process_finished_meanwhile_are_not_called_left(tiny_data, tmp_path, capsys, monkeypatch):
    """A run skipped because another process held it, and finished by that process before this one ends,
    is reported as trained elsewhere, not as left to do."""
    import medaug.train as train_mod
    from medaug.errors import RunBusy

    exp = ExperimentConfig(name="t", out=str(tmp_path), data=[str(tiny_data)], methods=["none"], seeds=[0, 1])
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False))
    held = run_dir(plan, str(tiny_data), "none", 0, 0)

    def fake_fit(cfg, out, dataset=None, **_):
        if out == held:
            raise RunBusy("held")
        (held / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (held / "metrics.json").write_text("{}")  # the other process finishes meanwhile
        return {"test": {"auroc": 0.5}}

    monkeypatch.setattr(train_mod, "fit", fake_fit)
    monkeypatch.setattr(train_mod, "load_data", lambda cfg: None)
    run_plan(plan)
    err = capsys.readouterr().err
    assert "1 run(s) were trained by another medaug process (all finished now)" in err and "left to another medaug" not in err


def test_time_left_counts_only_runs_still_to_train(tmp_path, monkeypatch):
    """The estimate is the mean time of the runs trained here times the runs left to train: a run whose
    metrics.json is on disk (finished before, or by another process since) costs nothing."""
    import medaug.progress as progress_mod
    from medaug.progress import NullProgress, PlanProgress

    folders = [tmp_path / f"run-{i}" for i in range(5)]
    for out in folders:
        out.mkdir()
    for i in (2, 3):  # finished before, not yet reached in the plan
        (folders[i] / "metrics.json").write_text("{}")
    monkeypatch.setattr(progress_mod.time, "time", lambda: 0.0)
    progress = PlanProgress(5, NullProgress(), folders=folders)
    monkeypatch.setattr(progress_mod.time, "time", lambda: 100.0)  # run-0 took 100 s
    progress.plain = False  # no line printed: only the estimate is read
    (folders[0] / "metrics.json").write_text("{}")
    progress.finished("run-0", {"wall_s": 100.0}, trained=True, out=folders[0])
    assert progress.left_to_train() == 2  # run-1 and run-4
    assert progress.eta() == pytest.approx(200.0)
    assert PlanProgress(5, NullProgress()).left_to_train() == 5  # without folders: every run not counted yet
    progress.busy = lambda out: out == folders[4]  # a second `medaug run` of the plan is training run-4 now
    assert progress.others_training() == 1
    assert progress.eta() == pytest.approx(100.0)  # the 2 runs left, shared by two processes


def test_run_busy_sees_a_held_run_folder(tmp_path):
    """run_busy: True while a run_lock holds the folder (another process, or another lock here), False after."""
    from medaug.train import run_busy, run_lock

    out = tmp_path / "run"
    assert not run_busy(out)
    with run_lock(out):
        assert run_busy(out)
    assert not run_busy(out)


def test_a_moved_experiment_folder_resumes_with_its_runs(tiny_data, tmp_path, capsys):
    """A two-stage run's baseline counts as the path from its folder: the experiment folder moved or renamed
    is still this plan's, every finished run reused, none trained again."""
    import shutil

    def plan_in(where):
        exp = ExperimentConfig(name="t", out=str(where), data=[str(tiny_data)], methods=["none", "gradcam"], seeds=[0])
        return make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False))

    assert len(run_plan(plan_in(tmp_path / "a"))) == 2
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = plan_in(tmp_path / "b")
    stamps = {p: p.stat().st_mtime_ns for p in moved.root.rglob("metrics.json")}
    capsys.readouterr()
    assert len(run_plan(moved)) == 2
    assert stamps == {p: p.stat().st_mtime_ns for p in moved.root.rglob("metrics.json")} and len(stamps) == 2
    assert "[2/2] synth/gradcam/shot-all/seed-0: finished before" in capsys.readouterr().err
