"""``medaug gen ...`` (train, sample, eval) and ``medaug study size``: commands parse options and call the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..config import parse_ints, parse_options

gen_app = typer.Typer(no_args_is_help=True, help="Generative augmentation: train a class-conditional GAN or diffusion model, sample, evaluate.")
study_app = typer.Typer(no_args_is_help=True, help="Studies across settings: `size` (does generative match classical, per dataset size?).")
CLASSES_HELP = ("Merge or rename the data's classes, as `medaug train --classes`: NEW=SOURCE,...;... "
                "e.g. \"no-oa=KL0,KL1;oa=KL2,KL3,KL4\" (drop=SOURCE,... leaves classes out).")
out = Console(markup=False, emoji=False) if sys.stdout.isatty() else Console(width=140, markup=False, emoji=False)  # user text is never markup


@gen_app.command("train")
def gen_train(
    data: Path = typer.Option(..., help="Dataset folder (any format medaug reads); the generator sees its train split only."),
    model: str = typer.Option("gan", help="gan | diffusion"),
    steps: int = typer.Option(0, help="Training steps (one G and one D update each for the GAN); 0 = the model's default (gan 500, diffusion 1000)."),
    size: int = typer.Option(32, help="Image side in pixels (GAN: a power of two)."),
    batch_size: int = typer.Option(16),
    seed: int = typer.Option(0),
    n_shot: int = typer.Option(0, help="Training images per class (0 = all), drawn with --seed like classifier runs."),
    ckpt_every: int = typer.Option(100, help="Checkpoint every N steps (resume: run the same command again)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    fmt: str = typer.Option("auto", "--format", help="Dataset format."),
    classes: str = typer.Option("", "--classes", help=CLASSES_HELP),
    option: list[str] = typer.Option([], "--option", "-o", help="Model option KEY=VALUE, e.g. -o augment=diffaugment -o guidance=3 (repeatable)."),
    out_dir: Path = typer.Option(..., "--out", help="Generator folder (resumed if it holds a checkpoint)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what medaug wrote in --out before (never other files)."),
):
    """Train a class-conditional generator (resumable; more --steps continues a finished one)."""
    from .train import GenConfig, train_generator

    cfg = GenConfig(data=str(data), model=model, steps=steps, size=size, batch_size=batch_size, seed=seed, n_shot=n_shot,
                    ckpt_every=ckpt_every, device=device, format=fmt, options=parse_options(option), classes=classes)
    info = train_generator(cfg, out_dir, overwrite=overwrite)
    last = ", ".join(f"{k} {v:.3f}" for k, v in info.get("last", {}).items() if isinstance(v, float) and k != "time_s")
    out.print(f"{info['model']} {info['size']}px: {info['steps']} steps on {info['n_train']} images "
              f"({', '.join(f'{c} {n}' for c, n in info['n_train_per_class'].items())}) in {info['wall_s']:.0f} s; last: {last}")
    out.print(f"generator in {out_dir} (preview.png)")


@gen_app.command("sample")
def gen_sample(
    model_dir: Path = typer.Option(..., "--model", help="Generator folder from `medaug gen train`."),
    per_class: int = typer.Option(..., help="Images per class."),
    out_dir: Path = typer.Option(..., "--out", help="Output ImageFolder: OUT/<class>/*.png plus contact_<class>.png."),
    seed: int = typer.Option(0, help="Same seed, same images."),
    device: str = typer.Option("auto"),
    option: list[str] = typer.Option([], "--option", "-o", help="Sampling option, e.g. -o guidance=3 -o ddim_steps=100 -o truncation=0.7."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what medaug wrote in --out before (never other files)."),
):
    """Write class-conditional samples in the ImageFolder layout, with a contact sheet per class."""
    from .train import write_samples

    info = write_samples(model_dir, per_class, out_dir, seed=seed, device=device, overrides=parse_options(option), overwrite=overwrite)
    out.print(f"wrote {per_class} x {len(info['classes'])} images ({', '.join(info['classes'])}) to {out_dir} in {info['wall_s']:.1f} s")


@gen_app.command("eval")
def gen_eval(
    real: Path = typer.Option(..., help="The real dataset the generator was trained on."),
    fake: Path = typer.Option(..., help="Generated ImageFolder (`medaug gen sample --out`)."),
    extractor: Optional[Path] = typer.Option(None, help="Local feature network: a medaug run folder/best.pt or a TorchScript file "
                                             "[default: a medaug classifier trained here on the real training images]."),
    size: int = typer.Option(32, help="Image side for evaluation."),
    n_shot: int = typer.Option(0, help="The generator's --n-shot (the reference is the same training subset)."),
    seed: int = typer.Option(0, help="The generator's --seed (k-shot subset) and the classifiers' seed."),
    epochs: int = typer.Option(10, help="Epochs of the TRTR/TSTR classifiers."),
    tstr: bool = typer.Option(True, help="Train-on-synthetic-test-on-real accuracy."),
    classes: str = typer.Option("", "--classes", help="The generator's --classes (the real data's classes as it was trained on them)."),
    device: str = typer.Option("auto"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where quality.json and figures go \\[default: FAKE/../quality]."),
):
    """FID, KID, precision/recall, density/coverage (with the extractor's name), TSTR and a memorisation check."""
    from .evaluation import evaluate

    folder = out_dir or fake.parent / f"{fake.name}-quality"
    r = evaluate(real, fake, folder, extractor=extractor, size=size, n_shot=n_shot, seed=seed, epochs=epochs, tstr=tstr, device=device,
                 classes=classes)
    table = Table(title=f"quality on features of {r['extractor']}", title_justify="left")
    for col in ("set", "FID", "KID", "precision", "recall", "density", "coverage", "n_real", "n_fake"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for name, m in (("synthetic vs real train", r["all"]), ("real test vs real train", r["real_test_reference"])):
        table.add_row(name, f"{m['fid']:.2f}", f"{m['kid']:.4f}±{m['kid_std']:.4f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      f"{m['density']:.3f}", f"{m['coverage']:.3f}", str(m["n_real"]), str(m["n_fake"]))
    out.print(table)
    for cls, m in r["per_class"].items():
        out.print(f"  {cls}: FID {m['fid']:.2f}, KID {m['kid']:.4f} ({r['extractor']}; n real {m['n_real']}, fake {m['n_fake']})")
    mem = r["memorisation"]
    out.print(f"memorisation: median NN pixel RMS distance synthetic->train {mem['nn_dist_median']:.3f}"
              + (f", real test->train {mem['ref_nn_dist_median']:.3f}; synthetic closer than the 5th percentile of real test: "
                 f"{mem['frac_closer_than_ref_p05']:.1%}" if "ref_nn_dist_median" in mem else ""))
    if "tstr" in r:
        out.print(f"TSTR accuracy {r['tstr']['accuracy']:.3f} (macro F1 {r['tstr']['macro_f1']:.3f}) vs TRTR "
                  f"{r['trtr']['accuracy']:.3f} (macro F1 {r['trtr']['macro_f1']:.3f}) [{r['tstr_classifier']}]")
    if "agreement" in r:
        a = r["agreement"]
        out.print(f"conditional agreement ({a['classifier']} trained on real; chance {a['chance']:.0%}): {a['balanced']:.1%} balanced, "
                  f"{a['overall']:.1%} overall; " + ", ".join(f"{c} {v:.1%}" for c, v in a["per_class"].items())
                  + " (real test images: " + ", ".join(f"{c} {v:.1%}" for c, v in a["real_test_reference"].items()) + ")")
        from .quality import agreement_warning

        if agreement_warning(a):
            out.print(f"[bold red]{agreement_warning(a)}[/]")
    out.print(f"quality.md, quality.json, contact_<class>.png, memorisation.png, nn_distances.png in {folder}")


@study_app.command("size")
def study_size(
    data: Path = typer.Option(..., help="Dataset folder."),
    per_class: str = typer.Option("20,50,100", help="Training-set sizes, images per class (comma-separated)."),
    methods: str = typer.Option("none,classical,generative", help="Comma-separated methods; variants too, e.g. generative+classical (generative with -o classical=true)."),
    seeds: str = typer.Option("0,1", help="Comma-separated seeds."),
    gen_model: str = typer.Option("gan", help="gan | diffusion"),
    gen_steps: int = typer.Option(0, help="Generator training steps per (size, seed); 0 = the model's default budget (gen train's: gan 500, diffusion 1000)."),
    gen_option: list[str] = typer.Option([], "--gen-option", help="Generator option KEY=VALUE (repeatable)."),
    samples_per_class: int = typer.Option(0, help="Synthetic pool per class (0 = max(size, 64))."),
    ratio: float = typer.Option(1.0, help="Synthetic images per real image, per class."),
    size: int = typer.Option(32, help="Image side."),
    epochs: int = typer.Option(10, help="Classifier epochs."),
    model: str = typer.Option("tiny", help="Classifier."),
    classes: str = typer.Option("", "--classes", help=CLASSES_HELP),
    tolerance: float = typer.Option(0.01, help="'Matches' = mean accuracy difference >= -tolerance."),
    device: str = typer.Option("auto"),
    out_dir: Path = typer.Option(..., "--out", help="Study folder (finished runs are skipped on re-run)."),
):
    """Generator + classifiers per size and seed; table and plot: at which size does generative match classical?"""
    from .study import METRICS, size_study

    r = size_study(str(data), parse_ints(per_class, "per-class"), [m.strip() for m in methods.split(",") if m.strip()],
                   parse_ints(seeds, "seeds"), out_dir, gen_model=gen_model, gen_steps=gen_steps, gen_options=parse_options(gen_option),
                   size=size, epochs=epochs, model=model, samples_per_class=samples_per_class, ratio=ratio,
                   tolerance=tolerance, device=device, classes=classes)
    table = Table(title="test metrics, mean ± std over seeds", title_justify="left")
    for col in ["per class", "method", "seeds"] + METRICS:
        table.add_column(col, justify="right")
    for row in r["table"]:
        table.add_row(str(row["per_class"]), row["method"], str(row["n_seeds"]),
                      *[f"{row[m]:.3f}±{row[m + '_std']:.3f}" for m in METRICS])
    out.print(table)
    out.print(r["answer"])
    out.print(f"study.md, study.csv, study.png in {out_dir}")
