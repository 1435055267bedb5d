"""Classes as the user means them: the --classes mapping (parse, resolve, relabel after the cache), per-class
metrics and the confusion matrix in metrics.json and the report, ordinal metrics, and the run identity."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from medaug.config import TrainConfig, options_from, parse_classes
from medaug.data.classes import class_map
from medaug.errors import MedaugError
from medaug.metrics import class_report, classification_metrics

KNEE = ["KL0", "KL1", "KL2", "KL3", "KL4"]
BINARY = "no-oa=KL0,KL1;oa=KL2,KL3,KL4"


@pytest.fixture(scope="module")
def knee(tmp_path_factory):
    """The knee set's layout in miniature: train/val/test/KL0..KL4, 16 x 16 PNGs whose centre brightens with the grade."""
    from PIL import Image

    root = tmp_path_factory.mktemp("knee") / "knee-oa-kl"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for grade, name in enumerate(KNEE):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 50, (16, 16)).astype(np.uint8)
                img[4:12, 4:12] += np.uint8(40 * grade)
                Image.fromarray(img).save(folder / f"{i}{split[0]}{grade}.png")
    return root


# --- the mapping's syntax and its meeting with the data: one line each --------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    (" ; ", "empty"),
    ("a=KL0;b=KL0,KL1", "source class 'KL0' is mapped twice (to 'a' and 'b')"),
    ("a=KL0;a=KL1", "'a' is named twice"),
    ("a:KL0;b=KL1", "group 'a:KL0' has no '='"),
    ("=KL0;b=KL1", "no new class name"),
    ("a=KL0,,KL1;b=KL2", "an empty source class"),
    ("a=;b=KL2", "an empty source class"),
    ("a=KL0,KL1,KL2,KL3,KL4", "1 new class(es); a classifier needs at least 2"),
    ("drop=KL0;a=KL1;b=KL2;drop=KL3", "'drop' is named twice"),
])
def test_malformed_mappings_are_one_line(text, needle):
    with pytest.raises(MedaugError) as exc:
        parse_classes(text)
    assert needle in str(exc.value) and "\n" not in str(exc.value) and "--classes" in str(exc.value)


@pytest.mark.parametrize("text, needle", [
    ("no-oa=KL0,KL1;oa=KL2,KL3,KL9", "has no class 'KL9'; its classes: KL0, KL1, KL2, KL3, KL4"),
    ("no-oa=KL0;oa=KL2,KL3,KL4", "class(es) 'KL1' of knee are not mapped; map every class (KL0, KL1, KL2, KL3, KL4)"),
    ("no-oa=KL0;oa=KL2,KL3", "leave it out with drop=KL1,KL4"),
])
def test_unknown_or_unmapped_classes_name_them_and_the_data_classes(text, needle):
    with pytest.raises(MedaugError) as exc:
        class_map(text, KNEE, "knee")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_merge_rename_reorder_and_drop():
    assert class_map(BINARY, KNEE)[:2][0] == ["no-oa", "oa"]
    assert class_map(BINARY, KNEE)[1].tolist() == [0, 0, 1, 1, 1]
    assert class_map("normal=0;pneumonia=1", ["0", "1"])[0] == ["normal", "pneumonia"]  # renaming: one source each
    names, lut, _ = class_map("pneumonia=1;normal=0", ["0", "1"])  # the order written is the class order
    assert names == ["pneumonia", "normal"] and lut.tolist() == [1, 0]
    names, lut, mapping = class_map("none=KL0;severe=KL3,KL4;drop=KL1,KL2", KNEE)
    assert lut.tolist() == [0, -1, -1, 1, 1] and mapping == {"none": ["KL0"], "severe": ["KL3", "KL4"]}


def test_the_config_checks_and_normalises_the_mapping():
    assert TrainConfig(classes=" b = 1 ; a=0 ;").classes == "b=1;a=0"
    assert TrainConfig(classes="drop=KL1;x=KL0;y=KL2").classes == "x=KL0;y=KL2;drop=KL1"
    with pytest.raises(MedaugError, match=r"^plan.toml \[train\]: --classes 'oa=KL2': 1 new class"):
        options_from(TrainConfig, {"classes": "oa=KL2"}, "plan.toml [train]")
    with pytest.raises(MedaugError, match="monitor qwk needs ordinal"):
        TrainConfig(monitor="qwk")


# --- the data: relabelled after the cache -------------------------------------------------------------------------

def test_labels_are_remapped_after_one_shared_cache(knee, tmp_path):
    from medaug.data.cache import load_dataset

    five = load_dataset(knee, size=16, progress=False)
    two = load_dataset(knee, size=16, progress=False, classes=BINARY)
    assert five.classes == KNEE and two.classes == ["no-oa", "oa"]
    assert two.cache == five.cache and two.fingerprint == five.fingerprint  # one decoded cache for both tasks
    for split in ("train", "valid", "test"):
        a, b = getattr(five, split), getattr(two, split)
        assert list(a.paths) == list(b.paths)  # the same images and split
        grade = np.array([int(p.split("/KL")[1][0]) for p in b.paths])
        assert (a.labels == grade).all() and (b.labels == (grade >= 2)).all()
    assert two.info["class_map"] == {"no-oa": ["KL0", "KL1"], "oa": ["KL2", "KL3", "KL4"]}
    dropped = load_dataset(knee, size=16, progress=False, classes="none=KL0;oa=KL2,KL3,KL4;drop=KL1")
    assert dropped.info["dropped_images"] == 6 + 3 + 3 and not any("/KL1/" in p for p in dropped.test.paths)
    shot = load_dataset(knee, size=16, progress=False, classes=BINARY, n_shot=5)  # k images per new class
    assert np.bincount(shot.train.labels).tolist() == [5, 5]


def test_data_check_counts_per_new_class(knee):
    proc = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(knee), "--classes", BINARY],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "classes: no-oa (KL0+KL1), oa (KL2+KL3+KL4)" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("│ train"))
    assert [int(v) for v in row.replace("│", " ").split()[1:3]] == [12, 18]
    bad = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(knee), "--classes", "a=KL0;b=KL1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "'KL2', 'KL3', 'KL4'" in " ".join(bad.stderr.split())


# --- metrics -----------------------------------------------------------------------------------------------------

def test_per_class_metrics_and_confusion_equal_scikit_learn():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])
    probs = np.eye(3)[pred] * 0.7 + 0.1
    r = class_report(y, probs, ["a", "b", "c"])
    p, rec, f, s = skm.precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    cm = skm.confusion_matrix(y, pred, labels=[0, 1, 2])
    assert r["confusion"] == {"classes": ["a", "b", "c"], "counts": cm.tolist()}
    for i, name in enumerate("abc"):
        tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        fp = cm[:, i].sum() - cm[i, i]
        assert r["per_class"][name] == pytest.approx({"precision": p[i], "recall": rec[i], "specificity": tn / (tn + fp),
                                                      "f1": f[i], "support": s[i]})
    assert r["per_class"]["a"]["specificity"] == pytest.approx(6 / 7)  # one of the 7 non-a images predicted a
    m = classification_metrics(y, probs, ordinal=True)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred)) == pytest.approx(0.4)
    assert m["qwk"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))
    assert "mae" not in classification_metrics(y, probs)  # only runs that declare ordered classes


# --- a run and its report ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def binary_runs(knee, tmp_path_factory):
    """A two-method plan on the knee fixture merged to 2 classes, ordinal, 2 seeds, from a TOML file."""
    from medaug.experiments import load_plan, run_plan

    root = tmp_path_factory.mktemp("plan")
    plan = root / "plan.toml"
    plan.write_text(f"""[experiment]
name = "binary"
out = "{root / 'runs'}"
data = ["{knee}"]
methods = ["none", "cutout"]
seeds = [0, 1]

[train]
size = 16
epochs = 2
batch_size = 8
progress = false
classes = "{BINARY}"
ordinal = true
""")
    run_plan(load_plan(plan))
    return root / "runs" / "binary"


def test_a_merged_run_trains_and_reports_two_classes(binary_runs):
    run = binary_runs / "knee-oa-kl" / "none" / "shot-all" / "seed-0"
    m = json.loads((run / "metrics.json").read_text())
    assert m["classes"] == ["no-oa", "oa"] and m["class_map"] == {"no-oa": ["KL0", "KL1"], "oa": ["KL2", "KL3", "KL4"]}
    for split, n in (("valid", m["n_valid"]), ("test", m["n_test"])):
        per_class, cm = m[split]["per_class"], m[split]["confusion"]
        assert list(per_class) == ["no-oa", "oa"] and cm["classes"] == ["no-oa", "oa"]
        assert np.array(cm["counts"]).sum() == n and [c["support"] for c in per_class.values()] == np.array(cm["counts"]).sum(1).tolist()
        assert "mae" in m[split] and "qwk" in m[split]
    assert m["test"]["per_class"]["oa"]["support"] == 9  # KL2 + KL3 + KL4, 3 test images each
    pred = np.load(run / "predictions.npz")
    assert pred["probs"].shape[1] == 2 and set(pred["labels"]) == {0, 1}
    assert 'classes = "no-oa=KL0,KL1;oa=KL2,KL3,KL4"' in (run / "config.toml").read_text()


def test_the_report_shows_per_class_tables_and_the_confusion_matrix(binary_runs):
    from medaug.report import write_report

    out = write_report(binary_runs, html=True)
    md = (out / "report.md").read_text()
    section = md[md.index("## Per class (test split)"):]
    assert "| class | n img | precision | recall | specificity | F1 | -> no-oa | -> oa |" in section
    counts = np.zeros((2, 2), int)
    for seed in (0, 1):
        m = json.loads((binary_runs / "knee-oa-kl" / "cutout" / "shot-all" / f"seed-{seed}" / "metrics.json").read_text())
        counts += np.array(m["test"]["confusion"]["counts"])
    block = section[section.index("**cutout** (n=2)"):]
    rows = [line for line in block.splitlines() if line.startswith("| no-oa") or line.startswith("| oa")][:2]
    assert [[int(v) for v in row.strip("| ").split(" | ")[-2:]] for row in rows] == counts.tolist()  # summed over seeds
    assert "### mae (lower is better)" in md and "### qwk" in md
    html = (out / "report.html").read_text()
    assert 'id="classes"' in html and html.count('<table class="per-class" data-method=') == 2


def test_older_runs_get_per_class_tables_from_their_predictions(binary_runs, tmp_path):
    import shutil

    from medaug.results import class_tables, collect

    copy = tmp_path / "old"
    shutil.copytree(binary_runs / "knee-oa-kl" / "none", copy / "knee-oa-kl" / "none")
    f1, counts = [], 0
    for path in sorted(copy.rglob("metrics.json")):  # as written before metrics.json held per-class results
        m = json.loads(path.read_text())
        f1.append([c["f1"] for c in m["test"].pop("per_class").values()])
        counts += np.array(m["test"].pop("confusion")["counts"])
        path.write_text(json.dumps(m))
    (block,) = class_tables(collect(copy))
    (method,) = block["methods"]
    assert method["n"] == 2 and [r["class"] for r in method["rows"]] == ["no-oa", "oa"]
    assert [r["f1"] for r in method["rows"]] == pytest.approx(np.mean(f1, axis=0).tolist())
    assert [r["predicted"] for r in method["rows"]] == counts.tolist()


# --- identity ----------------------------------------------------------------------------------------------------

def test_the_mapping_is_part_of_the_run_identity_and_of_the_shared_data(knee, tmp_path):
    from medaug.experiments import DATA_FIELDS, ExperimentConfig, make_plan, run_config
    from medaug.train import check_identity, run_identity

    plain = TrainConfig(data=str(knee))
    merged = TrainConfig(data=str(knee), classes=BINARY)
    assert run_identity(plain, "fp") != run_identity(merged, "fp")
    with pytest.raises(MedaugError, match="classes: '' there, 'no-oa=KL0,KL1;oa=KL2,KL3,KL4' now"):
        check_identity(tmp_path, run_identity(plain, "fp"), run_identity(merged, "fp"), "a finished run")
    older = plain.to_dict()
    del older["classes"], older["ordinal"]  # a config.toml written before the fields existed: the same run
    assert run_identity(older, "fp") == run_identity(plain, "fp")
    assert "classes" in DATA_FIELDS
    plan = make_plan(ExperimentConfig(data=[str(knee)], methods=["none", "cutout"]), plain,
                     overrides={"cutout": {"classes": BINARY}})
    a, b = run_config(plan, str(knee), "none", 0, 0), run_config(plan, str(knee), "cutout", 0, 0)
    assert a.classes == "" and b.classes == BINARY
    assert tuple(getattr(a, k) for k in DATA_FIELDS) != tuple(getattr(b, k) for k in DATA_FIELDS)


def test_a_checkpoint_from_before_the_fields_resumes(knee, tmp_path, monkeypatch):
    """An interrupted run whose checkpoint.pt was written before `classes` and `ordinal` existed resumes (they count
    as their defaults), as a finished run's config.toml without them does."""
    import torch

    import medaug.train as train_mod
    from medaug.io_utils import save_torch

    cfg = TrainConfig(data=str(knee), size=16, epochs=2, batch_size=8, progress=False)
    real_write = train_mod.write_text

    def crash_after_one_epoch(path, text):
        real_write(path, text)
        if path.name == "log.jsonl":
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "write_text", crash_after_one_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_mod.fit(cfg, tmp_path / "run")
    monkeypatch.setattr(train_mod, "write_text", real_write)
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["identity"]["classes"], ckpt["identity"]["ordinal"]
    save_torch(path, ckpt)  # as an older medaug wrote it (its fingerprint recorded)
    m = train_mod.fit(cfg, tmp_path / "run")
    assert m["classes"] == KNEE and m["epochs_run"] == 2


def test_reproduce_of_a_run_from_before_per_class_results_compares_what_it_recorded(binary_runs, tmp_path):
    import shutil

    from medaug.reproduce import reproduce

    run = tmp_path / "seed-0"
    shutil.copytree(binary_runs / "knee-oa-kl" / "none" / "shot-all" / "seed-0", run)
    m = json.loads((run / "metrics.json").read_text())
    for split in ("valid", "test"):
        del m[split]["per_class"], m[split]["confusion"]
    (run / "metrics.json").write_text(json.dumps(m))
    r = reproduce(run, work_dir=tmp_path)
    assert r.ok, r.diffs
    assert any("did not record (written by a later medaug" in n for n in r.notes)
    m["test"]["accuracy"] += 0.25  # what it did record is still compared
    (run / "metrics.json").write_text(json.dumps(m))
    assert [d[0] for d in reproduce(run, work_dir=tmp_path).diffs] == ["test.accuracy"]
