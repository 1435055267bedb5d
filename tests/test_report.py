"""The study report: every run and method in the HTML, statistics against SciPy, bold follows the
test (not the mean), and the CSV / LaTeX main tables parse."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from medaug.errors import MedaugError
from medaug.report import (collect, format_main_table, latex_escape, mark_significance, summarise, write_report)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """none and cutout, seeds 0-2, one epoch: a small finished study (about 10 s on 2 cores)."""
    from medaug.config import TrainConfig
    from medaug.data.synth import generate
    from medaug.experiments import ExperimentConfig, make_plan, run_plan

    base = tmp_path_factory.mktemp("study")
    data = generate(base / "synth", n_train=96, n_test=48, size=32, seed=0, progress=False)
    exp = ExperimentConfig(name="s", out=str(base / "runs"), data=[str(data)], methods=["none", "cutout"], seeds=[0, 1, 2])
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False, cache=str(base / "cache")))
    run_plan(plan)
    return plan.root


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_contains_every_run_and_method(study, tmp_path):
    out = write_report(study, tmp_path / "rep", html=True, fmt="csv", bootstrap=200)
    page = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(page)
    df = collect(study)
    assert len(df) == 6
    runs = {a["data-run"] for t, a in parser.tags if "data-run" in a}
    expected = {f"{r.dataset}/{r.method}/shot-{r.shot}/seed-{r.seed}" for r in df.itertuples()}
    assert runs == expected
    for run in df["run_dir"]:  # each run's exact config and provenance link
        assert f'href="#run-' in page and os.path.basename(run) in page
    tables = [a for t, a in parser.tags if t == "table" and "main" in a.get("class", "")]
    assert {"accuracy", "auroc", "mask_iou"} <= {a["data-metric"] for a in tables}
    methods = {a["data-method"] for t, a in parser.tags if "data-method" in a}
    assert methods == {"none", "cutout"}
    # self-contained: every image embedded, no external src/href, a CSP that forbids loading anything else
    srcs = [a.get("src", "") for t, a in parser.tags if t == "img"]
    assert len(srcs) >= 6 + 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "@media print" in page
    # per run: figures and study-level metrics; provenance; bootstrap CIs in cells
    assert page.count("learning curves, confusion matrix, ROC, reliability") == 6
    assert "<td class=\"key\">study</td>" in page
    assert "data fingerprint" in page and "wall s" in page and "[train]" in page
    assert re.search(r"\(n=3\) \[\d\.\d{3}, \d\.\d{3}\]", page)
    assert "with 3 paired seeds the smallest possible two-sided Wilcoxon p" in page  # the reader is told why nothing is bold
    main = pd.read_csv(out / "main_table.csv")
    assert {"dataset", "shot", "metric", "none", "cutout", "best"} <= set(main.columns)


def test_statistics_agree_with_scipy():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.7, 8)
    a = base + rng.normal(0.03, 0.01, 8)
    b = base + rng.normal(0.0, 0.05, 8)
    df = pd.DataFrame({"dataset": "d", "shot": "all", "seed": list(range(8)) * 3,
                       "method": ["none"] * 8 + ["a"] * 8 + ["b"] * 8, "auroc": np.concatenate([base, a, b])})
    s = summarise(df, ["auroc"], bootstrap=500).set_index("method")
    for name, x in (("a", a), ("b", b)):
        r = s.loc[name]
        assert r["t_p"] == pytest.approx(sps.ttest_rel(x, base).pvalue, rel=1e-12)
        assert r["wilcoxon_p"] == pytest.approx(sps.wilcoxon(x, base).pvalue, rel=1e-12)
        assert r["diff"] == pytest.approx(np.mean(x - base)) and r["n_paired"] == 8
        assert r["mean"] == pytest.approx(x.mean()) and r["std"] == pytest.approx(x.std(ddof=1))
        lo, hi = r["ci_lo"], r["ci_hi"]
        assert lo < x.mean() < hi
    # Holm over the table's two comparisons, by hand
    p = sorted([(s.loc["a", "t_p"], "a"), (s.loc["b", "t_p"], "b")])
    first = min(1, 2 * p[0][0])
    assert s.loc[p[0][1], "t_p_holm"] == pytest.approx(first)
    assert s.loc[p[1][1], "t_p_holm"] == pytest.approx(max(first, min(1, p[1][0])))
    pw = sorted([s.loc["a", "wilcoxon_p"], s.loc["b", "wilcoxon_p"]])
    assert sorted(s.loc[["a", "b"], "wilcoxon_p_holm"]) == pytest.approx([min(1, 2 * pw[0]), max(min(1, 2 * pw[0]), pw[1])])


def _bold_frame() -> pd.DataFrame:
    """'big' has the best mean but flips sign across seeds; 'small' is lower but better than none on every seed."""
    seeds = list(range(8))
    none = np.array([0.60, 0.62, 0.61, 0.63, 0.60, 0.64, 0.62, 0.61])
    big = none + np.array([0.30, -0.20, 0.35, -0.15, 0.30, -0.20, 0.40, -0.10])  # mean diff +0.0875, noisy
    small = none + np.array([0.020, 0.022, 0.019, 0.021, 0.020, 0.023, 0.018, 0.021])  # +0.02, consistent
    rows = []
    for name, values in (("none", none), ("big_aug", big), ("small_aug", small)):
        rows += [dict(dataset="mura_elbow", shot="all", method=name, seed=s, auroc=v, ece=0.1) for s, v in zip(seeds, values)]
    return pd.DataFrame(rows)


def test_bold_follows_the_test_not_the_mean():
    df = _bold_frame()
    s = mark_significance(summarise(df, ["auroc"]), level=0.05)
    r = s.set_index("method")
    assert r.loc["big_aug", "mean"] > r.loc["small_aug", "mean"] > r.loc["none", "mean"]
    assert not r.loc["big_aug", "better"] and not r.loc["big_aug", "bold"]
    assert r.loc["small_aug", "better"] and r.loc["small_aug", "bold"]
    assert r.loc["small_aug", "t_p_holm"] < 0.05 and r.loc["small_aug", "wilcoxon_p_holm"] < 0.05
    md = format_main_table(s, ["auroc"], "md")
    assert "**" in md and re.search(r"\*\*0\.6\d\d ± 0\.0\d\d \(n=8\)\*\*", md)
    big_cell = [c for c in md.splitlines()[-2].split("|") if "0.7" in c][0]
    assert "**" not in big_cell
    tex = format_main_table(s, ["auroc"], "latex")
    assert tex.count("\\mathbf") == 1
    # a stricter level, or a worse baseline direction, removes the bold
    assert not mark_significance(summarise(df, ["auroc"]), level=0.001)["bold"].any()
    # lower-is-better metrics flip the direction: 'small' lowers ECE on every seed -> bold
    df2 = df.copy()
    df2["ece"] = np.where(df2["method"] == "small_aug", 0.1 - 0.01 - 0.001 * df2["seed"], 0.1 + 0.0001 * df2["seed"])
    s2 = mark_significance(summarise(df2, ["ece"]), level=0.05).set_index("method")
    assert s2.loc["small_aug", "bold"] and not s2.loc["big_aug", "bold"]


def test_wilcoxon_needs_enough_seeds_for_bold():
    df = _bold_frame()
    df = df[df["seed"] < 3]  # 3 seeds: the smallest two-sided Wilcoxon p is 0.25
    s = mark_significance(summarise(df, ["auroc"]), level=0.05)
    assert not s["bold"].any()
    t_only = mark_significance(summarise(df, ["auroc"]), level=0.05, test="t").set_index("method")
    assert t_only.loc["small_aug", "bold"]


def test_csv_and_latex_tables_parse():
    s = mark_significance(summarise(_bold_frame(), ["auroc", "ece"]), level=0.05)
    csv = pd.read_csv(io.StringIO(format_main_table(s, ["auroc", "ece"], "csv")))
    assert list(csv.columns) == ["dataset", "shot", "metric", "none", "big_aug", "small_aug", "best"]
    assert len(csv) == 2 and csv.loc[csv.metric == "auroc", "best"].item() == "small_aug"
    assert csv.loc[0, "none"].endswith("(n=8)") and "±" in csv.loc[0, "none"]

    tex = format_main_table(s, ["auroc", "ece"], "latex")
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, tex
    assert not stack
    assert tex.count("\\begin{tabular}") == 2
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert "±" not in body and "\\pm" in body
    assert not re.search(r"(?<!\\)_", body.replace("\\label{tab:medaug-", "")), "unescaped underscore"
    assert "mura\\_elbow" in body and "big\\_aug" in body and "small\\_aug" in body
    assert body.count("$") % 2 == 0
    for row in (line for line in body.splitlines() if line.endswith("\\\\")):
        assert row.count("&") == 4  # dataset, shot, three methods
    assert latex_escape("a_b & 50% #1 {x} ~ ^ \\ ±") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} $\pm$"


@pytest.mark.skipif(not any(os.access(os.path.join(p, "pdflatex"), os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="pdflatex not installed: the LaTeX table is checked structurally only")
def test_latex_compiles(tmp_path):
    s = mark_significance(summarise(_bold_frame(), ["auroc"]), level=0.05)
    doc = "\\documentclass{article}\\begin{document}\n" + format_main_table(s, ["auroc"], "latex") + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_bad_options_are_clear_errors(study):
    with pytest.raises(MedaugError, match="--format"):
        format_main_table(summarise(collect(study), ["auroc"]), ["auroc"], "docx")
    with pytest.raises(MedaugError, match="--level"):
        mark_significance(summarise(collect(study), ["auroc"]), level=5)
    with pytest.raises(MedaugError, match="--metric nope"):
        write_report(study, metrics=["nope"])


def test_cli_report_formats(study, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "medaug", "report", str(study), "--out", str(tmp_path / "r"), "--format", "latex",
           "--html", "--level", "0.1", "--bootstrap", "100", "-m", "auroc", "-m", "accuracy"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "main_table.tex").is_file() and (tmp_path / "r" / "report.html").is_file()
    assert "html report:" in proc.stdout and "p < 0.1" in (tmp_path / "r" / "report.md").read_text()
    bad = subprocess.run([*cmd[:5], "--format", "docx", "--out", str(tmp_path / "x")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--format 'docx'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()  # options are checked before anything is written


def test_report_pairs_against_another_baseline(study, tmp_path):
    out = write_report(study, tmp_path / "vs-cutout", metrics=["auroc"], baseline="cutout", html=True)
    md = (out / "report.md").read_text()
    assert "## auroc: paired tests against cutout" in md and "beat `cutout`" in md
    summary = pd.read_csv(out / "summary.csv")
    tested = summary[summary["diff"].notna()]
    assert set(tested["method"]) == {"none"}  # none is now the method paired against cutout
    df = collect(study)
    a = df[df["method"] == "none"].set_index("seed")["auroc"]
    b = df[df["method"] == "cutout"].set_index("seed")["auroc"]
    assert tested["diff"].iloc[0] == pytest.approx((a - b).mean())
    page = (out / "report.html").read_text()
    assert "Paired tests against cutout" in page and "<th>diff vs cutout</th>" in page and "<th>beats cutout</th>" in page
    with pytest.raises(MedaugError, match="--baseline 'mixup': no runs of that method"):
        write_report(study, tmp_path / "x", baseline="mixup")
    assert not (tmp_path / "x").exists()


def test_report_without_none_runs_still_writes_untested_tables(study, tmp_path):
    only_cutout = tmp_path / "runs"
    import shutil

    for run in collect(study).query("method == 'cutout'")["run_dir"]:
        shutil.copytree(run, only_cutout / os.path.relpath(run, study))
    out = write_report(only_cutout, tmp_path / "r", metrics=["auroc"])
    assert "cutout" in (out / "report.md").read_text() and "paired tests" not in (out / "report.md").read_text()


def test_html_escapes_what_the_runs_wrote(study, tmp_path):
    """The templates autoescape: markup in a run's files (config.toml, a warning) is shown as text, never run."""
    import json
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(study, runs)
    run = collect(runs).sort_values("seed")["run_dir"].iloc[0]
    evil = "<script>alert('x')</script> & \"q\""
    cfg = Path(run) / "config.toml"
    cfg.write_text(cfg.read_text() + f"# {evil}\n")
    m = json.loads((Path(run) / "metrics.json").read_text())
    m["test"]["warnings"] = [f"warning {evil}"]
    (Path(run) / "metrics.json").write_text(json.dumps(m))
    page = (write_report(runs, tmp_path / "r", html=True) / "report.html").read_text()
    assert "<script>alert" not in page and page.count("<script>") == 1  # only the report's own print script
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34;") == 2  # config and warning


def test_templates_ship_with_the_package():
    """`pip install .` includes every template: each file in medaug/templates matches a package-data glob."""
    import fnmatch
    import tomllib

    import medaug

    root = Path(medaug.__file__).parent
    globs = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medaug"]
    files = [f.relative_to(root).as_posix() for f in (root / "templates").iterdir()]
    assert "templates/report.html.j2" in files
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (files, globs)


def test_run_notes_name_different_budgets_and_kept_starts():
    """The report's notes: a cell whose methods trained for different budgets, and two-stage runs that kept their start."""
    from medaug.results import run_notes

    rows = [dict(dataset="d", shot="all", method=m, seed=s, classifier_epochs=e, budget=b, kept_start=k)
            for m, e, b, k in (("none", 15, "paper", 0), ("apga", 30, "paper", 1)) for s in (0, 1)]
    notes = run_notes(pd.DataFrame(rows))
    assert notes[0].startswith("Budgets differ in d, shot all: classifier epochs from initialisation none 15, apga 30 (budget paper)")
    assert notes[1] == ("apga kept its starting checkpoint (the `none` baseline; no epoch of the method beat it on validation) "
                        "in 2/2 runs.")
    equal = [{**r, "classifier_epochs": 15, "budget": "equal", "kept_start": 0} for r in rows]
    assert run_notes(pd.DataFrame(equal)) == []


def test_a_start_replaced_at_a_worse_operating_point_is_named():
    """A two-stage run that beat its start on the selection metric (AUROC) but lost validation balanced
    accuracy (the knee all-images apga seed 0: 0.761 -> 0.593) gets a note; kept starts and small drops do not."""
    from medaug.results import run_notes, start_valid_drop

    start = {"kept": False, "valid": {"auroc": 0.859, "balanced_accuracy": 0.761}}
    chosen = {"auroc": 0.862, "balanced_accuracy": 0.593}
    assert start_valid_drop({"start": start, "valid": chosen}) == pytest.approx(0.168)
    assert np.isnan(start_valid_drop({"start": {**start, "kept": True}, "valid": chosen}))  # kept: valid is the start's
    assert np.isnan(start_valid_drop({"valid": chosen}))  # one-stage run
    rows = [dict(dataset="d", shot="all", method="apga", seed=s, start_valid_drop=d) for s, d in enumerate((0.168, np.nan, 0.01))]
    rows += [dict(dataset="d", shot="all", method="none", seed=s, start_valid_drop=np.nan) for s in range(3)]
    notes = run_notes(pd.DataFrame(rows))
    assert notes == ["apga: in 1/3 runs the chosen checkpoint beat its starting checkpoint on the selection metric (`monitor`) "
                     "but lost up to 0.168 validation balanced accuracy against it (more than 0.05): its operating point got "
                     "worse (`monitor = \"balanced_accuracy\"` selects on it)."]
    small = [{**r, "start_valid_drop": 0.04 if r["method"] == "apga" else np.nan} for r in rows]
    assert run_notes(pd.DataFrame(small)) == []


def test_gallery_says_no_mask_where_an_image_has_none(tmp_path):
    """A tile's caption is its IoU against the image's mask, 'empty mask' (a mask marking nothing, e.g. a
    normal image) or 'no mask' (no mask file), never 'no finding', which reads as a diagnosis."""
    from medaug.html_report import gallery

    images = np.full((3, 8, 8), 128, np.uint8)
    masks = np.ones((3, 8, 8), np.uint8)
    rois = np.zeros((3, 8, 8), np.uint8)
    rois[0, :4] = 1
    run = tmp_path / "d" / "cutout" / "shot-all" / "seed-0"
    run.mkdir(parents=True)
    np.savez(run / "masks.npz", images=images, masks=masks, rois=rois, has_roi=np.array([True, True, False]))
    df = pd.DataFrame([dict(dataset="d", shot="all", method="cutout", seed=0, run_dir=str(run), mask_iou=0.5)])
    captions = [t["caption"] for t in gallery(df)[0]["rows"][0]["tiles"]]
    assert captions == ["IoU 0.50", "empty mask", "no mask"]
    np.savez(run / "masks.npz", images=images, masks=masks, rois=rois)  # written before has_roi was recorded
    assert [t["caption"] for t in gallery(df)[0]["rows"][0]["tiles"]] == ["IoU 0.50", "no mask", "no mask"]
    np.savez(run / "masks.npz", images=images, masks=masks)  # a dataset without masks
    assert {t["caption"] for t in gallery(df)[0]["rows"][0]["tiles"]} == {"no mask"}


def _fake_runs(root: Path, values: dict[str, list[float]]) -> Path:
    """metrics.json files only: method -> test accuracy per seed (the layout `medaug run` writes)."""
    import json

    for method, accs in values.items():
        for seed, acc in enumerate(accs):
            run = root / "d" / method / "shot-all" / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"method": method, "seed": seed, "n_shot": 0,
                                                          "test": {"accuracy": acc, "auroc": acc}}))
    return root


def test_console_footer_states_the_rule_the_stars_follow(tmp_path):
    """With 3 seeds the t-test passes but the Wilcoxon test cannot: no *, and the footer says why (it once
    printed '* = better than none (paired t-test)' and starred by the t-test alone)."""
    runs = _fake_runs(tmp_path / "three", {"none": [0.70, 0.71, 0.72], "better": [0.80, 0.815, 0.82]})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "medaug", "report", str(runs)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "0.812±0.010 " in text and "0.812±0.010*" not in text
    assert ("* = beats `none`: the mean paired difference over seeds is in the metric's good direction and p < 0.05 in both "
            "the paired t-test and the Wilcoxon signed-rank test (two-sided, across seeds, Holm-adjusted over the metric's table)") in text
    assert "with 3 paired seeds the smallest possible two-sided Wilcoxon p is 2/2^3 = 0.25" in text
    assert "with 3 paired seeds" in (runs / "report" / "report.md").read_text()
    proc = subprocess.run([sys.executable, "-m", "medaug", "report", str(runs), "--out", str(tmp_path / "t"), "--test", "t"],
                          capture_output=True, text=True, env=env)
    text = " ".join(proc.stdout.split())
    assert "0.812±0.010*" in text and "p < 0.05 in the paired t-test (two-sided" in text and "Wilcoxon p is" not in text
    six = _fake_runs(tmp_path / "six", {"none": [0.70, 0.71, 0.72, 0.70, 0.71, 0.72], "better": [0.80, 0.815, 0.82, 0.81, 0.80, 0.83]})
    text = " ".join(subprocess.run([sys.executable, "-m", "medaug", "report", str(six)], capture_output=True, text=True, env=env).stdout.split())
    assert "*" in text.split("n = seeds")[0] and "Wilcoxon p is" not in text


def test_report_track_tensorboard_says_where_it_wrote(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard (requirements-lock.txt installs it)")
    runs = _fake_runs(tmp_path / "runs", {"none": [0.70, 0.71], "other": [0.72, 0.70]})
    proc = subprocess.run([sys.executable, "-m", "medaug", "report", str(runs), "--track", "tensorboard"], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr
    where = runs / "report" / "tensorboard"
    assert f"tracked: TensorBoard event files in {where} (view: tensorboard --logdir {where})" in " ".join(proc.stdout.split())
    assert any(where.glob("events.out.tfevents.*"))


def test_best_epochs_counts_every_epoch_the_classifier_trained(tmp_path):
    """A staged run (15 epochs with its method in heated/, then 10 fine-tuning) shows 25, not '10/10'; a run
    that starts from a baseline adds that run's epochs."""
    import json

    from medaug.results import epochs_trained

    none = tmp_path / "runs" / "d" / "none" / "shot-all" / "seed-0"
    (none / "heated").mkdir(parents=True)
    (none / "heated" / "metrics.json").write_text(json.dumps({"method": "none", "seed": 0, "stage": "heated", "test": {},
                                                             "best_epoch": 14, "epochs_run": 15}))
    (none / "metrics.json").write_text(json.dumps({"method": "none", "seed": 0, "test": {"accuracy": 0.7}, "best_epoch": 10,
                                                  "epochs_run": 10, "selection": "mean of the last 3 epochs' weights",
                                                  "stages": {"heated_epochs": 15, "finetune_epochs": 10}}))
    (none / "config.toml").write_text('[train]\nmethod = "none"\nbaseline = ""\n')
    apga = tmp_path / "runs" / "d" / "apga" / "shot-all" / "seed-0"
    apga.mkdir(parents=True)
    (apga / "metrics.json").write_text(json.dumps({"method": "apga", "seed": 0, "test": {"accuracy": 0.7}, "best_epoch": 12,
                                                  "epochs_run": 15}))
    (apga / "config.toml").write_text(f'[train]\nmethod = "apga"\nbaseline = "{none}"\n')
    assert epochs_trained(none)["text"] == "10/10 (25 in all: 15 heated + 10 fine-tuning)"
    assert epochs_trained(apga)["total"] == 40
    assert epochs_trained(apga)["text"] == "12/15 (40 in all: 25 baseline (none) + 15 own)"  # budget paper
    equal = {"method": "apga", "seed": 0, "test": {}, "best_epoch": 3, "epochs_run": 7,
             "stages": {"baseline_epochs": 8, "method_epochs": 7}}
    assert epochs_trained(apga, equal)["text"] == "3/7 (15 in all: 8 none stage + 7 own)"  # budget equal
    page = (write_report(tmp_path / "runs", tmp_path / "rep", html=True) / "report.html").read_text()
    assert "10/10 (25 in all: 15 heated + 10 fine-tuning)" in page and "best/epochs (all epochs trained)" in page
