"""Progress: one Rich live view on a terminal, plain lines elsewhere, quiet in tests when asked.

A process has at most one live view (Rich allows one): :func:`live_view` opens it, and nested calls
(a plan's view, then each run's epoch bar inside it) share it. Where the output is not a terminal
(a pipe, a log file, CI) no live view is drawn at all (Rich would print blank lines there);
:class:`PlanProgress` then prints one plain line per finished run instead.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterable, Iterator, TypeVar

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


class PlanProgress:
    """Runs done / left, time spent and an estimate of the time left, for a plan of ``total`` runs.

    On a terminal with progress on: a task in the live view. Otherwise (piped, or ``progress = false``):
    one plain line per run that finishes, so a long plan is never silent. The estimate is the mean wall
    time of the runs trained so far times the runs left (runs found finished cost nothing)."""

    def __init__(self, total: int, bar: "Progress | NullProgress"):
        self.total, self.bar, self.plain = total, bar, isinstance(bar, NullProgress)
        self.done = self.trained = 0
        self.start = time.time()
        self.task = bar.add_task("plan", total=total, status="")

    def eta(self) -> float | None:
        if not self.trained:
            return None
        return (time.time() - self.start) / self.trained * (self.total - self.done)

    def finished(self, what: str, result: dict | None, trained: bool) -> None:
        """Count one run (``trained``: it trained in this process now; else it was found finished or left to another)."""
        self.done += 1
        self.trained += trained
        eta = self.eta()
        left = self.total - self.done
        self.bar.update(self.task, advance=1, status=f"{left} left" + (f", ~{duration(eta)}" if eta is not None else ""))
        if not self.plain:
            return
        score = ""
        if result and isinstance(result.get("test"), dict):
            score = " ".join(f"{k} {result['test'][k]:.3f}" for k in ("auroc", "accuracy")
                             if isinstance(result["test"].get(k), float))
        state = "trained" if trained else ("finished before" if result else "left to another process")
        console.print(f"[{self.done}/{self.total}] {escape(what)}: {state}{', test ' + score if score else ''} | "
                      f"{left} left, {duration(time.time() - self.start)} spent"
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
