"""Progress: one Rich live view on a terminal, plain lines elsewhere, quiet in tests when asked.

A process has at most one live view (Rich allows one): :func:`live_view` opens it, and nested calls
(a plan's view, then each run's epoch bar inside it) share it. Where the output is not a terminal
(a pipe, a log file, CI) no live view is drawn at all (Rich would print blank lines there);
:class:`PlanProgress` then prints one plain line per finished run instead.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)
_active: Progress | None = None  # the process's live view while one is open


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=console, transient=True,
    )


@contextlib.contextmanager
def live_view(enabled: bool = True) -> Iterator["Progress | NullProgress"]:
    """The process's live progress view (opened here, or the one already open), or a :class:`NullProgress`
    when ``enabled`` is False or the console is not a terminal. Tasks added to it should be removed by
    whoever added them (:meth:`Progress.remove_task`), since an outer view outlives them."""
    global _active
    if not enabled or not console.is_terminal:
        yield NullProgress()
    elif _active is not None:
        yield _active
    else:
        with make_progress() as bar:
            _active = bar
            try:
                yield bar
            finally:
                _active = None


def progress_bar(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` under a Rich progress bar (a plain loop when ``enabled`` is False or not on a terminal)."""
    with live_view(enabled) as bar:
        task = bar.add_task(description, total=total, status="")
        try:
            for item in items:
                yield item
                bar.advance(task)
        finally:
            bar.remove_task(task)


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class Outlook:
    """The whole of a plan that runs in parts (``medaug compare`` runs one round of seeds at a time), so the
    progress of each part counts the whole: runs planned in all, runs finished so far, an estimate in seconds
    of every run not finished yet (by resolved run folder) and the time spent before this process started.
    The time left is the estimates of the unfinished runs, scaled by how the runs trained in this process so
    far compared with their own estimates. ``split``: whose scores the per-run lines show (compare: valid,
    never the test split)."""

    total: int
    done: int = 0
    estimates: dict[str, float] = field(default_factory=dict)
    spent_before_s: float = 0.0
    split: str = "valid"
    start: float = field(default_factory=time.time)
    trained_s: float = 0.0  #: wall time of the runs trained in this process
    trained_estimate_s: float = 0.0  #: what their estimates said

    def left_s(self) -> float:
        scale = self.trained_s / self.trained_estimate_s if self.trained_estimate_s > 0 else 1.0
        return sum(self.estimates.values()) * scale

    def spent_s(self) -> float:
        return self.spent_before_s + time.time() - self.start

    def finish(self, out: "str | Path | None", result: dict | None, trained: bool) -> None:
        estimate = self.estimates.pop(str(Path(out).resolve()), 0.0) if out is not None else 0.0
        self.done += 1
        if trained and result and isinstance(result.get("wall_s"), (int, float)):
            self.trained_s += float(result["wall_s"])
            self.trained_estimate_s += estimate


class PlanProgress:
    """Runs done / left, time spent and an estimate of the time left, for a plan of ``total`` runs.

    On a terminal with progress on: a task in the live view. Otherwise (piped, or ``progress = false``):
    one plain line per run that finishes, so a long plan is never silent. The estimate is the mean wall
    time of the runs trained so far times the runs left to train: with ``folders`` (every run's folder) the
    runs left are those whose metrics.json is not there when the estimate is made (a run finished before, or
    by another process since, costs nothing); with ``busy`` too (folder -> another process is training it
    now) they are shared among this process and every other one training a run of the plan now, so two
    ``medaug run`` of one plan both estimate the time until the plan is done. With an
    :class:`Outlook` (a plan run in parts) the counts, the time spent and the time left are the whole's,
    the time left from the runs' own estimates."""

    def __init__(self, total: int, bar: "Progress | NullProgress", outlook: Outlook | None = None,
                 folders: "list[Path] | None" = None, busy: "Callable[[Path], bool] | None" = None):
        self.total, self.bar, self.plain, self.outlook = total, bar, isinstance(bar, NullProgress), outlook
        self.folders, self.busy = folders, busy
        self.done = self.trained = 0
        self.start = time.time()
        self.task = (bar.add_task("plan", total=outlook.total, completed=outlook.done, status="") if outlook
                     else bar.add_task("plan", total=total, status=""))

    def eta(self) -> float | None:
        if self.outlook is not None:
            return self.outlook.left_s()
        if not self.trained:
            return None
        return (time.time() - self.start) / self.trained * self.left_to_train() / (1 + self.others_training())

    def left_to_train(self) -> int:
        """Runs of the plan whose results are not on disk, wherever they are trained (without ``folders``: the
        runs not counted yet)."""
        return self.total - self.done if self.folders is None else len(self._unfinished())

    def others_training(self) -> int:
        """Runs of the plan that other processes are training now (0 without ``folders`` and ``busy``)."""
        return 0 if self.folders is None or self.busy is None else sum(map(self.busy, self._unfinished()))

    def _unfinished(self) -> list[Path]:
        return [Path(out) for out in self.folders if not (Path(out) / "metrics.json").is_file()]

    def finished(self, what: str, result: dict | None, trained: bool, out: "str | Path | None" = None) -> None:
        """Count one run (``trained``: it trained in this process now; else it was found finished or left to another;
        ``out``: its folder, to take its estimate off an :class:`Outlook`'s time left)."""
        self.done += 1
        self.trained += trained
        look = self.outlook
        if look is not None:
            look.finish(out, result, trained)
        eta = self.eta()
        done, total = (look.done, look.total) if look else (self.done, self.total)
        left = total - done
        spent = look.spent_s() if look else time.time() - self.start
        self.bar.update(self.task, advance=1, status=f"{left} left" + (f", ~{duration(eta)}" if eta is not None else ""))
        if not self.plain:
            return
        split = look.split if look else "test"
        score = ""
        if result and isinstance(result.get(split), dict):
            score = " ".join(f"{k} {result[split][k]:.3f}" for k in ("auroc", "accuracy")
                             if isinstance(result[split].get(k), float))
        state = "trained" if trained else ("finished before" if result else "left to another process")
        console.print(f"[{done}/{total}] {escape(what)}: {state}{f', {split} ' + score if score else ''} | "
                      f"{left} left, {duration(spent)} spent"
                      + (f", about {duration(eta)} to go" if eta is not None else ""), highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.bar.remove_task(self.task)


class NullProgress:
    """Stands in for a live view when progress bars are off (same calls, no output)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass
