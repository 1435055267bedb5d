"""Optional experiment tracking: MLflow or TensorBoard, off by default.

medaug's own files (metrics.json, log.jsonl, report) stay the source of truth; a tracker is a
copy for people who browse runs in MLflow or TensorBoard. Neither library is a dependency: each
is imported only when asked for, and a missing one is a :class:`MedaugError` naming the pip
command.

Turn it on for every run of a process with the environment (``train.fit`` reads it)::

    MEDAUG_TRACK=mlflow medaug run study.toml                  # local SQLite store ./mlflow.db
    MEDAUG_TRACK=mlflow MEDAUG_TRACK_URI=http://host:5000 medaug run study.toml
    MEDAUG_TRACK=tensorboard medaug train --data d --out runs/x   # event files in runs/x/tensorboard

or pass a tracker object to ``fit(cfg, out, tracker=...)`` (anything with the :class:`Tracker` methods).
What is logged: the run's config as parameters, every log.jsonl row as metrics at its epoch,
the final test/valid/mask metrics, and metrics.json (and a report, via ``medaug report --track``)
as artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from .errors import MedaugError

KINDS = ("mlflow", "tensorboard")


class Tracker(Protocol):
    def where(self) -> str: ...
    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def close(self) -> None: ...


def flat_numbers(values: dict, prefix: str = "") -> dict:
    """Nested dict -> {'test.accuracy': 0.8, ...} keeping finite-or-NaN numbers only (no bools, strings, lists)."""
    out = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_numbers(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def flat_params(values: dict, prefix: str = "") -> dict:
    """Config dict -> {'method_options.lam': '0.1', ...}, every value a string (both trackers accept strings)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def _missing(package: str, kind: str) -> MedaugError:
    return MedaugError(f"--track {kind}: the {package} package is not installed; `pip install {package}` "
                       f"(or `pip install medaug[track]`), or run without tracking")


class MlflowTracker:
    """One MLflow run per medaug run (experiment = ``experiment`` name)."""

    def __init__(self, run_name: str, experiment: str = "medaug", uri: str | None = None):
        try:
            import mlflow
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri or os.environ.get("MEDAUG_TRACK_URI") or "sqlite:///mlflow.db")
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)

    def where(self) -> str:
        """Where the run was logged: its id and the tracking store (view: ``mlflow ui --backend-store-uri URI``)."""
        uri = self.mlflow.get_tracking_uri()
        return f"MLflow run {self.run.info.run_id} in {uri} (view: mlflow ui --backend-store-uri {uri})"

    def log_params(self, params: dict) -> None:
        self.mlflow.log_params(flat_params(params))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.mlflow.log_metrics(flat_numbers(metrics), step=step)

    def log_artifact(self, path: str | Path) -> None:
        self.mlflow.log_artifact(str(path))

    def close(self) -> None:
        self.mlflow.end_run()


class TensorBoardTracker:
    """Event files in ``<log_dir>`` (default: the run folder's ``tensorboard/``)."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(str(log_dir))
        self.log_dir = Path(log_dir)

    def where(self) -> str:
        """The event files' folder (view: ``tensorboard --logdir DIR``)."""
        return f"TensorBoard event files in {self.log_dir} (view: tensorboard --logdir {self.log_dir})"

    def log_params(self, params: dict) -> None:
        text = "\n".join(f"    {k} = {v}" for k, v in flat_params(params).items())
        self.writer.add_text("config", text)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        for k, v in flat_numbers(metrics).items():
            self.writer.add_scalar(k, v, step)

    def log_artifact(self, path: str | Path) -> None:  # TensorBoard has no artifacts: note where the file is
        self.writer.add_text("artifacts", str(Path(path).resolve()))

    def close(self) -> None:
        self.writer.close()


def create_tracker(kind: str, run_dir: str | Path, run_name: str | None = None, experiment: str = "medaug",
                   uri: str | None = None) -> Tracker:
    """A tracker for one run: ``kind`` 'mlflow' or 'tensorboard'."""
    if kind == "mlflow":
        return MlflowTracker(run_name or str(run_dir), experiment, uri)
    if kind == "tensorboard":
        return TensorBoardTracker(uri or Path(run_dir) / "tensorboard")
    raise MedaugError(f"--track {kind!r}: choose {' or '.join(KINDS)} (or leave tracking off)")


class _Hook:
    """What train.fit calls: start (params), epoch (a log row), finish (final metrics, artifacts)."""

    def __init__(self, tracker: Tracker | None):
        self.tracker = tracker

    def start(self, config: dict) -> None:
        if self.tracker:
            self.tracker.log_params(config)

    def epoch(self, row: dict) -> None:
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row.get("epoch", 0)))

    def finish(self, result: dict, run_dir: Path) -> None:
        if not self.tracker:
            return
        try:
            self.tracker.log_metrics({k: result[k] for k in ("test", "valid", "mask", "best_epoch", "wall_s") if k in result})
            if (Path(run_dir) / "metrics.json").is_file():
                self.tracker.log_artifact(Path(run_dir) / "metrics.json")
        finally:
            self.tracker.close()


def hook(cfg, run_dir: str | Path, tracker: Tracker | None = None, enabled: bool = True) -> _Hook:
    """The tracking hook of one run: ``tracker`` if given, else one from $MEDAUG_TRACK, else a no-op.

    ``enabled=False`` (processes other than the first under torchrun) always gives the no-op.
    """
    if not enabled:
        return _Hook(None)
    kind = os.environ.get("MEDAUG_TRACK", "").strip().lower()
    if tracker is None and kind and kind not in ("0", "off", "none"):
        run = Path(run_dir)
        tracker = create_tracker(kind, run, run_name="/".join(run.parts[-4:]),
                                 experiment=os.environ.get("MEDAUG_TRACK_EXPERIMENT", "medaug"))
    return _Hook(tracker)
