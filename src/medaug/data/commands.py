"""``medaug data ...``: synthesise, fetch, check and prepare datasets (commands parse options and call the library)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthesise, fetch (MedMNIST by name), check, prepare.")
out = Console(markup=False, emoji=False) if sys.stdout.isatty() else Console(width=140, markup=False, emoji=False)  # user text is never markup


@data_app.command("synth")
def data_synth(
    out_dir: Path = typer.Option(..., "--out", help="Folder to create."),
    n_train: int = typer.Option(400, help="Training images."),
    n_test: int = typer.Option(200, help="Test images (the MURA-layout 'valid' split)."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0),
    classes: int = typer.Option(2, help="2 = negative/positive; K > 2 = normal + K-1 finding types (needs --layout folders)."),
    shortcut: float = typer.Option(0.0, help="Probability that a distractor agrees with the label, train split only."),
    layout: str = typer.Option("mura", help="mura | folders"),
    findings: str = typer.Option("", help="Comma list of finding types (fracture, lesion, hardware, sclerosis, periosteal): "
                                 "classes = normal + these, overriding --classes; needs --layout folders."),
    colour: str = typer.Option("", help="hue: instead of radiographs, RGB images of a red or a green blob of equal luminance "
                               "(classes that differ only in hue; ImageFolder train/test, with the blob as ROI)."),
):
    """Write the built-in synthetic radiograph dataset (images, ground-truth finding masks, CSVs), or with --colour hue the hue-only colour set."""
    from ..errors import MedaugError
    from .synth import generate, generate_hue

    if colour not in ("", "hue"):
        raise MedaugError(f"--colour {colour!r}: the one colour set is 'hue'")
    if colour and (classes != 2 or shortcut or findings or layout != "mura"):
        raise MedaugError("--colour hue: its layout and two classes are fixed; leave out --classes, --shortcut, --findings and --layout")
    if colour:
        root = generate_hue(out_dir, n_train=n_train, n_test=n_test, size=size, seed=seed)
    else:
        root = generate(out_dir, n_train=n_train, n_test=n_test, size=size, seed=seed, classes=classes, shortcut=shortcut,
                        layout=layout, findings=findings)
    out.print(f"wrote {n_train} train + {n_test} test images to {root}")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="MedMNIST 2D set, e.g. pneumoniamnist, breastmnist, dermamnist."),
    size: int = typer.Option(28, help="Published image side: 28, 64, 128 or 224."),
    root: Optional[Path] = typer.Option(None, help="Folder for the .npz \\[default: $MEDAUG_MEDMNIST or ~/.medmnist]."),
):
    """Get a MedMNIST set by name with the official `medmnist` package (a file already in --root is used as is)."""
    from .medmnist_hub import fetch, info

    path, downloaded, counts = fetch(name, size, root)
    entry = info(name)
    labels = ", ".join(entry["label"][str(i)] for i in range(len(entry["label"])))
    out.print(f"{'downloaded' if downloaded else 'found'} {path} ({entry['license']}): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; classes: {labels}")
    out.print(f"train with: medaug train --data {path} --size {size} ...")




SHOW_DUPLICATES = 20  #: sets of identical files `data check` lists


def reader_options(body_part: str, crop: str) -> dict:
    """The reader options given on the command line (defaults left out)."""
    return {k: v for k, v in dict(body_part=body_part, crop=crop).items() if v not in ("all", "none")}


@data_app.command("check")
def data_check(
    data: Path = typer.Argument(..., help="Dataset folder or CSV."),
    fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
    body_part: str = typer.Option("all", help="MURA body part."),
    crop: str = typer.Option("none", help="hipcsv: none | bbox (one sample per box)."),
    all_files: bool = typer.Option(False, "--all", help="Decode every file (default: a sample of 500)."),
    fix_list: Optional[Path] = typer.Option(None, help="Write the unreadable paths to this file, one per line."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --fix-list file medaug cannot prove it wrote."),
    classes: str = typer.Option("", "--classes", help="Count per merged or renamed class, as `medaug train --classes` "
                                "would train: NEW=SOURCE,...;... e.g. \"no-oa=KL0,KL1;oa=KL2,KL3,KL4\" (drop=SOURCE,... leaves classes out)."),
):
    """Counts per split and class, patients, sizes, masks, identical files (label conflicts, across and within splits), unreadable files."""
    from ..io_utils import output_file, write_text
    from .check import check_dataset, size_summary
    from .duplicates import CONFLICT

    if fix_list is not None:
        output_file(fix_list, "--fix-list", overwrite)  # before any work
    options = reader_options(body_part, crop)
    r = check_dataset(data, fmt, sample=None if all_files else 500, classes=classes, **options)
    shown = ", ".join(f"{c} ({'+'.join(r.class_map[c])})" for c in r.classes) if r.class_map else ", ".join(r.index.classes)
    out.print(f"format: [bold]{escape(r.index.format)}[/]  root: {escape(str(r.index.root))}  classes: {escape(shown)}",
              markup=True)
    table = Table(title="images per split and class")
    table.add_column("split")
    for c in r.counts.columns:
        table.add_column(str(c), justify="right")
    table.add_column("patients", justify="right")
    table.add_column("studies", justify="right")
    for split, row in r.counts.iterrows():
        table.add_row(str(split), *map(str, row.tolist()), str(r.patients.get(split, 0)), str(r.studies.get(split, 0)))
    out.print(table)
    out.print(f"images: {r.kind}" + (f", {r.colour} of {r.decoded} decoded files in colour" if r.colour else "")
              + ("" if r.decoded else " (no file decoded)"))
    out.print("image sizes (inspected files): " + size_summary(r.sizes))
    out.print(f"masks: {r.masks}")
    for note in r.notes:
        out.print(f"note: {note}")
    if r.duplicates:
        out.print(f"identical files ({len(r.duplicates)} set(s); content hash):")
        for d in r.duplicates[:SHOW_DUPLICATES]:
            out.print(f"  {d.kind}: {d.describe(r.index.classes)}", style="red" if d.kind == CONFLICT else None)
        if len(r.duplicates) > SHOW_DUPLICATES:
            out.print(f"  ... and {len(r.duplicates) - SHOW_DUPLICATES} more")
    if fix_list is not None:
        write_text(fix_list, "".join(p + "\n" for p in r.bad_paths), overwrite=overwrite)
        out.print(f"wrote {len(r.bad_paths)} unreadable path(s) to {fix_list}")
    if r.problems:
        for problem in r.problems:
            out.print(f"[bold red]problem:[/] {escape(problem)}", markup=True)
        raise typer.Exit(2)
    out.print("usable", style="green")


@data_app.command("prepare")
def data_prepare(
    data: Path = typer.Argument(..., help="Dataset folder or CSV."),
    size: int = typer.Option(224, help="Image side in pixels."),
    out_dir: Path = typer.Option(..., "--out", help="Cache folder to write (reused while the sources are unchanged)."),
    fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
    body_part: str = typer.Option("all", help="MURA body part."),
    crop: str = typer.Option("none", help="hipcsv: none | bbox (one sample per box)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cache of another dataset or size in --out (only medaug's files)."),
):
    """Decode once into a uint8 memory map; unreadable files are skipped, counted and listed."""
    import json

    from .cache import build_cache
    from .index import read_index

    options = reader_options(body_part, crop)
    index = read_index(data, fmt, **options)
    folder = build_cache(index, size, out_dir, strict=False, overwrite=overwrite)
    meta = json.loads((folder / "meta.json").read_text())
    kind = "RGB" if meta.get("channels", 1) == 3 else "gray"
    out.print(f"cached {meta['n']} images at {size} px ({kind}) in {folder}; skipped {meta['skipped']} unreadable"
              + (f" (listed in {folder / 'skipped.csv'})" if meta["skipped"] else ""))
    if meta.get("gray_in_colour"):
        out.print(f"note: {meta['gray_in_colour']} gray image(s) among colour ones, repeated to RGB")
    out.print(f"train with: medaug train --data {folder} --size {size} ...")
