"""The ``medaug`` command line: one Typer app; commands only parse options and call the library.

Every user-fixable problem is a :class:`medaug.errors.MedaugError`, printed as one line on
stderr with exit code 2 (no traceback).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import time
import typing
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .data.commands import data_app
from .config import parse_options
from .errors import MedaugError, machine_fault
from .generative.commands import gen_app, study_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learned data augmentation for medical image classification (APGA, PGNM, generative) and fair baselines.")
app.add_typer(data_app, name="data")
app.add_typer(gen_app, name="gen")
app.add_typer(study_app, name="study")
out = Console(markup=False, emoji=False) if sys.stdout.isatty() else Console(width=140, markup=False, emoji=False)  # user text is never markup  # pipes and logs get full tables


#: TrainConfig fields without a flag of their own (method options are -o KEY=VALUE)
NO_FLAG = ("method_options",)
CONFIG_PANEL = "Run configuration (TrainConfig; a flag overrides the \\[train] table of --config)"


def config_flags(cls: type, skip: tuple[str, ...] = NO_FLAG) -> list[inspect.Parameter]:
    """One Typer option per field of dataclass ``cls``: ``--n-shot`` for ``n_shot``, ``--x/--no-x`` for a
    bool, the values of a ``Literal`` as the metavar, help from the field's ``#:`` comment and its default.
    Every option defaults to None (not given), so a --config file's value stands unless the flag is given."""
    from .config import choices, field_default, field_help, range_text

    hints, docs = typing.get_type_hints(cls), field_help(cls)
    ranges = typing.get_type_hints(cls, include_extras=True)
    params = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, default, flag = hints[f.name], field_default(f), "--" + f.name.replace("_", "-")
        values, doc = choices(tp), docs.get(f.name, "")
        text = (doc[:1].upper() + doc[1:]).rstrip(".") + "."
        if values:
            text += f" One of {' | '.join(map(str, values))}."
        if range_text(ranges[f.name]):
            text += f" Valid: {range_text(ranges[f.name])}."
        if isinstance(default, list):
            text += f" Repeat the flag for each value, e.g. {flag} 50 {flag} 75."
        shown = ("on" if default else "off") if isinstance(default, bool) else default
        if shown not in ("", []):
            text += f" \\[default: {shown}]"
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}" if tp is bool else flag, help=text, rich_help_panel=CONFIG_PANEL)
        kind = str if values else tp  # choices are checked when the config is built: one line naming the field
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def train(out_dir: Path, option: list[str], config: Optional[Path], overwrite: bool, **flags) -> None:
    """Train and evaluate one run; writes metrics.json, checkpoints and figures to --out."""
    from .config import TrainConfig, from_dict, load_toml
    from .train import fit

    values = from_dict(TrainConfig, load_toml(config).get("train", {}), str(config)).to_dict() if config else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    if option:
        values["method_options"] = {**values.get("method_options", {}), **parse_options(option)}
    if not values.get("data"):
        raise MedaugError("train: give --data DIR (or a --config whose [train] table sets data)")
    result = fit(from_dict(TrainConfig, values, "train options"), out_dir, overwrite=overwrite)
    show_run(result)
    out.print(f"results in {out_dir}")


def _train_signature() -> inspect.Signature:
    from .config import TrainConfig

    own = {
        "out_dir": (Path, typer.Option(Path("runs/train"), "--out", help="Run folder (resumed if it holds a checkpoint).")),
        "option": (list[str], typer.Option([], "--option", "-o", help="Method option KEY=VALUE (repeatable; `medaug methods` lists them).")),
        "config": (Optional[Path], typer.Option(None, help="TOML with a \\[train] table; flags given here override it.")),
        "overwrite": (bool, typer.Option(False, "--overwrite", help="Start fresh: remove what medaug wrote in --out before (never other files).")),
    }
    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t) for k, (t, d) in own.items()]
    return inspect.Signature(params + config_flags(TrainConfig))


train.__signature__ = _train_signature()
app.command()(train)


def show_run(result: dict) -> None:
    table = Table(title=f"{result['method']} seed {result['seed']}: test split (n={result['test'].get('n')})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in {**result["test"], **result.get("mask", {})}.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    out.print(table)
    per_class, cm = result["test"].get("per_class"), result["test"].get("confusion")
    if per_class and cm and len(per_class) <= 12:  # many classes: metrics.json and the report hold them
        table = Table(title="per class (test): one row per true class; -> X: images of it predicted as X (the confusion matrix)")
        for col in ("class", "n", "precision", "recall", "specificity", "F1", *(f"-> {c}" for c in cm["classes"])):
            table.add_column(col, justify="left" if col == "class" else "right")
        for (name, m), row in zip(per_class.items(), cm["counts"]):
            table.add_row(name, str(m["support"]), *(f"{m[k]:.3f}" for k in ("precision", "recall", "specificity", "f1")),
                          *map(str, row))
        out.print(table)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment TOML (see docs/experiments.md)."),
    executor: Optional[str] = typer.Option(None, help="local | ray (overrides \\[experiment] executor; ray: see README 'GPUs and clusters')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start fresh: remove what medaug wrote in the experiment folder before."),
):
    """Run methods x seeds x shots x datasets from a TOML config; finished runs are skipped."""
    import dataclasses

    from .experiments import EXECUTORS, load_plan, run_plan
    from .report import write_report

    plan = load_plan(config)
    if executor:
        EXECUTORS.get(executor)
        plan = dataclasses.replace(plan, experiment=dataclasses.replace(plan.experiment, executor=executor))
    run_plan(plan, overwrite=overwrite)
    folder = write_report(plan.root)
    print_summary(plan.root)
    out.print(f"report: {folder / 'report.md'}")


@app.command()
def report(
    runs_dir: Path = typer.Argument(..., help="Folder holding run folders (e.g. runs/demo)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Report folder (default RUNS_DIR/report)."),
    html: bool = typer.Option(False, "--html", help="Also write report.html: one self-contained file (figures embedded)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Also write the main table alone: md | csv | latex (main_table.md/.csv/.tex)."),
    level: float = typer.Option(0.05, help="Significance level of the paired tests that decide bold cells."),
    test: str = typer.Option("both", help="Bold needs: both (paired t-test and Wilcoxon) | t | wilcoxon; Holm-adjusted."),
    bootstrap: int = typer.Option(0, help="Bootstrap resamples for 95% CIs of each cell's mean (0 = no CIs; e.g. 2000)."),
    metric: list[str] = typer.Option([], "--metric", "-m", help="Metric(s) of the main table (repeatable) \\[default: all main metrics]."),
    baseline: str = typer.Option("none", help="Method the others are paired against (bold, *, p-values), e.g. the best classical augmentation."),
    track: Optional[str] = typer.Option(None, help="Also log the report as an artifact: mlflow | tensorboard."),
):
    """Rebuild tables, paired tests and figures from the run folders' files alone."""
    from .report import write_report

    folder = write_report(runs_dir, out_dir, level, fmt=fmt, bootstrap=bootstrap, test=test, html=html, metrics=metric or None, baseline=baseline)
    print_verdict(runs_dir)
    print_summary(runs_dir, level, test, baseline)
    if fmt:
        out.print(f"main table: {folder / {'md': 'main_table.md', 'csv': 'main_table.csv', 'latex': 'main_table.tex'}[fmt]}")
    if html:
        out.print(f"html report: {folder / 'report.html'}")
    if track:
        from .tracking import create_tracker

        tracker = create_tracker(track, folder, run_name=f"report {Path(runs_dir).name}")
        for name in ("report.html", "report.md", "summary.csv"):
            if (folder / name).is_file():
                tracker.log_artifact(folder / name)
        tracker.close()
        out.print(f"tracked: {tracker.where()}")
    out.print(f"report: {folder / 'report.md'}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run folder (holding config.toml, best.pt and metrics.json)."),
    images: list[Path] = typer.Argument(..., help="Image files or folders of images (searched recursively; mask files left out)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the CSV here (a new file) instead of to stdout."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
):
    """Class probabilities of new images as CSV (path, predicted, p_<class> ...), with the run's own preprocessing
    (gray, resized to its size) and its method's test-time rule."""
    from .inference import load_run, predict_table
    from .io_utils import write_text

    if out_file is not None and out_file.exists():
        raise MedaugError(f"--out {out_file}: exists; choose a new file (medaug does not overwrite files it did not write)")
    loaded = load_run(run_dir, device)
    table = predict_table(loaded, images)
    text = table.to_csv(index=False, float_format="%.6f")
    if out_file is None:
        sys.stdout.write(text)
    else:
        write_text(out_file, text)
    rule = loaded.rule or "none (the plain classifier)"
    err = Console(stderr=True, markup=False, emoji=False, highlight=False)
    err.print(f"predicted {len(table)} image(s) with {run_dir} ({loaded.cfg.model}, {loaded.cfg.size} px, method "
              f"{loaded.metrics.get('method')}; test-time rule: {rule})" + (f"; wrote {out_file}" if out_file else ""), soft_wrap=True)
    if loaded.cfg.crop != "none":
        err.print(f"note: the run trained on boxed regions (crop = {loaded.cfg.crop}); give it images cropped the same way", soft_wrap=True)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished run folder (holding config.toml, best.pt, metrics.json, predictions.npz)."),
    fmt: str = typer.Option("torchscript", "--format", help="torchscript | onnx (onnx needs: pip install 'medaug[onnx]')."),
    out_file: Path = typer.Option(..., "--out", help="The file to write, e.g. model.pt or model.onnx (its model card goes beside it)."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder, if it moved since the run (the check runs on its test split)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a file medaug exported there before (never another file)."),
):
    """Export the run's model (images in [0, 1] -> class probabilities) and check it reproduces the run's test predictions."""
    from .inference import ATOL, export_run

    r = export_run(run_dir, fmt, out_file, data=str(data) if data else None, overwrite=overwrite)
    what = ("with the method's test-time rule" if r.rule_exported else "the plain classifier"
            + (" (the run's test-time rule is not in it)" if r.notes else " (the run's method has no test-time rule)"))
    out.print(f"exported {r.path} ({fmt}): {what}")
    for note in r.notes:
        out.print(f"note: {note}")
    out.print(f"checked: on {r.n} test images it reproduces {r.compared} to {r.max_diff:.2g} (tolerance {ATOL:g})")
    out.print(f"model card: {r.card}")


@app.command()
def reproduce(
    run_dir: Path = typer.Argument(..., help="A finished run folder (holding config.toml and metrics.json)."),
    device: Optional[str] = typer.Option(None, help="Device to re-run on \\[default: the device type the run used]."),
    atol: Optional[float] = typer.Option(None, help="Absolute tolerance per metric \\[default: 0 on CPU, 0.01 on CUDA]."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder, if it moved since the run."),
    keep: bool = typer.Option(False, help="Keep the re-run's folder (printed) instead of deleting it."),
):
    """Train a finished run again from its config.toml and check that every metric matches; exit 2 if not."""
    from .reproduce import reproduce as run_again

    r = run_again(run_dir, device=device, atol=atol, data=str(data) if data else None, keep=keep)
    for note in r.notes:
        out.print(f"note: {note}")
    tol = "exactly" if r.atol == 0 else f"within {r.atol:g}"
    if r.ok:
        out.print(f"reproduced: {r.compared} values of metrics.json and log.jsonl match {tol} ({r.device})")
        return
    table = Table(title=f"NOT reproduced: {len(r.diffs)} of {r.compared} values differ (tolerance: {tol}, {r.device})")
    for col in ("metric", "saved", "reproduced", "|diff|"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, a, b in r.diffs:
        d = abs(a - b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else float("nan")
        table.add_row(key, str(a), str(b), f"{d:.3g}")
    Console(stderr=True, width=140, markup=False).print(table)
    raise typer.Exit(code=2)


SHORT = {"accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "F1", "auroc": "AUROC", "kappa": "kappa", "qwk": "QWK", "mae": "MAE",
         "mask_iou": "mask IoU", "pointing": "pointing", "saliency_auroc": "sal AUROC"}


def print_summary(runs_dir: Path, level: float = 0.05, test: str = "both", baseline: str = "none") -> None:
    """Rich table per (dataset, shot): one row per method, mean ± std over seeds per metric, * where the
    method beats ``baseline`` by the report's rule (:func:`medaug.results.mark_significance`), stated below."""
    from .report import MAIN_METRICS, MASK_METRICS, collect, mark_significance, method_order, power_note, rule_text, summarise
    from .results import ORDINAL_METRICS, run_notes

    from .report import compare_view

    df = compare_view(Path(runs_dir), collect(runs_dir))[0]  # a compare folder: the methods racing kept
    metrics = [m for m in MAIN_METRICS + ORDINAL_METRICS + MASK_METRICS if m in df]
    summary = mark_significance(summarise(df, metrics, baseline=baseline), level, test)
    for (dataset, shot), group in summary.groupby(["dataset", "shot"]):
        table = Table(title=f"{dataset}, shot {shot}: test metrics, mean ± std over seeds", title_justify="left")
        table.add_column("method", no_wrap=True)
        table.add_column("n", justify="right")
        for m in metrics:
            table.add_column(SHORT.get(m, m), justify="right", no_wrap=True)
        for method in method_order(group["method"]):
            rows = group[group["method"] == method].set_index("metric")
            cells = []
            for m in metrics:
                if m not in rows.index:
                    cells.append("")
                    continue
                r = rows.loc[m]
                nan = f" NaN {int(r['n_nan'])}" if "n_nan" in r and r["n_nan"] == r["n_nan"] and r["n_nan"] else ""
                cells.append(f"{r['mean']:.3f}±{r['std']:.3f}" + ("*" if r["better"] else "") + nan)
            table.add_row(method, str(int(rows["n"].max())), *cells)
        out.print(table)
    out.print(f"n = seeds; * = {rule_text(level, test, baseline)}; mask IoU: kept region vs true finding"
              + ("; MAE: mean absolute error in grades (lower is better)" if "mae" in metrics else ""))
    if power_note(summary, level, test):
        out.print(f"note: {power_note(summary, level, test)}")
    for note in run_notes(df):
        out.print(f"note: {note}")


def print_verdict(runs_dir: Path) -> None:
    """A ``medaug compare`` folder's verdict paragraph (and its drops), before the tables; nothing elsewhere."""
    from .report import collect, compare_view

    view = compare_view(Path(runs_dir), collect(runs_dir))[1]
    if view is not None:
        out.print(view["text"], soft_wrap=True)
        out.print("")


@app.command()
def compare(
    data: Path = typer.Option(..., help="Dataset folder or file (any format medaug reads), or medmnist:NAME."),
    budget: Optional[str] = typer.Option(None, help="Time budget, e.g. 2h, 90m, 1.5h, 3600s: the plan is cut to fit "
                                                    "(fewer seeds, then no costly learned method, then a smaller model) and says so."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated candidates \\[default: none,classical,randaugment,trivialaugment,mixup,cutmix,apga,pgnm]."),
    with_generator: Optional[Path] = typer.Option(None, help="Also compare `generative`: a generator folder (`medaug gen train --out`) "
                                                              "or its samples (`medaug gen sample --out`)."),
    model: Optional[str] = typer.Option(None, help="Classifier \\[default: by rule: tiny on a CPU or under 1,000 training images, else resnet18]."),
    size: Optional[int] = typer.Option(None, help="Image side in px \\[default: by rule: min(image side, 64) for tiny, min(image side, 128) for resnet18]."),
    epochs: int = typer.Option(20, help="Epochs from initialisation for every method (equal budgets)."),
    seeds: int = typer.Option(5, help="Most seeds (rounds); at least 3. Racing may stop methods earlier."),
    n_shot: int = typer.Option(0, help="Training images per class (0 = all)."),
    metric: str = typer.Option("auroc", help="Validation metric for model selection, racing and the verdict: auroc | accuracy | balanced_accuracy | macro_f1 | kappa."),
    test: str = typer.Option("t", help="The verdict's test: t (paired t-test) | both (t-test and Wilcoxon: needs 6+ seeds) | wilcoxon; Holm-adjusted."),
    level: float = typer.Option(0.05, help="Significance level of racing and of the verdict."),
    delta: float = typer.Option(0.01, help="Smallest gain worth having, in --metric units: racing drops a method that "
                                "cannot beat the best by it and stops when no method left can beat none by it "
                                "(one-sided paired t-tests, Holm); 0: drop only significantly worse methods, never stop early."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    batch_size: int = typer.Option(32, help="Images per batch."),
    option: list[str] = typer.Option([], "--option", "-o", help="METHOD.KEY=VALUE, e.g. apga.preset=paper (repeatable)."),
    executor: str = typer.Option("local", help="local | ray: each round's runs as Ray tasks (README 'GPUs and clusters')."),
    fmt: str = typer.Option("auto", "--format", help="Dataset format of --data."),
    classes: str = typer.Option("", "--classes", help="Merge or rename the classes of --data, as `medaug train --classes`: "
                                "NEW=SOURCE,...;... e.g. \"no-oa=KL0,KL1;oa=KL2,KL3,KL4\"."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Compare folder \\[default: runs/compare-DATASET]; re-run the same command to resume."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start fresh: remove what medaug wrote in --out before."),
    html: bool = typer.Option(True, "--html/--no-html", help="Also write report.html."),
):
    """Which augmentation helps on this data? A fair plan, its time announced first, racing on validation, a verdict on test."""
    from .compare import compare as run_compare
    from .experiments import EXECUTORS

    EXECUTORS.get(executor)
    options: dict[str, dict] = {}
    for key, value in parse_options(option).items():
        if "." not in key:
            raise MedaugError(f"--option {key}: expected METHOD.KEY=VALUE, e.g. apga.preset=paper")
        name, opt = key.split(".", 1)
        options.setdefault(name, {})[opt] = value
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    result = run_compare(str(data), out=out_dir, methods=names, with_generator=str(with_generator) if with_generator else None,
                         model=model, size=size, epochs=epochs, seeds=seeds, n_shot=n_shot, budget=budget, metric=metric,
                         level=level, test=test, delta=delta, device=device, batch_size=batch_size, options=options, executor=executor,
                         fmt=fmt, classes=classes, overwrite=overwrite, html=html, say=lambda text: out.print(text, soft_wrap=True))
    if result["verdict"] is None:
        return
    print_summary(result["root"], level, test)  # the table marks what the verdict's rule marks
    out.print(f"report: {result['report'] / 'report.md'}" + (f" and {result['report'] / 'report.html'}" if html else ""))


DEMO_APGA = {"policy_width": 8, "policy_size": 32, "step": "fused"}


@app.command()
def demo(
    data: Path = typer.Option(Path("demo-data"), help="Synthetic dataset folder (created if missing)."),
    out_dir: Path = typer.Option(Path("demo-runs"), "--out", help="Where runs and the report go."),
    epochs: int = typer.Option(15),
    seeds: int = typer.Option(2, help="Seeds per method."),
    methods: str = typer.Option("none,classical,cutout,gradcam,apga", help="Comma-separated methods."),
    shortcut: float = typer.Option(0.9, help="Train-only shortcut probability of the synthetic data (if created)."),
):
    """Synthesise data, train a few methods (none, classical, cutout, gradcam, apga) x 2 seeds, print the table, write a report."""
    from .config import PosInt, TrainConfig, check_range
    from .data.synth import generate
    from .experiments import ExperimentConfig, make_plan, run_plan
    from .report import write_report

    check_range("--seeds", seeds, PosInt)
    start = time.time()
    if not data.exists():
        generate(data, n_train=600, n_test=300, size=64, seed=0, shortcut=shortcut)
    exp = ExperimentConfig(name="demo", out=str(out_dir), data=[str(data)], methods=methods.split(","), seeds=list(range(seeds)))
    train = TrainConfig(epochs=epochs, size=64, model="tiny", finetune_lr=5e-4)
    plan = make_plan(exp, train, {"apga": DEMO_APGA})
    run_plan(plan)
    folder = write_report(plan.root)
    print_summary(plan.root)
    out.print(f"report: {folder / 'report.md'} (figures: {folder})")
    out.print(f"demo wall time: {time.time() - start:.1f} s")


@app.command("apga-mura")
def apga_mura(
    data: Path = typer.Option(..., help="MURA-v1.1 folder (or its parent)."),
    seed: int = typer.Option(88, help="First seed (the original default)."),
    body_part: str = typer.Option("elbow", help="elbow, finger, forearm, hand, humerus, shoulder, wrist."),
    n_runs: int = typer.Option(1, help="Seeds seed .. seed+n_runs-1."),
    gpu_id: int = typer.Option(0, help="CUDA device index; -1 for CPU."),
    train_cutout: int = typer.Option(0, help="1 = train the cutout baseline."),
    train_apga: int = typer.Option(0, help="1 = train APGA."),
    train_gradcam: int = typer.Option(0, help="1 = train the GradCAM-mask baseline."),
    train_end2end: int = typer.Option(0, help="1 = train end-to-end masking."),
    n_shot: int = typer.Option(-1, help="Images per class (-1 = all)."),
    protocol: str = typer.Option("paper", help="paper (Adam 1e-4 throughout) | code (the authors' code: fine-tune at 1e-5, code APGA preset)."),
    out_dir: Path = typer.Option(Path("runs"), "--out"),
    pretrained: str = typer.Option("", help="Local ImageNet DenseNet-169 weights (the paper's init; first conv adapted to 1 channel)."),
    policy_weights: str = typer.Option("", help="Local TernausNet weights (the paper used Carvana-pretrained)."),
    epochs: Optional[int] = typer.Option(None, help="Override the protocol's 100 epochs (e.g. for a smoke test)."),
    model: str = typer.Option("densenet169", help="Classifier (the paper: densenet169)."),
    size: int = typer.Option(224, help="Image side (the paper: 224)."),
):
    """The original APGA repository's flags (apga_mura.py), run as a medaug experiment."""
    from .compat import PROTOCOLS, plan_from_flags
    from .experiments import run_plan
    from .report import write_report

    if protocol not in PROTOCOLS:
        raise MedaugError(f"--protocol {protocol!r}: choose paper or code")
    gpu = None if gpu_id < 0 or not _cuda() else gpu_id
    plan = plan_from_flags(str(data), seed, body_part, n_runs, gpu, bool(train_cutout), bool(train_apga),
                           bool(train_gradcam), bool(train_end2end), n_shot, protocol, str(out_dir),
                           model=model, size=size, pretrained=pretrained, policy_weights=policy_weights, epochs=epochs)
    run_plan(plan)
    folder = write_report(plan.root)
    print_summary(plan.root)
    out.print(f"report: {folder / 'report.md'}")


def _cuda() -> bool:
    import torch

    if not torch.cuda.is_available():
        Console(stderr=True).print("note: no CUDA device; running on the CPU")
        return False
    return True


@app.command()
def bench(
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    model: str = typer.Option("tiny", help="Classifier (densenet169 for the GPU targets)."),
    policy: str = typer.Option("ternaus", help="APGA policy network."),
    policy_width: Optional[int] = typer.Option(None, help="Policy width (64 = the original TernausNet) \\[default: the method's preset]."),
    policy_size: Optional[int] = typer.Option(None, help="Policy input side (0 = image side) \\[default: the method's preset]."),
    size: int = typer.Option(64, help="Image side."),
    batch: int = typer.Option(32, help="Batch size (source images)."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 | fp16"),
    methods: str = typer.Option("none,cutout,classical,gradcam,apga,pgnm", help="Comma-separated methods."),
    steps: int = typer.Option(5, help="Steps per timed window."),
    windows: int = typer.Option(5, help="Timed windows (the median is reported)."),
    warmup: int = typer.Option(3, help="Untimed steps first."),
    channels_last: bool = typer.Option(False, help="channels_last memory format for the classifier."),
    data: Optional[Path] = typer.Option(None, help="A prepared cache: also time the data loader."),
    channels: int = typer.Option(0, help="Channels of the benchmark's images: 1 gray, 3 colour (0 = those of --data, else 1)."),
    option: list[str] = typer.Option([], "--option", "-o", help="METHOD.KEY=VALUE, e.g. apga.step=fused (repeatable)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file medaug cannot prove it wrote."),
):
    """Images/s of each method's training step, side by side, with ratios to cutout and none.

    'trained/image': images the classifier trains on per source image (2 for the 1:1 mixes); 'x none per trained': throughput per trained image, i.e. the augmentation's own cost.
    """
    from .bench import run_bench
    from .config import TrainConfig
    from .io_utils import output_file, write_json

    if json_out is not None and json_out.is_dir():
        raise MedaugError(f"--json {json_out}: is a folder; give a file path, e.g. {json_out / 'bench.json'}")
    if json_out is not None:
        output_file(json_out, "--json", overwrite)  # before benchmarking
    names = [m.strip() for m in methods.split(",") if m.strip()]
    cfg = TrainConfig(data="-", model=model, size=size, device=device, precision=precision, progress=False)
    policy_opts = {k: v for k, v in dict(policy=policy, policy_width=policy_width, policy_size=policy_size).items() if v is not None}
    options = {"apga": dict(policy_opts), "end2end": dict(policy_opts)}
    for key, value in parse_options(option).items():
        if "." not in key:
            raise MedaugError(f"--option {key}: expected METHOD.KEY=VALUE, e.g. apga.step=fused")
        name, opt = key.split(".", 1)
        options.setdefault(name, {})[opt] = value
    result = run_bench(names, cfg, options, batch, warmup, steps, windows, channels_last, str(data) if data else None, channels)
    table = Table(title=f"training-step throughput: {result['device']}, {model} {size}px, batch {batch}, {precision}")
    for col in ("method", "images/s", "ms/step", "peak MB", "x none", "x cutout", "trained/image", "x none per trained"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for r in result["methods"]:
        fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        table.add_row(r["method"], f"{r['images_per_s']:.1f}", f"{r['step_ms']:.1f}", fmt(r["peak_mem_mb"], 0),
                      fmt(r["vs_none"]), fmt(r["vs_cutout"]), fmt(r["trained_per_source"], 0), fmt(r["trained_vs_none"]))
    out.print(table)
    if "loader_images_per_s" in result:
        out.print(f"data loader from cache: {result['loader_images_per_s']:.0f} images/s")
    if json_out:
        write_json(json_out, result, overwrite=overwrite)
        out.print(f"wrote {json_out}")


@app.command()
def transfer(
    backbone: list[str] = typer.Option(..., help="Trained run folder, as NAME=RUN_DIR or RUN_DIR (named by its method); repeatable."),
    data: Path = typer.Option(..., help="Dataset of the new task (e.g. `medaug data synth --findings sclerosis,periosteal`)."),
    shots: str = typer.Option("16,32,64,128,256", help="Training images per class, comma-separated."),
    seeds: str = typer.Option("0,1,2", help="Seeds, comma-separated (each draws its own k-shot sample)."),
    modes: str = typer.Option("finetune,linear", help="finetune (all layers) and/or linear (frozen backbone, new head)."),
    epochs: int = typer.Option(15, help="Epochs per transfer run."),
    lr: float = typer.Option(1e-3, help="Learning rate of the transfer runs."),
    batch_size: int = typer.Option(32),
    fmt: str = typer.Option("auto", "--format", help="Dataset format of --data."),
    classes: str = typer.Option("", "--classes", help="Merge or rename the classes of --data, as `medaug train --classes`: "
                                "NEW=SOURCE,...;... e.g. \"no-oa=KL0,KL1;oa=KL2,KL3,KL4\" (drop=SOURCE,... leaves classes out)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    out_dir: Path = typer.Option(Path("runs/transfer"), "--out", help="Output folder (finished runs are reused)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start fresh: remove what medaug wrote in --out before (never other files)."),
):
    """Unseen-concept transfer: fine-tune / linear-probe trained backbones with k images per class of a new task."""
    from .config import parse_ints
    from .transfer import parse_backbones, run_transfer

    names = parse_backbones(backbone)
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    run_transfer(names, str(data), parse_ints(shots, "shots"), parse_ints(seeds, "seeds"), out_dir, mode_list,
                 epochs=epochs, lr=lr, batch_size=batch_size, format=fmt, device=device, overwrite=overwrite, classes=classes)
    out.print((out_dir / "transfer.md").read_text())
    out.print(f"wrote {out_dir}/transfer.csv, transfer.md, transfer.png")


@app.command("methods")
def list_methods():
    """List augmentation methods and their options with the values they run with (presets filled in)."""
    from .methods import METHODS, resolved_options

    table = Table(title="methods: options as they run by default; a preset sets the options you leave unset")
    table.add_column("name")
    table.add_column("options (default)")
    for name in METHODS.names():
        cls = METHODS.get(name)
        defaults = resolved_options(name, {})
        opts = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        for preset in cls.presets:
            if preset != defaults.get("preset"):
                values = resolved_options(name, {"preset": preset})
                changed = ", ".join(f"{k}={v!r}" for k, v in values.items() if k != "preset" and v != defaults[k])
                opts += f"\npreset={preset} sets: {changed or '(the same values)'}"
        stacked = cls.builds_on({"classical": True})  # what it builds on when stacked (docs/apga.md); none: cannot be
        note = (" (starts from `none`" + (f", or `{stacked}` with classical=True" if stacked != "none" else "") + ")"
                if cls.needs_baseline else "")
        note += f" (then {cls.finetune_epochs} epochs fine-tuning)" if cls.finetune_epochs else ""
        table.add_row(name + note, opts or "-")
    out.print(table)


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler (Typer would turn a KeyboardInterrupt into a silent exit 130)."""


def _on_sigint(signum, frame) -> None:
    raise Interrupted


def main() -> None:
    """Console entry point: user errors are one line on stderr and exit code 2; Ctrl-C says how to resume.

    Anything else escaping a command is a bug: one line naming it (MEDAUG_DEBUG=1 shows the traceback).
    """
    import signal

    from .allocator import steady_cpu_allocator

    err = Console(stderr=True, emoji=False)
    signal.signal(signal.SIGINT, _on_sigint)
    steady_cpu_allocator()
    try:
        app()
    except MedaugError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt):
        err.print("interrupted; re-run the same command to resume")
        sys.exit(130)
    except OSError as exc:  # a fault of the machine (full or read-only disk, permissions, a file in the way, a long name)
        message = machine_fault(exc)
        if message is None:
            _internal(err, exc)
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # the last net: no traceback for a user, a pointer for a developer
        _internal(err, exc)


def _internal(err: Console, exc: BaseException) -> None:
    import os

    if os.environ.get("MEDAUG_DEBUG"):
        raise exc
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text:
        # sizes medaug can estimate are refused before allocating (device.check_memory); this is the rest (networks, ...)
        err.print(f"[bold red]error:[/] {escape(f'out of memory ({exc.__class__.__name__}: {text[:160]})')}; lower --batch-size, "
                  "--size or the option that multiplies into memory (network widths, sample counts)", highlight=False, soft_wrap=True)
        sys.exit(2)
    err.print(f"[bold red]error:[/] {escape(f'unexpected {exc.__class__.__name__}: {text}')} (a medaug bug or an input it "
              "does not check yet; MEDAUG_DEBUG=1 prints where)", highlight=False, soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
