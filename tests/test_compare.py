"""`medaug compare`: the plan from the data, the estimate announced first, budget cuts, racing, the verdict, resume."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from medaug.compare import (CANDIDATES, Fit, Timing, choose_model, compare, fit_budget, inspect_data, parse_budget,
                            run_seconds)
from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.results import collect
from medaug.verdict import decide, one_sided_p, race, read_compare

from test_cli import assert_clean_error, medaug


# --- the plan from the data --------------------------------------------------------------------

def test_inspect_data_and_the_model_rule(tiny_data):
    facts = inspect_data(str(tiny_data))
    assert facts["native_size"] == 32 and facts["classes"] == ["negative", "positive"] and not facts["colour"]
    assert facts["n_train_guess"] == int(96 * 0.8)  # validation carved from train
    assert inspect_data(str(tiny_data), n_shot=10)["n_train_guess"] == 20
    assert choose_model(32, 5000, gpu=False)[:2] == ("tiny", 32)  # CPU: the tiny CNN, never upsampled
    assert choose_model(224, 5000, gpu=False)[:2] == ("tiny", 64)
    assert choose_model(224, 5000, gpu=True)[:2] == ("resnet18", 128)
    assert choose_model(28, 5000, gpu=True)[:2] == ("resnet18_small", 28)
    assert choose_model(224, 200, gpu=True)[:2] == ("tiny", 64)  # a small set: tiny even on a GPU
    model, size, why = choose_model(224, 200, gpu=True, model="resnet18", size=96)
    assert (model, size) == ("resnet18", 96) and "--model resnet18" in why


# --- the estimate ------------------------------------------------------------------------------

def fake_timing() -> Timing:
    names = ("none", "classical", "apga", "pgnm")
    return Timing(step_s={"none": 0.1, "classical": 0.2, "apga": 0.5, "pgnm": 0.3},
                  setup_s={n: 1.0 for n in names} | {"apga": 4.0},
                  predict_s={n: 0.01 for n in names}, masks_s={"none": 0.0, "classical": 0.0, "apga": 0.02, "pgnm": 0.0},
                  save_s=0.5, figures_s={"apga": 0.7})


def test_run_estimate_arithmetic():
    counts = {"train": 66, "valid": 20, "test": 30}  # 66 images at batch 32: 2 full batches + one of 2 = 3 steps
    t = fake_timing()
    cfg = TrainConfig(epochs=10, batch_size=32)
    epoch = lambda step: 3 * step + 20 * 0.01 + 0.5  # noqa: E731  steps, a validation pass, checkpoints
    final = (20 + 30) * 0.01
    assert run_seconds(cfg, "none", counts, t) == pytest.approx(1.0 + 10 * epoch(0.1) + final)
    assert run_seconds(TrainConfig(epochs=10, method="classical"), "classical", counts, t) == pytest.approx(
        1.0 + 10 * epoch(0.2) + final)
    # two-stage: its own epochs - baseline_epochs (2 of 10), the start scored on validation, test masks and figures at the end
    apga = TrainConfig(epochs=10, method="apga", baseline="somewhere")
    assert run_seconds(apga, "apga", counts, t) == pytest.approx(4.0 + 2 * epoch(0.5) + final + 30 * 0.02 + 0.7 + 20 * 0.01)
    # pgnm under equal budgets: 10 - 4 heated epochs with its step, then 4 fine-tuning epochs with none's
    pgnm = TrainConfig(epochs=10, method="pgnm", finetune_epochs=4)
    assert run_seconds(pgnm, "pgnm", counts, t) == pytest.approx(
        (1.0 + 6 * epoch(0.3) + final) + (1.0 + 4 * epoch(0.1) + final))


def test_parse_budget_and_a_bad_budget_is_one_line(tmp_path):
    assert [parse_budget(b) for b in ("2h", "90m", "1.5h", "3600s", "1h30m")] == [7200, 5400, 5400, 3600, 5400]
    for bad in ("2 hours", "10", "soon", "0h"):
        with pytest.raises(MedaugError, match="--budget"):
            parse_budget(bad)
    proc = medaug("compare", "--data", tmp_path / "nothing", "--budget", "2 hours", "--out", tmp_path / "c")
    assert_clean_error(proc, "--budget '2 hours'", "2h, 90m, 1.5h or 3600s")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


# --- the budget --------------------------------------------------------------------------------

METHODS8 = list(CANDIDATES)  # none, 5 classical baselines, apga, pgnm


def flat(cost: dict[str, float], default: float = 1.0):
    return lambda model, size: {m: cost.get(m, default) for m in METHODS8}


def test_budget_that_fits_cuts_nothing():
    fit = fit_budget(100.0, METHODS8, 5, "tiny", 64, flat({}))
    assert fit == Fit(METHODS8, 5, "tiny", 64, 40.0, ["budget 1 min 40 s: the full plan fits (about 40 s); nothing was cut"])
    assert fit_budget(None, METHODS8, 5, "tiny", 64, flat({})) == Fit(METHODS8, 5, "tiny", 64, 40.0, [])


def test_budget_cuts_seeds_first_down_to_three():
    fit = fit_budget(30.0, METHODS8, 5, "tiny", 64, flat({}))  # 8 a seed: 4 seeds need 32
    assert (fit.methods, fit.seeds) == (METHODS8, 3) and fit.estimate_s == 24
    assert any("seeds 5 -> 3" in n for n in fit.notes) and not any(n.startswith("cut: apga") for n in fit.notes)


def test_budget_then_drops_the_costliest_learned_method():
    fit = fit_budget(40.0, METHODS8, 5, "tiny", 64, flat({"apga": 10.0, "pgnm": 5.0}))  # 3 seeds: 63; without apga 33
    assert fit.seeds == 3 and fit.methods == [m for m in METHODS8 if m != "apga"] and fit.estimate_s == 33
    assert any(n.startswith("cut: apga") for n in fit.notes)


def test_budget_then_a_smaller_model_and_gives_back_what_fits():
    def per_run(model, size):
        cost = {("resnet18", 128): 10.0, ("resnet18", 64): 5.0, ("tiny", 64): 1.0, ("tiny", 32): 0.5}[(model, size)]
        return {m: cost for m in METHODS8}

    methods = [m for m in METHODS8 if m != "pgnm"]  # 7 methods: at tiny 64 px, 4 seeds need 28
    fit = fit_budget(30.0, methods, 5, "resnet18", 128, per_run)
    assert (fit.model, fit.size, fit.seeds, fit.methods) == ("tiny", 64, 4, methods)  # apga given back, then a seed
    assert any("resnet18 at 128 px -> tiny at 64 px" in n for n in fit.notes)
    assert any("seeds 5 -> 4" in n for n in fit.notes) and not any(n.startswith("cut: apga") for n in fit.notes)
    with pytest.raises(MedaugError, match="even the smallest plan"):
        fit_budget(30.0, methods, 5, "resnet18", 128, per_run, shrink=False)  # a model the user gave is not cut
    with pytest.raises(MedaugError, match="--budget"):
        fit_budget(1.0, methods, 5, "resnet18", 128, per_run)


def test_time_of_dropped_methods_goes_to_the_rest():
    from medaug.compare import _extend

    info = {"estimate": {"budget_s": 40.0, "per_run_s": {"none": 1.0, "classical": 1.0, "apga": 6.0}},
            "plan": {"max_seeds": 5}}
    rounds = [{"methods": ["none", "classical", "apga"]}] * 3  # 3 rounds done: 24 s
    assert _extend(info, rounds, ["none", "classical"], 3, 3) == 5  # 24 + 2 x 2 more seeds = 28 <= 40
    assert _extend({**info, "estimate": {**info["estimate"], "budget_s": 26.0}}, rounds, ["none", "classical"], 3, 3) == 4
    assert _extend({**info, "estimate": {**info["estimate"], "budget_s": None}}, rounds, ["none", "classical"], 3, 3) == 3


# --- racing ------------------------------------------------------------------------------------

def test_race_drops_a_method_much_worse_on_validation():
    scores = {"none": {0: 0.80, 1: 0.83, 2: 0.78}, "classical": {0: 0.85, 1: 0.86, 2: 0.84},
              "mixup": {0: 0.84, 1: 0.80, 2: 0.86}, "bad": {0: 0.60, 1: 0.65, 2: 0.58}}
    d = race(scores)
    assert d["best"] == "classical" and d["n"] == 3
    tests = {t["method"]: t for t in d["tests"]}
    assert set(tests) == {"mixup", "bad"}  # none is never tested, the best is the reference
    assert tests["bad"]["dropped"] and tests["bad"]["p_holm"] < 0.05
    assert tests["bad"]["diff"] == pytest.approx((0.60 + 0.65 + 0.58 - 0.85 - 0.86 - 0.84) / 3)
    assert not tests["mixup"]["dropped"]
    # Holm over the two tested: the adjusted p is at least the raw one, and at most twice it
    assert tests["bad"]["p"] <= tests["bad"]["p_holm"] <= 2 * tests["bad"]["p"]
    # before the third seed nothing is tested
    two = {m: {k: v for k, v in s.items() if k < 2} for m, s in scores.items()}
    assert race(two)["tests"] == []


def test_race_with_delta_drops_what_cannot_gain_delta_and_settles_against_none():
    # every method within a few thousandths of the others, tightly over seeds (PneumoniaMNIST's validation split)
    scores = {"none": {0: 0.988, 1: 0.989, 2: 0.987}, "cutmix": {0: 0.991, 1: 0.990, 2: 0.991},
              "mixup": {0: 0.989, 1: 0.990, 2: 0.988}}
    plain = race(scores)  # delta 0: nothing is significantly worse than cutmix, nothing is settled
    assert plain["best"] == "cutmix" and not any(t["dropped"] for t in plain["tests"]) and plain["settled"] is None
    d = race(scores, delta=0.01)
    tests = {t["method"]: t for t in d["tests"]}
    assert set(tests) == {"mixup"} and tests["mixup"]["dropped"]  # it cannot beat cutmix by 0.01
    assert [t["method"] for t in d["settled"]] == ["cutmix"]  # and cutmix cannot beat none by 0.01
    assert d["settled"][0]["diff"] == pytest.approx((0.991 + 0.990 + 0.991 - 0.988 - 0.989 - 0.987) / 3)
    # a method clearly ahead of none by more than delta: not settled, the race goes on
    ahead = {**scores, "cutmix": {0: 0.999, 1: 0.998, 2: 0.9995}, "none": {0: 0.95, 1: 0.96, 2: 0.955}}
    assert race(ahead, delta=0.01)["settled"] is None
    # an uncertain method (large spread over seeds) is neither dropped nor settled
    noisy = {**scores, "mixup": {0: 0.95, 1: 0.999, 2: 0.97}}
    n = race(noisy, delta=0.01)
    assert not {t["method"]: t for t in n["tests"]}["mixup"]["dropped"] and n["settled"] is None


def test_one_sided_p_edge_cases():
    assert one_sided_p([0.9, 0.9, 0.9], [0.5, 0.5, 0.5]) == 0.0  # a constant positive difference: infinite t
    assert one_sided_p([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) == 1.0
    assert math.isnan(one_sided_p([0.9], [0.5]))
    assert one_sided_p([0.9, 0.8, 0.85], [0.5, 0.6, 0.4]) < 0.05


# --- the verdict from synthetic results --------------------------------------------------------

def fake_compare(root: Path, valid: dict[str, list[float]], test: dict[str, list[float]], counts: int = 50) -> dict:
    """Run folders with metrics.json (valid and test auroc per seed) and a finished compare.json."""
    for method, values in test.items():
        for seed, value in enumerate(values):
            run = root / "data" / method / "shot-all" / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({
                "method": method, "seed": seed, "n_shot": 0, "wall_s": 1.0,
                "valid": {"auroc": valid[method][seed]}, "test": {"auroc": value, "accuracy": value}}))
    info = {"version": 1, "status": "done", "metric": "auroc", "level": 0.05, "test": "t",
            "plan": {"methods": list(test), "seeds": len(next(iter(test.values())))},
            "data": {"counts": {s: {"negative": counts, "positive": counts} for s in ("train", "valid", "test")}},
            "rounds": []}
    (root / "compare.json").write_text(json.dumps(info))
    return info


NONE = [0.80, 0.82, 0.79, 0.81, 0.83, 0.80]


def test_verdict_recommends_the_validation_choice_when_it_beats_none(tmp_path):
    up = [v + d for v, d in zip(NONE, (0.05, 0.06, 0.05, 0.07, 0.05, 0.06))]
    info = fake_compare(tmp_path, valid={"none": [0.8] * 6, "classical": [0.9, 0.91, 0.9, 0.9, 0.92, 0.9], "mixup": [0.85] * 6},
                        test={"none": NONE, "classical": up, "mixup": NONE})
    v = decide(collect(tmp_path), info)
    assert v["choice"] == v["recommended"] == "classical"
    assert v["text"].startswith("Verdict: train with classical.")
    assert v["vs_none"]["diff"] == pytest.approx(0.0567, abs=1e-3) and v["vs_none"]["t_p_holm"] < 0.05
    assert v["vs_none"]["ci_lo"] > 0 and "95% CI +0.0" in v["text"] and "Holm-adjusted t-test p" in v["text"]
    assert "itself the best classical baseline" in v["text"] and v["warnings"] == []


def test_verdict_says_nothing_beats_none_and_never_picks_on_test(tmp_path):
    up = [v + d for v, d in zip(NONE, (0.05, 0.06, 0.05, 0.07, 0.05, 0.06))]
    noisy = [v + d for v, d in zip(NONE, (0.02, -0.03, 0.01, -0.01, 0.02, -0.02))]
    # apga is best on validation but level with none on test; classical beats none on test only
    info = fake_compare(tmp_path, valid={"none": [0.8] * 6, "classical": [0.85] * 6, "apga": [0.9] * 6},
                        test={"none": NONE, "classical": up, "apga": noisy}, counts=12)
    v = decide(collect(tmp_path), info)
    assert v["choice"] == "apga" and v["recommended"] is None
    assert v["text"].startswith("Verdict: no method is significantly better than none (")
    assert "classical beats none on the test split but was not the validation choice" in v["text"]
    assert v["best_classical"] == "classical" and "Against the best classical baseline on validation, classical" in v["text"]
    assert any("too small to decide" in w for w in v["warnings"]) and "fewer than 20 per class" in v["text"]


def test_verdict_leaves_out_dropped_methods_and_warns(tmp_path):
    info = fake_compare(tmp_path, valid={"none": [0.8] * 3, "classical": [0.85] * 3, "apga": [0.5] * 3},
                        test={"none": NONE[:3], "classical": NONE[:3], "apga": [0.99] * 3})
    info["rounds"] = [{"round": 3, "dropped": [{"method": "apga", "round": 3, "best": "classical", "diff": -0.35,
                                                "p": 0.0, "p_holm": 0.0, "n": 3}]}]
    run = tmp_path / "data" / "classical" / "shot-all" / "seed-0" / "metrics.json"
    m = json.loads(run.read_text())
    run.write_text(json.dumps({**m, "start": {"kept": True, "valid": {}}, "collapse": {"epoch": 3}}))
    other = run.parents[1] / "seed-1" / "metrics.json"  # replaced its start on AUROC, at a worse operating point
    m = json.loads(other.read_text())
    other.write_text(json.dumps({**m, "valid": {**m["valid"], "balanced_accuracy": 0.55},
                                 "start": {"kept": False, "valid": {"auroc": 0.7, "balanced_accuracy": 0.75}}}))
    (tmp_path / "compare.json").write_text(json.dumps(info))
    v = decide(collect(tmp_path), info)
    assert v["methods"] == ["none", "classical"] and "apga" not in v["valid_means"]
    assert "Dropped in racing" in v["text"] and "apga after round 3" in v["text"] and "0.99" not in v["text"]
    assert any("collapsed in 1/3" in w for w in v["warnings"]) and any("kept its starting checkpoint" in w for w in v["warnings"])
    assert any(w.startswith("classical: in 1/3 runs the chosen checkpoint beat its starting checkpoint") and "0.200" in w
               for w in v["warnings"])
    # the report reads the same files: the verdict on top, the dropped method out of the tables
    from medaug.report import write_report

    text = (write_report(tmp_path, html=True) / "report.md").read_text()
    assert text.index("## Verdict (medaug compare)") < text.index("## Main table")
    assert v["text"] in text and "| apga | 3 |" in text
    assert "0.990" not in text.split("## Main table")[1]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Verdict (medaug compare)" in html and "Dropped in racing" in html


# --- end to end on tiny synthetic data ---------------------------------------------------------

@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    """Synthetic radiographs (folders layout) whose positives are brighter: a signal the tiny CNN learns in a few
    epochs, so a method can be much worse than none on validation."""
    import numpy as np
    from PIL import Image

    from medaug.data.synth import generate

    root = generate(tmp_path_factory.mktemp("easy") / "data", n_train=96, n_test=48, size=32, seed=0, layout="folders",
                    progress=False)
    for f in root.rglob("positive/*.png"):
        if not f.stem.endswith("_roi"):
            Image.fromarray(np.clip(np.asarray(Image.open(f), np.int16) + 90, 0, 255).astype(np.uint8)).save(f)
    return root


@pytest.fixture
def swapped_samples(easy_data, tmp_path):
    """A 'generator' whose samples carry the wrong label: the real training images of the other class."""
    out = tmp_path / "swapped"
    for cls, other in (("negative", "positive"), ("positive", "negative")):
        (out / cls).mkdir(parents=True)
        for i, f in enumerate(sorted((easy_data / "train" / other).glob("*.png"))):
            if not f.stem.endswith("_roi"):
                shutil.copy(f, out / cls / f"{i}.png")
    return out


def test_compare_end_to_end_races_resumes_and_reports(easy_data, swapped_samples, tmp_path, monkeypatch):
    import medaug.compare as cmp

    said: list[str] = []
    real_run_plan = cmp.run_plan
    monkeypatch.setattr(cmp, "run_plan", lambda plan, **k: (said.append("<training>"), real_run_plan(plan, **k))[1])
    kw = dict(out=tmp_path / "c", methods=["none", "classical"], with_generator=str(swapped_samples), epochs=3, seeds=4,
              options={"generative": {"ratio": 4.0}}, progress=False, html=False, delta=0.0)
    result = compare(str(easy_data), say=said.append, **kw)
    # the plan from the data, announced before the first training
    info = read_compare(tmp_path / "c")
    assert info["plan"]["methods"] == ["none", "classical", "generative"] and info["plan"]["seeds"] == 4
    assert (info["plan"]["train"]["model"], info["plan"]["train"]["size"]) == ("tiny", 32)
    first = said.index("<training>")
    assert any(line.startswith("estimated time per run") for line in said[:first])
    assert any("total: 12 runs (3 methods x 4 seeds)" in line for line in said[:first])
    # racing: the swapped-label generator is much worse on validation and is dropped after round 3
    assert [d["method"] for r in info["rounds"] for d in r["dropped"]] == ["generative"]
    drop = info["rounds"][2]["dropped"][0]
    assert drop["round"] == 3 and drop["diff"] < 0 and drop["p_holm"] < 0.05
    assert info["rounds"][3]["methods"] == ["none", "classical"] and info["rounds"][3]["tests"] == []  # no drop in the last
    assert len(list((tmp_path / "c").rglob("generative/shot-all/seed-*/metrics.json"))) == 3  # its runs stay
    v = result["verdict"]
    assert v["methods"] == ["none", "classical"] and v["text"] in said
    assert "generative after round 3" in v["text"] and "were not evaluated" in v["text"]
    assert any(line.startswith("time: ") and "racing skipped 1 of its runs" in line for line in said)
    # resume: a second call trains nothing and prints the same verdict
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("metrics.json")}
    again: list[str] = []
    assert compare(str(easy_data), say=again.append, **kw)["verdict"]["text"] == v["text"]
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("metrics.json")}
    assert any(line.startswith("resuming the compare") for line in again) and v["text"] in again
    assert any("nothing to train" in line for line in again)
    # other choices in the same folder are refused, naming them
    with pytest.raises(MedaugError, match="holds a compare of other choices .*epochs"):
        compare(str(easy_data), say=again.append, **{**kw, "epochs": 4})
    # medaug report reads the same runs: the same verdict, the dropped method out of the tables
    proc = medaug("report", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert " ".join(v["text"].split()) in " ".join(proc.stdout.split())
    assert "│ none" in proc.stdout and "│ classical" in proc.stdout and "│ generative" not in proc.stdout


def test_compare_takes_a_class_mapping_and_refuses_a_bad_one(easy_data, tmp_path):
    """--classes reaches every run of the plan (the knee set's binary task is compared this way)."""
    kw = dict(out=tmp_path / "c", methods=["none", "classical"], epochs=2, seeds=3, progress=False, html=False,
              say=lambda text: None)
    with pytest.raises(MedaugError, match="no-such-class"):
        compare(str(easy_data), classes="sick=no-such-class", **kw)
    assert not (tmp_path / "c").exists()  # nothing half-made
    compare(str(easy_data), classes="healthy=negative;sick=positive", **kw)
    runs = sorted((tmp_path / "c").rglob("metrics.json"))
    assert len(runs) == 6
    assert all(json.loads(f.read_text())["classes"] == ["healthy", "sick"] for f in runs)
    assert read_compare(tmp_path / "c")["choices"]["classes"] == "healthy=negative;sick=positive"


def test_compare_stops_when_nothing_left_can_gain_delta_over_none(easy_data, tmp_path, monkeypatch):
    """With the default delta (0.01), racing drops what cannot beat the best by delta and the rounds stop once
    no method left can beat none by it on validation; the verdict says which, and a second call trains nothing."""
    import medaug.compare as cmp

    said: list[str] = []
    kw = dict(out=tmp_path / "c", methods=["none", "classical"], epochs=2, seeds=5, progress=False, html=False)
    # the easy data: both at validation AUROC 1.000 in every seed, none (listed first) is the best, and classical,
    # unable to beat it by 0.01, is dropped after round 3: nothing is left to race
    result = compare(str(easy_data), say=said.append, **kw)
    info = read_compare(tmp_path / "c")
    assert info["choices"]["delta"] == 0.01 and len(info["rounds"]) == 3
    assert [d["method"] for d in info["rounds"][2]["dropped"]] == ["classical"] and info["rounds"][2]["dropped"][0]["delta"] == 0.01
    assert len(list((tmp_path / "c").rglob("metrics.json"))) == 6  # 2 methods x 3 seeds, not x 5
    assert any("dropped classical (+0.000, cannot beat none by 0.01" in line for line in said)
    assert "none could beat the best by 0.01 or more" in result["verdict"]["text"]
    again: list[str] = []
    assert compare(str(easy_data), say=again.append, **kw)["verdict"]["text"] == result["verdict"]["text"]
    assert any("nothing to train" in line for line in again)
    # the same folder with --delta 0 is another compare: refused, naming delta; a delta outside [0, 1) is refused
    with pytest.raises(MedaugError, match="delta"):
        compare(str(easy_data), say=again.append, **{**kw, "delta": 0.0})
    with pytest.raises(MedaugError, match="--delta 1.5"):
        compare(str(easy_data), say=again.append, **{**kw, "delta": 1.5, "out": tmp_path / "d"})
    # classical ahead of none by 0.002 in every seed: it stays the best, but cannot beat none by 0.01, so the
    # race is settled after round 3 and the verdict reads the test split over 3 seeds
    real = cmp.valid_score
    monkeypatch.setattr(cmp, "valid_score", lambda run, metric: real(run, metric) - (0.002 if "/none/" in str(run) else 0))
    said = []
    result = compare(str(easy_data), say=said.append, **{**kw, "out": tmp_path / "e"})
    info = read_compare(tmp_path / "e")
    settled = info["rounds"][2]["settled"]
    assert len(info["rounds"]) == 3 and info["rounds"][2]["dropped"] == []
    assert [t["method"] for t in settled] == ["classical"] and settled[0]["diff"] == pytest.approx(0.002)
    assert len(list((tmp_path / "e").rglob("metrics.json"))) == 6
    assert any("the race stops: no method left can beat none by 0.01" in line for line in said), said
    v = result["verdict"]
    assert v["seeds"] == 3 and v["methods"] == ["none", "classical"] and "The race stopped after round 3" in v["text"]
    assert any("racing skipped 4 of its runs" in line for line in said)


def test_the_cli_default_delta_is_the_library_default():
    """`medaug compare` and `medaug.compare.compare` race with the same indifference zone unless told otherwise."""
    import inspect

    from medaug import cli
    from medaug.verdict import DELTA

    assert inspect.signature(cli.compare).parameters["delta"].default.default == DELTA
    assert inspect.signature(compare).parameters["delta"].default == DELTA
