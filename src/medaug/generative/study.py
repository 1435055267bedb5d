"""``medaug study size``: the dataset-size study of the GAN-augmentation paper.

For every training-set size k (images per class) and seed s: the k-shot subset of the training
split (drawn with seed s, the same subset every method sees), a generator trained on exactly that
subset (``generators/shot-k/seed-s``), samples from it, and one classifier run per method
(``runs/<dataset>/<method>/shot-k/seed-s``, the experiment layout, so ``medaug report`` works on
it too). Then a table (mean ± std over seeds per method and size) and a plot with error bars, and
the answer to the paper's question: from which size on does generative augmentation match
classical augmentation (mean difference >= -tolerance, paired by seed)? Methods may be variants
(``generative+classical``: the generative method with its ``classical`` option; see
``medaug.experiments.method_spec``); every generative one trains on the same samples and gets its
own comparison with classical and answer line.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import MedaugError
from ..io_utils import write_json, write_text

METRICS = ["accuracy", "macro_f1", "balanced_accuracy", "auroc"]


def size_study(data: str, per_class: list[int], methods: list[str], seeds: list[int], out: str | Path,
               gen_model: str = "gan", gen_steps: int = 0, gen_options: dict | None = None, size: int = 32,
               epochs: int = 10, model: str = "tiny", samples_per_class: int = 0, ratio: float = 1.0,
               tolerance: float = 0.01, device: str = "auto", progress: bool = True, classes: str = "") -> dict:
    from ..config import TrainConfig
    from ..experiments import ExperimentConfig, base_method, make_plan, run_plan
    from .train import GenConfig, train_generator, write_samples

    from ..io_utils import output_folder

    root = Path(out)
    if not per_class or not methods or not seeds:
        raise MedaugError("study size: give at least one --per-class, --methods and --seeds value")
    generative = [m for m in methods if base_method(m) == "generative"]  # unknown names fail here
    check_flags(per_class, methods, generative, seeds, gen_model, gen_steps, gen_options, size, epochs, model,
                samples_per_class, ratio, tolerance, device)
    output_folder(root, "study", inputs=(data,) if Path(data).is_dir() else ())
    for k in per_class:
        for s in seeds:
            options = {}
            if generative:
                gdir = root / "generators" / f"shot-{k}" / f"seed-{s}"
                gcfg = GenConfig(data=str(data), model=gen_model, size=size, steps=gen_steps, seed=s, n_shot=k,
                                 options=dict(gen_options or {}), device=device, progress=progress, classes=classes)
                gcfg.ckpt_every = max(1, gcfg.steps // 4)  # steps: 0 -> the model's default budget
                train_generator(gcfg, gdir)
                sdir = gdir / "samples"
                n = samples_per_class or max(k, 64)
                if not (sdir / "samples.json").is_file():
                    write_samples(gdir, n, sdir, seed=s, device=device)
                options = {m: {"samples": str(sdir), "ratio": ratio} for m in generative}
            exp = ExperimentConfig(name="runs", out=str(root), data=[str(data)], methods=list(methods), seeds=[s], shots=[k])
            train = TrainConfig(size=size, epochs=epochs, model=model, device=device, progress=progress, classes=classes)
            run_plan(make_plan(exp, train, options))
    return summarise_study(root, tolerance)


def check_flags(per_class: list[int], methods: list[str], generative: list[str], seeds: list[int], gen_model: str,
                gen_steps: int, gen_options: dict | None, size: int, epochs: int, model: str, samples_per_class: int,
                ratio: float, tolerance: float, device: str) -> None:
    """Every flag of the study checked by the configs it becomes, before any generator or classifier trains."""
    from ..config import NonNegFloat, NonNegInt, TrainConfig, check_range, options_from
    from ..experiments import ExperimentConfig, make_plan
    from ..train import check_batch_memory
    from . import model_class
    from .train import GenConfig, check_sample_memory

    check_range("--tolerance", tolerance, NonNegFloat)
    check_range("--samples-per-class", samples_per_class, NonNegInt)
    exp = ExperimentConfig(name="runs", out="-", data=["-"], methods=list(methods), seeds=list(seeds), shots=list(per_class))
    train = TrainConfig(size=size, epochs=epochs, model=model, device=device)
    make_plan(exp, train, {m: {"samples": "-", "ratio": ratio} for m in generative})
    check_batch_memory(train)
    if generative:
        GenConfig(data="-", model=gen_model, size=size, steps=gen_steps, device=device)
        options_from(model_class(gen_model).Options, dict(gen_options or {}), f"--gen-option ({gen_model})", noun="option")
        check_sample_memory(samples_per_class or max(max(per_class), 64), 2, size)


def summarise_study(root: str | Path, tolerance: float = 0.01) -> dict:
    """Table, plot and answer from the run folders below ``root/runs`` (reads files only)."""
    from ..report import collect
    from ..stats import mean_std, paired_tests

    root = Path(root)
    df = collect(root / "runs")
    df["shot"] = df["shot"].astype(int)
    rows = []
    for (shot, method), g in df.groupby(["shot", "method"]):
        row = {"per_class": shot, "method": method, "n_seeds": len(g)}
        for m in METRICS:
            if m in g:
                mean, std, _ = mean_std(g[m].dropna().to_numpy())
                row[m], row[f"{m}_std"] = mean, std
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["per_class", "method"]).reset_index(drop=True)
    table.to_csv(root / "study.csv", index=False)
    comparison = []
    generative = sorted(set(df.loc[df["base_method"] == "generative", "method"]), key=lambda m: (m != "generative", m))
    for method in generative:
        for shot, g in df.groupby("shot"):
            gen, cla = g[g.method == method].set_index("seed"), g[g.method == "classical"].set_index("seed")
            seeds = sorted(set(gen.index) & set(cla.index))
            if not seeds:
                continue
            test = paired_tests(gen.loc[seeds, "accuracy"].to_numpy(float), cla.loc[seeds, "accuracy"].to_numpy(float))
            comparison.append({"method": method, "per_class": int(shot), "diff_accuracy": test["mean_diff"], "t_p": test["t_p"],
                               "n": test["n"], "matches": bool(test["mean_diff"] >= -tolerance)})
    answers = [_answer([c for c in comparison if c["method"] == m], tolerance, m) for m in generative] or [_answer([], tolerance)]
    answer = " / ".join(answers)
    _plot(table, root / "study.png")
    md = ["# Dataset-size study", "", _markdown(table), ""]
    for method in generative:
        rows = [c for c in comparison if c["method"] == method]
        if rows:
            md += [f"{method} - classical (test accuracy, paired by seed):", ""]
            md += [f"- {c['per_class']} per class: {c['diff_accuracy']:+.3f} (t-test p = {c['t_p']:.3g}, n = {c['n']})"
                   for c in rows] + [""]
    md += [*answers, ""]
    write_text(root / "study.md", "\n".join(md))
    result = {"table": table.to_dict(orient="records"), "comparison": comparison, "answer": answer, "tolerance": tolerance}
    write_json(root / "study.json", result)
    return result


def _answer(comparison: list[dict], tolerance: float, method: str = "generative") -> str:
    if not comparison:
        return f"no {method}/classical pairs to compare (run both methods)"
    sizes = [c["per_class"] for c in comparison]
    for i, c in enumerate(comparison):
        if all(d["matches"] for d in comparison[i:]):
            return (f"{method} matches classical (mean accuracy difference >= -{tolerance:g}) from {c['per_class']} "
                    f"images per class on, among sizes {sizes}")
    return f"{method} does not match classical (within {tolerance:g} accuracy) at the largest size tested ({sizes[-1]})"


def _markdown(table: pd.DataFrame) -> str:
    cols = ["per class", "method", "seeds"] + METRICS
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [str(r["per_class"]), r["method"], str(r["n_seeds"])]
        cells += [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if m in r and not math.isnan(r[m]) else "" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(table: pd.DataFrame, path: Path) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from ..figures import plt, save_figure

    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 2.8), squeeze=False)
    for ax, m in zip(axes[0], METRICS):
        for method, g in table.groupby("method"):
            if m in g:
                ax.errorbar(g["per_class"], g[m], yerr=g[f"{m}_std"], marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xticks(sorted(table["per_class"].unique()))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(NullFormatter())  # no 3x10^1-style labels between the sizes
        ax.set_xlabel("training images per class")
        ax.set_title(m, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("test metrics vs training-set size (mean ± std over seeds)", fontsize=9, y=1.02)
    save_figure(fig, path)
