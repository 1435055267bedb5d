"""``medaug data ...``: synthesise, check and prepare datasets (commands parse options and call the library)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthesise, check, prepare.")
out = Console()


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
):
    """Write the built-in synthetic radiograph dataset (images, ground-truth finding masks, CSVs)."""
    from .synth import generate

    root = generate(out_dir, n_train=n_train, n_test=n_test, size=size, seed=seed, classes=classes, shortcut=shortcut, layout=layout)
    out.print(f"wrote {n_train} train + {n_test} test images to {root}")


