"""Unseen-concept transfer: k-shot fine-tuning and linear probes of trained backbones on a new task.

PGNM's claim (seed 003) is that a heated-then-fine-tuned backbone transfers better to new medical
tasks with 16 to 256 images per class. ``transfer`` takes trained run folders (their ``best.pt``;
the classifier head is re-initialised for the new classes), and for every backbone x mode x k x
seed trains one run with the same training loop (``medaug.train.fit``) on ``k`` images per class of
the new dataset (the same k-shot sample for every backbone, drawn with the seed). Layout::

    <out>/<backbone>/<mode>/shot-<k>/seed-<s>/   one run folder each (resumable)
    <out>/transfer.csv    one row per run: backbone, mode, shot, seed, test metrics
    <out>/transfer.md     mean +- std per backbone, mode and k, with the paired difference vs the reference
    <out>/transfer.png    macro F1 and balanced accuracy against k, one line per backbone and mode
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pandas as pd

from .config import TrainConfig
from .errors import MedaugError
from .io_utils import safe_name, write_text

MODES = {"finetune": "all", "linear": "head"}  #: mode -> TrainConfig.train_layers
METRICS = ("macro_f1", "balanced_accuracy", "auroc_ovo")


def parse_backbones(specs: list[str]) -> dict[str, Path]:
    """'NAME=RUN_DIR' or 'RUN_DIR' (named by the run's method) -> {name: run folder}; checks best.pt and config.toml."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        run = Path(path).expanduser()
        if not (run / "best.pt").is_file() or not (run / "config.toml").is_file():
            raise MedaugError(f"--backbone {spec}: {run} is not a trained run folder (needs best.pt and config.toml); "
                              "pass the folder `medaug train --out` or `medaug run` wrote")
        name = name or backbone_config(run).method
        safe_name(name, f"--backbone {spec}: the name")  # it names the folder <out>/<name>/
        if name in out:
            raise MedaugError(f"--backbone {spec}: the name {name!r} is used twice; name them NAME=RUN_DIR")
        out[name] = run
    if not out:
        raise MedaugError("--backbone: give at least one trained run folder")
    return out


def backbone_config(run: Path) -> TrainConfig:
    from .config import from_dict

    path = run / "config.toml"
    try:
        values = tomllib.loads(path.read_text()).get("train")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MedaugError(f"--backbone {run}: {path} is unreadable ({exc.__class__.__name__}); pass a run folder medaug wrote") from None
    if not isinstance(values, dict):
        raise MedaugError(f"--backbone {run}: {path} has no [train] table; pass a run folder medaug wrote")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return from_dict(TrainConfig, {k: v for k, v in values.items() if k in known}, f"--backbone {run}: {path} [train]")


def transfer_config(backbone: Path, data: str, shot: int, seed: int, mode: str, **train: object) -> TrainConfig:
    """The run config: the backbone's model, size and channels; its best.pt as the starting weights."""
    if mode not in MODES:
        raise MedaugError(f"--modes {mode}: choose from {', '.join(MODES)}")
    src = backbone_config(backbone)
    return TrainConfig(data=str(data), model=src.model, size=src.size, in_channels=src.in_channels,
                       pretrained=str(backbone / "best.pt"), method="none", finetune_epochs=0,
                       train_layers=MODES[mode], n_shot=shot, seed=seed, **train)


def run_transfer(backbones: dict[str, Path], data: str, shots: list[int], seeds: list[int], out: str | Path,
                 modes: list[str] = ("finetune", "linear"), overwrite: bool = False, **train: object) -> pd.DataFrame:
    """Train every backbone x mode x shot x seed on ``data``; returns one row per run (also written as CSV/MD/PNG)."""
    from .io_utils import output_folder
    from .train import check_batch_memory, fit, load_data

    out = Path(out)
    for mode in modes:
        if mode not in MODES:
            raise MedaugError(f"--modes {mode}: choose from {', '.join(MODES)}")
    if not modes:
        raise MedaugError("--modes: give finetune and/or linear")
    if any(k < 1 for k in shots):
        raise MedaugError(f"--shots {','.join(map(str, shots))}: transfer needs at least 1 training image per class, e.g. 16,32,64")
    configs = {name: transfer_config(run, data, shots[0], seeds[0], modes[0], **train) for name, run in backbones.items()}
    for name in backbones:
        safe_name(name, "--backbone: the name")
    for cfg in configs.values():
        check_batch_memory(cfg)
    output_folder(out, "transfer", inputs=tuple(c.data for c in configs.values() if Path(c.data).is_dir())[:1], overwrite=overwrite)
    rows = []
    for shot in shots:
        for seed in seeds:
            dataset = None  # the same k-shot sample for every backbone and mode
            for name, run in backbones.items():
                for mode in modes:
                    cfg = transfer_config(run, data, shot, seed, mode, **train)
                    if dataset is None:
                        dataset = load_data(cfg)
                    m = fit(cfg, out / name / mode / f"shot-{shot}" / f"seed-{seed}", dataset)
                    rows.append({"backbone": name, "mode": mode, "shot": shot, "seed": seed,
                                 **{k: m["test"].get(k, float("nan")) for k in METRICS}})
    df = pd.DataFrame(rows)
    write_text(out / "transfer.csv", df.to_csv(index=False))
    write_text(out / "transfer.md", transfer_table(df))
    transfer_plot(df, out / "transfer.png")
    return df


def transfer_table(df: pd.DataFrame, reference: str | None = None) -> str:
    """Markdown: mean +- std per backbone, mode and k; the mean paired difference (and t-test p)
    of every other backbone against ``reference`` (default: 'none' if present, else the first)."""
    from .stats import format_mean_std, paired_tests

    names = list(dict.fromkeys(df["backbone"]))
    ref = reference or ("none" if "none" in names else names[0])
    lines = [f"Transfer: test metrics (mean +- std over seeds); diff = paired mean difference vs `{ref}` (t-test p).", ""]
    head = ["mode", "k", "backbone", *METRICS, "diff macro_f1 (p)", "diff balanced_accuracy (p)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (mode, shot), group in df.groupby(["mode", "shot"], sort=True):
        base = group[group["backbone"] == ref].sort_values("seed")
        for name in names:
            g = group[group["backbone"] == name].sort_values("seed")
            cells = [mode, str(shot), name, *(format_mean_std(g[k].tolist()) for k in METRICS)]
            for k in ("macro_f1", "balanced_accuracy"):
                if name == ref or len(base) != len(g) or not (base["seed"].to_numpy() == g["seed"].to_numpy()).all():
                    cells.append("-")
                else:
                    t = paired_tests(g[k].to_numpy(), base[k].to_numpy())
                    cells.append(f"{t['mean_diff']:+.3f} ({t['t_p']:.3g})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def transfer_plot(df: pd.DataFrame, path: Path) -> None:
    """Macro F1 and balanced accuracy against k (log scale), mean +- std over seeds per backbone and mode."""
    from .figures import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("macro_f1", "balanced_accuracy")):
        for (name, mode), g in df.groupby(["backbone", "mode"], sort=True):
            stats = g.groupby("shot")[metric].agg(["mean", "std"]).fillna(0.0)
            k = stats.index.to_numpy()
            ax.errorbar(k, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                        linestyle="-" if mode == "finetune" else "--", label=f"{name} ({mode})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(df["shot"].unique()), [str(k) for k in sorted(df["shot"].unique())])
        ax.set_xlabel("training images per class (k)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
