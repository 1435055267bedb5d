"""Atomic writes and output folders: a result file is complete or absent, and medaug deletes only what it wrote.

Every folder medaug writes (run, experiment, cache, generator, samples, report, transfer, study,
dataset) is claimed with :func:`output_folder` first. Claiming writes a marker file
(``.medaug-output.json``: the folder's kind and the top-level entries medaug wrote in it), and
refuses: a path that is a file, an output inside an input (the data folder), a folder of another
kind, and an existing folder without the marker that holds anything. ``overwrite=True`` removes
only the entries the marker lists (a file you added to a medaug folder stays). Atomic writes
record their entry in the nearest marker above them, and leave no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import MedaugError


def file_digest(path: str | Path, algorithm: str = "sha1") -> str:
    """Hex digest of a file's bytes (read in 1 MiB blocks), e.g. ``algorithm="md5"``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

MARKER = ".medaug-output.json"
TMP = ".medaug-tmp"  #: every temporary file or folder medaug writes has this in its name
_UMASK = os.umask(0)
os.umask(_UMASK)
RUNS = "*/*/shot-*/seed-*/config.toml"  # the experiment layout <dataset>/<method>/shot-k/seed-s (transfer: <backbone>/<mode>/...)
# a folder that predates markers is adopted when it holds a match of each pattern (a run, a cache, ... of an older medaug)
LEGACY = {"run": ("config.toml",), "cache": ("meta.json", "images.npy"), "generator": ("gen_config.toml",),
          "samples": ("samples.json",), "report": ("report.md",), "experiment": (RUNS,), "transfer": (RUNS,),
          "study": ("runs/" + RUNS,), "quality": ("quality.json",)}


def _marker(folder: Path) -> dict | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
        if isinstance(value, dict) and isinstance(value.get("kind"), str):
            value["entries"] = [e for e in value.get("entries", []) if isinstance(e, str)]
            return value
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        pass
    raise MedaugError(f"{path}: damaged medaug marker file; delete {folder} yourself if it is medaug's output, or choose another --out")


def _write_marker(folder: Path, marker: dict) -> None:
    _atomic(folder / MARKER, lambda fh: fh.write((json.dumps(marker, indent=1) + "\n").encode()), note=False)


def tmp_sibling(path: Path) -> Path:
    """A temporary name beside ``path`` for building a folder, then moving it into place; the temporary
    folders of killed processes (their pid no longer running) are removed first."""
    path = Path(path)
    for old in path.parent.glob(f".{path.name}.*{TMP}") if path.parent.is_dir() else ():
        pid = old.name[len(path.name) + 2:-len(TMP)]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inside(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b)


def output_folder(path: str | Path, kind: str, *, inputs: tuple = (), overwrite: bool = False, flag: str = "--out") -> Path:
    """Claim ``path`` as medaug's output folder of ``kind`` (created if missing); returns it.

    Refused with one line naming ``flag``: a file, a folder overlapping one of ``inputs``, a medaug
    folder of another kind, a folder holding files medaug did not write. ``overwrite``: empty the
    folder of what medaug wrote first. Stale temporary files of killed runs are removed.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MedaugError(f"{flag} {path}: is a file, not a folder; give a folder path (medaug does not replace files it did not write)")
    full = path.resolve()
    for src in inputs:
        src_full = Path(src).expanduser().resolve()
        if _inside(full, src_full) or _inside(src_full, full):
            raise MedaugError(f"{flag} {path}: overlaps the input {src}; write outputs to a folder outside the data")
    marker = _marker(path) if path.is_dir() else None
    if marker is None and path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        legacy = LEGACY.get(kind, ())
        if entries and not (legacy and all(next(path.glob(pattern), None) is not None for pattern in legacy)):
            example = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise MedaugError(f"{flag} {path}: the folder holds files medaug did not write ({example}); "
                              "choose a new or empty folder (medaug never deletes what it did not write)")
        marker = {"kind": kind, "entries": entries}  # empty, or a medaug folder older than markers (adopted)
    elif marker is not None and marker["kind"] != kind:
        raise MedaugError(f"{flag} {path}: holds medaug's {marker['kind']} output, not a {kind}; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if marker is None:
            marker = {"kind": kind, "entries": []}
        if overwrite:
            clear(path, marker)
            marker["entries"] = []
        _clean_tmp(path, marker)
        _write_marker(path, marker)
    except PermissionError as exc:
        raise MedaugError(f"{flag} {path}: cannot write there ({exc.strerror}); choose a writable folder") from None
    record(path)  # in the folder above, when that is medaug's too (a run inside an experiment)
    return path


def owned(path: str | Path, kind: str | None = None) -> bool:
    """Whether ``path`` is a folder medaug claimed (of ``kind``, when given)."""
    try:
        marker = _marker(Path(path)) if Path(path).is_dir() else None
    except MedaugError:
        return False
    return marker is not None and (kind is None or marker["kind"] == kind)


def clear(folder: Path, marker: dict | None = None) -> None:
    """Remove the entries medaug recorded in ``folder`` (nested medaug folders: their recorded entries)."""
    marker = marker or _marker(folder) or {"entries": []}
    for name in marker["entries"]:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            _clear_tree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def _clear_tree(folder: Path) -> None:
    marker = _marker(folder)
    if marker is None:  # a folder medaug created inside its own (e.g. last/, heated/ parents)
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                _clear_tree(child)
            else:
                child.unlink()
    else:
        clear(folder, marker)
        (folder / MARKER).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def remove_output(folder: str | Path) -> None:
    """Undo a claim whose command failed before writing a result: medaug's entries, the marker, the empty folder."""
    folder = Path(folder)
    if owned(folder):
        _clear_tree(folder)
        parent = _owner(folder.parent)
        if parent is not None and not folder.exists():
            marker = _marker(parent)
            rel = folder.relative_to(parent).parts[0]
            if not (parent / rel).exists() and rel in marker["entries"]:
                marker["entries"].remove(rel)
                _write_marker(parent, marker)


def _clean_tmp(folder: Path, marker: dict) -> None:
    """Delete temporary files of killed medaug processes (``*.medaug-tmp*``; older medaug: ``<entry>.*.tmp``)."""
    known = tuple(f"{e}." for e in marker["entries"])
    for child in folder.iterdir():
        stale = TMP in child.name or (child.name.endswith(".tmp") and child.name.startswith(known))
        if stale and child.is_file():
            child.unlink(missing_ok=True)
        elif stale and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def _owner(folder: Path, depth: int = 4) -> Path | None:
    """The nearest folder at or above ``folder`` (up to ``depth`` levels) that holds a marker."""
    for cand in [folder, *folder.parents][:depth]:
        if (cand / MARKER).is_file():
            return cand
    return None


def record(path: Path) -> None:
    """Note ``path``'s top-level entry in the marker of the medaug folder above it (if any)."""
    path = Path(path)
    owner = _owner(path.parent)
    if owner is None:
        return
    try:
        marker = _marker(owner)
    except MedaugError:
        return
    name = path.relative_to(owner).parts[0]
    if name != MARKER and name not in marker["entries"]:
        marker["entries"].append(name)
        _write_marker(owner, marker)


def _atomic(path: Path, write: Callable, note: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise MedaugError(f"{path}: is a folder; give a file path")
    if note:
        record(path)  # before the file exists: an interrupted write never leaves an unrecorded file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # the mode a plain open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda fh: fh.write((json.dumps(obj, indent=1, default=_jsonable) + "\n").encode()))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda fh: fh.write(text.encode()))


def save_torch(path: Path, obj: Any) -> None:
    _atomic(path, lambda fh: torch.save(obj, fh))


def load_torch(path: str | Path, map_location: Any = "cpu", what: str = "checkpoint",
               fix: str = "the file is truncated or not medaug's: delete it (or use --overwrite) to start fresh") -> Any:
    """``torch.load(path, weights_only=True)`` of a file that may be truncated, garbage or foreign: any exception
    the unpickler or the zip reader raises on such bytes (IndexError, KeyError, UnicodeDecodeError, ... not only
    the documented ones) is one line naming the file and the ``fix``."""
    import warnings

    try:
        with warnings.catch_warnings():  # garbage also draws warnings (e.g. "pickle protocol 131"): the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage bytes can make torch.load raise anything
        detail = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise MedaugError(f"{path}: not a readable {what} ({exc.__class__.__name__}: {detail}); {fix}") from None


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed, atomically."""
    _atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


def save_with(path: Path, save: Callable[[Path], None]) -> None:
    """Atomic write through a library's save-to-path function (matplotlib, PIL): ``save(tmp_path)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{TMP}{path.suffix}")
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def install(tmp: Path, folder: Path) -> None:
    """Move the entries of the finished temporary folder ``tmp`` into the claimed ``folder`` (after
    removing what medaug wrote there before), ``done_file`` last; ``tmp`` is removed."""
    tmp, folder = Path(tmp), Path(folder)
    marker = _marker(folder) or {"kind": "?", "entries": []}
    clear(folder, marker)
    marker["entries"] = sorted(p.name for p in tmp.iterdir())
    _write_marker(folder, marker)
    names = sorted(marker["entries"], key=lambda n: n in ("meta.json", "samples.json"))  # the completion file last
    for name in names:
        os.replace(tmp / name, folder / name)
    shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
