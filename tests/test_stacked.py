"""apga and pgnm stacked on classical augmentation (option ``classical``): the plan starts apga from the
`classical` run, pgnm's fine-tuning stage trains as `classical`, and the classical draws resume exactly."""

from __future__ import annotations

import json

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.experiments import ExperimentConfig, make_plan, run_dir, run_plan
from medaug.methods import METHODS
from medaug.methods.classical import mix_in
from medaug.report import collect
from medaug.train import fit, read_toml


def test_mix_in_replaces_each_image_with_probability_p():
    x = torch.zeros(4000, 1, 2, 2)
    out = mix_in(x, lambda t: t + 1, 0.5, torch.Generator().manual_seed(0))
    replaced = out.flatten(1).mean(1)
    assert set(replaced.unique().tolist()) == {0.0, 1.0}
    assert abs(replaced.mean().item() - 0.5) < 0.03  # 4,000 fair coins: 3 sigma is 0.024
    assert mix_in(x, lambda t: t + 1, 0.0, torch.Generator().manual_seed(0)) is x


def test_stacked_methods_build_on_classical():
    assert METHODS.get("apga").builds_on({"classical": True}) == "classical"
    assert METHODS.get("apga").builds_on({}) == "none"
    assert METHODS.get("pgnm").builds_on({"classical": True}) == "classical"
    assert METHODS.get("cutout").builds_on({}) == "none"


def test_a_stacked_plan_starts_apga_from_classical_and_tunes_pgnm_as_classical(tiny_data, tmp_path):
    exp = ExperimentConfig(name="t", out=str(tmp_path), data=[str(tiny_data)], methods=["apga+classical", "pgnm+classical"],
                           seeds=[0])
    train = TrainConfig(size=32, epochs=3, batch_size=16, progress=False)
    plan = make_plan(exp, train, {"apga+classical": {"policy_width": 4}})
    assert plan.experiment.methods == ["classical", "apga+classical", "pgnm+classical"]  # the start added, first
    run_plan(plan)
    data = str(tiny_data)
    classical, apga, pgnm = (run_dir(plan, data, m, 0, 0) for m in ("classical", "apga+classical", "pgnm+classical"))
    assert (classical / "branch.pt").is_file()  # the classical run saves the start of the stacked apga
    assert read_toml(apga / "config.toml")["train"]["baseline"] == str(classical)
    m = json.loads((apga / "metrics.json").read_text())
    assert m["stages"] == {"baseline_epochs": 2, "method_epochs": 1} and m["start"]["from"] == "classical"
    heated = read_toml(pgnm / "heated" / "config.toml")["train"]
    assert heated["method"] == "pgnm" and heated["method_options"]["classical"] is True
    tuned = [json.loads(line) for line in (pgnm / "log.jsonl").read_text().splitlines()]
    assert tuned and json.loads((pgnm / "metrics.json").read_text())["stages"]["finetune_epochs"] == 2
    df = collect(plan.root)
    assert set(df["method"]) == {"classical", "apga+classical", "pgnm+classical"}
    assert set(df.loc[df.method == "apga+classical", "start_from"]) == {"classical"}


def test_pgnm_stacked_fine_tunes_as_classical(tiny_cfg, tmp_path, monkeypatch):
    import medaug.train as train

    seen = []
    real = train._fit

    def spy(cfg, out, *args, **kw):
        seen.append((cfg.method, kw.get("stage", "")))
        return real(cfg, out, *args, **kw)

    monkeypatch.setattr(train, "_fit", spy)
    fit(tiny_cfg(method="pgnm", epochs=3, method_options={"classical": True}), tmp_path / "run")
    assert seen == [("pgnm", "heated"), ("classical", "")]


def test_a_stacked_apga_refuses_a_none_baseline(tiny_cfg, tmp_path):
    fit(tiny_cfg(method="none", epochs=3), tmp_path / "none")
    with pytest.raises(MedaugError, match="a `none` run, but apga with these options starts from a `classical` run"):
        fit(tiny_cfg(method="apga", epochs=3, baseline=str(tmp_path / "none"),
                     method_options={"classical": True, "policy_width": 4}), tmp_path / "apga")
    assert not (tmp_path / "apga").exists()


def test_a_stacked_plan_refuses_a_classical_variant_of_another_method(tiny_data, tmp_path):
    exp = ExperimentConfig(name="t", out=str(tmp_path), data=[str(tiny_data)], methods=["classical", "apga+classical"])
    with pytest.raises(MedaugError, match=r"\[methods.classical\] makes `classical` a variant of another method"):
        make_plan(exp, TrainConfig(size=32, epochs=3), {"classical": {"method": "cutout"}})


def test_stacked_apga_resumes_exactly(tiny_cfg, tmp_path, monkeypatch):
    """Crash a stacked apga run after its first own epoch, run it again: the same result as a straight run (its
    classical draws come from a generator saved with the method's state)."""
    import medaug.train as train_mod

    fit(tiny_cfg(method="classical", epochs=5, baseline_epochs=2), tmp_path / "classical")

    def apga():
        return tiny_cfg(method="apga", epochs=5, baseline_epochs=2, baseline=str(tmp_path / "classical"),
                        method_options={"classical": True, "policy_width": 4})

    straight = fit(apga(), tmp_path / "straight")
    real_write, calls = train_mod.write_text, []

    def crash_after_one_epoch(path, text):
        real_write(path, text)
        if path.name == "log.jsonl" and path.parent.name == "resumed":
            calls.append(path)
            if len(calls) == 2:
                raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "write_text", crash_after_one_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(apga(), tmp_path / "resumed")
    monkeypatch.setattr(train_mod, "write_text", real_write)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = fit(apga(), tmp_path / "resumed")
    assert resumed["test"] == straight["test"] and resumed["valid"] == straight["valid"]

    def history(run):  # every epoch's losses (the test metrics alone can be the kept start's)
        rows = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]

    assert len(history("straight")) == 3 and history("resumed") == history("straight")
