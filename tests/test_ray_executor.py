"""executor = "ray": the plan's runs as tasks on a local Ray of 2 CPUs, same folders and metrics as local."""

from __future__ import annotations

import sys

import pytest

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.experiments import ExperimentConfig, make_plan, run_plan

ray = pytest.importorskip("ray", reason="Ray is installed by `make install` (requirements-lock.txt); pip install 'medaug[ray]'")


def plan_for(data, out, executor):
    exp = ExperimentConfig(name="r", out=str(out), data=[str(data)], methods=["none", "gradcam"], seeds=[0],
                           executor=executor, ray_local_cpus=2)
    return make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False))


def test_ray_runs_match_local_runs(tiny_data, tmp_path):
    seen = []
    remote = run_plan(plan_for(tiny_data, tmp_path / "ray", "ray"), on_result=lambda out, m: seen.append(out))
    local = run_plan(plan_for(tiny_data, tmp_path / "local", "local"))
    # same folders, same order; gradcam ran after its baseline (it fails without the none checkpoint)
    rel = [p.relative_to((tmp_path / "ray").resolve()) for p, _ in remote]
    assert rel == [p.relative_to(tmp_path / "local") for p, _ in local]
    assert sorted(seen) == sorted(p for p, _ in remote)
    for (_, a), (_, b) in zip(remote, local):
        assert a["method"] == b["method"] and a["test"]["n"] == b["test"]["n"]
        # Ray workers run with one intra-op thread; float sums may differ in the last bits
        assert a["test"]["auroc"] == pytest.approx(b["test"]["auroc"], abs=1e-3)
    # resuming schedules nothing: every run is finished and read back from its metrics.json
    again = run_plan(plan_for(tiny_data, tmp_path / "ray", "ray"))
    assert [m["test"] for _, m in again] == [m["test"] for _, m in remote]


def test_unknown_executor_and_missing_ray(tiny_data, tmp_path, monkeypatch):
    with pytest.raises(MedaugError, match="unknown executor 'dask'"):
        plan_for(tiny_data, tmp_path, "dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(MedaugError, match=r"pip install 'medaug\[ray\]'"):
        run_plan(plan_for(tiny_data, tmp_path, "ray"))


def test_a_failing_run_is_one_clear_error(tiny_data, tmp_path):
    exp = ExperimentConfig(name="f", out=str(tmp_path), data=[str(tiny_data)], methods=["none"], seeds=[0],
                           executor="ray", ray_local_cpus=2)
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False, pretrained=str(tmp_path / "gone.pt")))
    with pytest.raises(MedaugError, match=r"seed-0: --pretrained .*gone\.pt: file not found") as info:
        run_plan(plan)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("metrics.json"))
