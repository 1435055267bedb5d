"""Atomic writes and output folders: a result file is complete or absent, and medaug deletes or replaces
only what it can prove it wrote.

Every folder medaug writes (run, experiment, cache, generator, samples, report, transfer, study, quality)
is claimed with :func:`output_folder` first. Claiming checks the path before any work
(:func:`check_output_path`: not a file or below one, not inside an input or what looks like a dataset,
not inside a cache, samples or report folder, names short enough) and refuses a folder of another kind,
a folder with a malformed marker, and a folder without a marker that holds files medaug did not write.

The marker (``.medaug-output.json``) records every file medaug wrote in the folder: its path relative
to the folder and a fingerprint taken right after the atomic write (sha256 and size), plus the medaug
folders nested in it (which carry their own marker). ``overwrite=True`` (and :func:`remove_output`)
delete a recorded file only when it still lies inside the folder (no ``..``, no absolute path, no
symlink on the way) and its bytes still match the fingerprint; folders are removed only when empty
afterwards. An atomic write never replaces an existing file medaug cannot prove it wrote (unless the
user said ``--overwrite`` for that one file). Entries of an older medaug's marker (names without a
fingerprint) are read but never deleted or replaced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

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
FORMAT = 2  #: the marker format this medaug writes (1: an older medaug's list of top-level names)
TMP = ".medaug-tmp"  #: every temporary file or folder medaug writes has this in its name
_UMASK = os.umask(0)
os.umask(_UMASK)
KINDS = ("run", "experiment", "cache", "generator", "samples", "report", "transfer", "study", "quality")
#: kinds that hold no other medaug folder (an output inside one would be deleted with it)
LEAF_KINDS = ("cache", "samples", "report")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".gz", ".npy")
#: room a name needs beside it for medaug's temporary names (``.NAME.PID.RANDOM.medaug-tmp``)
NAME_ROOM = 40

# A folder without a marker (written by a medaug from before markers) is adopted only when every file
# in it matches the layout of its kind and the kind's evidence is there; its files are then an older
# medaug's (never deleted or replaced: no fingerprint proves them).
_RUN = ("config.toml", "checkpoint.pt", "best.pt", "log.jsonl", "metrics.json", "predictions.npz", "masks.png",
        "masks.npz", "mask_history.npz", "mask_history.png", "last/epoch-*.pt", "tensorboard/*", MARKER)
_RUN_ALL = _RUN + tuple(f"heated/{p}" for p in _RUN)
_REPORT = ("report.md", "report.html", "results.csv", "summary.csv", "main_table.*", "*.png", MARKER)
_SAMPLES = ("samples.json", "contact_*.png", "*/*.png", MARKER)
_GENERATOR = ("gen_config.toml", "checkpoint.pt", "log.jsonl", "preview.png", "generator.json", MARKER,
              *(f"samples/{p}" for p in _SAMPLES))
_EXPERIMENT = (*(f"*/*/shot-*/seed-*/{p}" for p in _RUN_ALL), *(f"report/{p}" for p in _REPORT), MARKER)
LAYOUT = {  # kind: (evidence pattern, every file's patterns)
    "run": ("config.toml", _RUN_ALL),
    "cache": ("images.npy", ("meta.json", "images.npy", "rois.npy", "manifest.csv", "skipped.csv", MARKER)),
    "generator": ("gen_config.toml", _GENERATOR),
    "samples": ("samples.json", _SAMPLES),
    "experiment": ("*/*/shot-*/seed-*/config.toml", _EXPERIMENT),
    "transfer": ("*/*/shot-*/seed-*/config.toml", ("transfer.csv", "transfer.md", "transfer.png", MARKER,
                                                   *(f"*/*/shot-*/seed-*/{p}" for p in _RUN_ALL))),
    "study": ("runs/*/*/shot-*/seed-*/config.toml", ("study.csv", "study.md", "study.json", "study.png", MARKER,
                                                     *(f"runs/{p}" for p in _EXPERIMENT),
                                                     *(f"generators/shot-*/seed-*/{p}" for p in _GENERATOR))),
    "quality": ("quality.json", ("quality.json", "quality.md", "contact_*.png", MARKER,
                                 *(f"{d}/{p}" for d in ("trtr", "tstr") for p in _RUN_ALL))),
}


# ---------------------------------------------------------------------------------------------
# names and paths


def safe_name(name: str, what: str) -> str:
    """``name`` when it is one plain folder name (no ``..``, no path separator, not absolute, not empty);
    else one line naming ``what``. Names become folders below an output folder."""
    bad = (not isinstance(name, str) or name.strip() in ("", ".", "..") or "/" in name or "\\" in name
           or "\x00" in name or name != name.strip() or TMP in name or name == MARKER)
    if bad:
        raise MedaugError(f"{what} {name!r}: must be a plain folder name (no '/', '..', absolute path or "
                          "surrounding spaces); it names a folder inside the output folder")
    return name


def _name_max(path: Path) -> int:
    for cand in [path, *path.parents]:
        try:
            return int(os.pathconf(cand, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return 255


def _lstat(path: Path) -> os.stat_result | None:
    """os.lstat, or None when nothing is there (or a part of the path is a file)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def check_output_path(path: str | Path, flag: str = "--out", inputs: tuple = (), *, folder: bool = True) -> Path:
    """Refuse, with one line naming ``flag``, an output path that cannot be medaug's, before any work:
    a new name too long for the file system, a file there (``folder``) or a folder there (a file output),
    a file in place of one of its folders, an overlap with one of ``inputs`` (the data), a folder inside
    what looks like a dataset (image class folders beside it), a place inside a medaug cache, samples or
    report folder. Writes nothing; returns the path (``~`` expanded)."""
    path = Path(path).expanduser()
    limit = _name_max(path) - NAME_ROOM
    for part in [p for p in path.parents if not os.path.lexists(p)][::-1] + [path]:
        if len(part.name.encode()) > limit:
            raise MedaugError(f"{flag} {path}: the name {part.name[:24]}... is {len(part.name.encode())} bytes, over "
                              f"the {limit} this file system leaves medaug (its limit is {limit + NAME_ROOM}, and medaug "
                              "needs room for temporary names beside it); choose a shorter name")
    for cand in [*reversed(path.parents), path]:
        if _lstat(cand) is None:
            break
        if cand != path and not cand.is_dir():
            raise MedaugError(f"{flag} {path}: {cand} is a file, not a folder; choose another path")
        if cand == path and folder and not cand.is_dir():
            raise MedaugError(f"{flag} {path}: is a file, not a folder; give a folder path "
                              "(medaug does not replace files it did not write)")
        if cand == path and not folder and cand.is_dir():
            raise MedaugError(f"{flag} {path}: is a folder; give a file path, e.g. {path / 'out.json'}")
    full = Path(os.path.abspath(path))
    real = full.resolve()
    for src in inputs:
        src_full = Path(src).expanduser().resolve()
        if _inside(real, src_full) or (folder and _inside(src_full, real)):
            raise MedaugError(f"{flag} {path}: overlaps the input {src}; write outputs to a folder outside the data")
    data = _dataset_above(full) if folder and not (full / MARKER).is_file() else None
    if data is not None:
        raise MedaugError(f"{flag} {path}: lies inside what looks like a dataset ({data[0]} holds the image folders "
                          f"{data[1]}); write outputs outside the data (they would be read as part of it)")
    for cand in full.parents:
        try:
            marker = _marker(cand)
        except MedaugError:
            marker = None
        if marker is not None and marker["kind"] in LEAF_KINDS:
            raise MedaugError(f"{flag} {path}: lies inside medaug's {marker['kind']} folder {cand}, which medaug "
                              "replaces as a whole; choose a place outside it")
    return path


def _dataset_above(path: Path, levels: int = 1) -> tuple[Path, str] | None:
    """(folder, example) when a folder up to ``levels`` above ``path`` looks like a dataset's split or root: not a
    medaug folder, no files of its own, and two or more image folders beside the one ``path`` is in (class
    folders, e.g. ``DATA/train/`` for ``--out DATA/train/newclass``); else None."""
    child = path
    for folder in list(path.parents)[:levels]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)[:500] if folder.is_dir() else []
        except OSError:
            entries = []
        names = {e.name for e in entries}
        if not entries or MARKER in names or any(e.is_file() and not e.name.startswith(".") for e in entries):
            child = folder
            continue
        found = []
        for sub in [e for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                    and e.name != child.name][:50]:
            try:
                with os.scandir(sub.path) as it:
                    names = [e.name for _, e in zip(range(100), it)]
            except OSError:
                continue
            if MARKER not in names and any(n.lower().endswith(IMAGE_SUFFIXES) for n in names):
                found.append(sub.name)
            if len(found) >= 2:
                return folder, ", ".join(found)
        child = folder
    return None


def _inside(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b)


def _first_file_on(path: Path) -> Path | None:
    """The first existing part of ``path`` (its folders, then itself) that is not a folder, or None."""
    for cand in [*reversed(path.parents), path]:
        st = _lstat(cand)
        if st is None:
            return None
        if not cand.is_dir():
            return cand
    return None


def _mkdir(folder: Path) -> None:
    """``mkdir -p``, with a file in the way as one line naming it."""
    if folder.is_dir():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _first_file_on(folder)
        raise MedaugError(f"{folder}: {blocker or folder} is a file, not a folder; move it or choose another path") from None


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """An OSError in the block names ``path``, the output the user gave (not a temporary file inside it; a full
    disk fails ``write()``, which names no file at all)."""
    try:
        yield
    except OSError as exc:
        raise _named(exc, Path(path)) from None


# ---------------------------------------------------------------------------------------------
# the marker


def _bad_path(rel: Any) -> str | None:
    """Why ``rel`` is not a plain relative path inside a folder (None when it is)."""
    if not isinstance(rel, str):
        return f"path {rel!r} is not a string"
    if rel in ("", "."):
        return f"empty path {rel!r}"
    if rel.startswith("/") or PurePosixPath(rel).is_absolute():
        return f"absolute path {rel!r}"
    if "\x00" in rel or any(part in ("", ".", "..") for part in rel.split("/")):
        return f"path {rel!r} leaves the folder or is not plain"
    if rel.split("/")[-1] == MARKER:
        return f"path {rel!r} names the marker itself"
    return None


def _bad_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return f"entry {rec!r} is not a record"
    why = _bad_path(rec.get("path"))
    if why:
        return why
    keys = set(rec) - {"path"}
    if keys == {"sha256", "size"}:
        if not (isinstance(rec["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", rec["sha256"])):
            return f"sha256 of {rec['path']!r} is not 64 hex digits"
        if isinstance(rec["size"], bool) or not isinstance(rec["size"], int) or rec["size"] < 0:
            return f"size of {rec['path']!r} is not a byte count"
        return None
    if keys in ({"folder"}, {"legacy"}) and rec[keys.pop()] is True:
        return None
    return f"entry {rec!r} is not a file record (path, sha256, size), a folder record (path, folder: true) or (path, legacy: true)"


def _marker(folder: Path) -> dict | None:
    """The validated marker of ``folder`` ({kind, entries: [records]}), None when it has none; a malformed one
    is refused with one line. An older medaug's names become ``{"path": name, "legacy": True}`` records."""
    path = Path(folder) / MARKER
    st = _lstat(path)
    if st is None:
        return None
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "not a regular file"
    else:
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            value, why = None, "not JSON"
        if why is None:
            why, value = _check_marker(value)
    if why:
        raise MedaugError(f"{path}: not a valid medaug marker ({why}); medaug acts on no such file: choose another "
                          f"folder, or delete {folder} yourself if nothing in it is yours")
    return value


def _check_marker(value: Any) -> tuple[str | None, dict | None]:
    if not isinstance(value, dict):
        return "not a JSON object", None
    kind, fmt, entries = value.get("kind"), value.get("format", 1), value.get("entries")
    if kind not in KINDS:
        return f"kind {kind!r} is not one of medaug's", None
    if fmt not in (1, FORMAT) or isinstance(fmt, bool):
        return f"format {fmt!r} is not one this medaug reads (a newer medaug's?)", None
    if not isinstance(entries, list):
        return f"entries is {type(entries).__name__}, not a list", None
    records = []
    for entry in entries:
        if fmt == 1:  # an older medaug: top-level names, no fingerprint
            why = _bad_path(entry) or ("/" in entry and f"path {entry!r} is not a top-level name")
            if why:
                return why, None
            records.append({"path": entry, "legacy": True})
        else:
            why = _bad_record(entry)
            if why:
                return why, None
            records.append(dict(entry))
    return None, {"kind": kind, "entries": records}


def _dump(marker: dict) -> str:
    entries = sorted(marker["entries"], key=lambda r: (r["path"], json.dumps(r, sort_keys=True)))
    unique = [r for i, r in enumerate(entries) if i == 0 or r != entries[i - 1]]
    lines = ",\n".join(" " + json.dumps(r) for r in unique)
    head = json.dumps({"kind": marker["kind"], "format": FORMAT})[:-1]
    return f"{head}, \"entries\": [\n{lines}\n]}}\n" if unique else f"{head}, \"entries\": []}}\n"


def _write_marker(folder: Path, marker: dict) -> None:
    """Write ``folder``'s marker when it changed (reading a finished folder writes nothing)."""
    text = _dump(marker)
    path = folder / MARKER
    try:
        if path.is_file() and path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    _atomic(path, lambda fh: fh.write(text.encode()), note=False)


def owned(path: str | Path, kind: str | None = None) -> bool:
    """Whether ``path`` is a folder medaug claimed (of ``kind``, when given)."""
    try:
        marker = _marker(Path(path)) if Path(path).is_dir() else None
    except MedaugError:
        return False
    return marker is not None and (kind is None or marker["kind"] == kind)


def _owner(folder: Path, depth: int = 4) -> Path | None:
    """The nearest folder at or above ``folder`` (up to ``depth`` levels) that holds a marker; None inside a
    temporary folder (what is built there is recorded when it is moved into place)."""
    for cand in [folder, *folder.parents][:depth]:
        if TMP in cand.name:
            return None
        if (cand / MARKER).is_file():
            return cand
    return None


def _update(owner: Path, rel: str, records: list[dict]) -> None:
    """``owner``'s marker with ``rel``'s records replaced by ``records`` (written only when that changes it)."""
    marker = _marker(owner)
    if marker is None:
        return
    marker["entries"] = [e for e in marker["entries"] if e["path"] != rel] + records
    _write_marker(owner, marker)


def record(path: str | Path) -> None:
    """Record the folder ``path`` (a medaug folder with its own marker, e.g. a run in an experiment) in the
    marker of the medaug folder above it, if any."""
    path = Path(os.path.abspath(path))
    owner = _owner(path.parent)
    if owner is None:
        return
    rel = path.relative_to(owner).as_posix()
    marker = _marker(owner)
    if marker is not None and {"path": rel, "folder": True} not in marker["entries"]:
        _update(owner, rel, [{"path": rel, "folder": True}])


# ---------------------------------------------------------------------------------------------
# fingerprints

_KNOWN: dict[str, tuple[int, int, int, str]] = {}  # abs path -> (inode, size, mtime_ns, sha256) of files hashed here


def _sha(path: Path, st: os.stat_result) -> str:
    key = os.path.abspath(path)
    known = _KNOWN.get(key)
    if known and known[:3] == (st.st_ino, st.st_size, st.st_mtime_ns):
        return known[3]
    sha = file_digest(path, "sha256")
    _KNOWN[key] = (st.st_ino, st.st_size, st.st_mtime_ns, sha)
    return sha


def _fingerprint(path: Path, remember: bool = True) -> dict:
    st = os.stat(path)
    return {"sha256": _sha(path, st) if remember else file_digest(path, "sha256"), "size": st.st_size}


def _matching(path: Path, st: os.stat_result | None, records: list[dict]) -> dict | None:
    """The record of ``records`` whose fingerprint ``path``'s bytes match (a regular file only), or None."""
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    sized = [r for r in records if r.get("size") == st.st_size and "sha256" in r]
    if not sized:
        return None
    sha = _sha(path, st)
    return next((r for r in sized if r["sha256"] == sha), None)


def _walk(folder: Path, rel: str) -> tuple[Path, os.stat_result | str]:
    """``folder/rel`` and its lstat, or "missing" / "symlink" when it is absent or reached through a symlink."""
    cur, parts = folder, rel.split("/")
    for i, part in enumerate(parts):
        cur = cur / part
        st = _lstat(cur)
        if st is None:
            return cur, "missing"
        if stat.S_ISLNK(st.st_mode):
            return cur, "symlink"
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return cur, "missing"
    return cur, st


def _owned_entries(path: str | Path) -> tuple[Path, str, list[dict]] | None:
    """The medaug folder above ``path``, ``path`` relative to it, and its marker's entries for that path."""
    path = Path(os.path.abspath(path))
    owner = _owner(path.parent)
    if owner is None:
        return None
    rel = path.relative_to(owner).as_posix()
    return owner, rel, [e for e in _marker(owner)["entries"] if e["path"] == rel]


def provable(path: str | Path) -> bool:
    """Whether the file ``path`` is one medaug wrote and nobody changed since (its marker's fingerprint)."""
    owned = _owned_entries(path)
    if owned is None:
        return False
    owner, rel, entries = owned
    target, st = _walk(owner, rel)
    return not isinstance(st, str) and _matching(target, st, entries) is not None


def recorded(path: str | Path) -> bool:
    """Whether the marker of the medaug folder above ``path`` holds a fingerprint of it."""
    owned = _owned_entries(path)
    return owned is not None and any("sha256" in e for e in owned[2])


def _not_yours(path: Path) -> MedaugError:
    return MedaugError(f"{path}: exists and medaug cannot prove it wrote it (not in the folder's {MARKER}, written by "
                       "an older medaug without a fingerprint, or changed since); move it away, or choose another "
                       "output (medaug never replaces what it did not write)")


def check_replaceable(*paths: str | Path) -> None:
    """Refuse, before any work, files a command will rewrite that exist and are not provably medaug's."""
    for path in paths:
        if os.path.lexists(path) and not provable(path):
            raise _not_yours(Path(path))


# ---------------------------------------------------------------------------------------------
# atomic writes


def _tmp_name(name: str) -> str:
    return f".{name[:64]}.{os.getpid()}."


def _install_file(tmp: Path, path: Path, note: bool, overwrite: bool) -> None:
    """Move the finished temporary file ``tmp`` to ``path``: refused when ``path`` holds a file medaug cannot
    prove it wrote (unless ``overwrite`` or the bytes are the same); the new fingerprint is recorded first,
    beside the one of the file it replaces, so an interrupted move leaves no unrecorded file."""
    if not note:
        os.replace(tmp, path)
        return
    new = _fingerprint(tmp, remember=False)
    given, path = path, Path(os.path.abspath(path))
    owner = _owner(path.parent)
    rel = path.relative_to(owner).as_posix() if owner is not None else None
    marker = _marker(owner) if owner is not None else None
    records = [e for e in marker["entries"] if e["path"] == rel] if marker else []
    st = _lstat(path)
    keep = []
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise MedaugError(f"{given}: is a folder; give a file path")
        current = _matching(path, st, records)
        if current is not None:
            keep = [current]
        elif not overwrite and not (stat.S_ISREG(st.st_mode) and _fingerprint(path, remember=False) == new):
            raise _not_yours(given)
    if marker is not None:
        _update(owner, rel, keep + [{"path": rel, **new}])
    os.replace(tmp, path)
    st = os.stat(path)
    _KNOWN[str(path)] = (st.st_ino, st.st_size, st.st_mtime_ns, new["sha256"])


def _atomic(path: Path, write: Callable, note: bool = True, overwrite: bool = False) -> None:
    """Write ``path`` through ``write(binary file)`` into a temporary file, then move it into place (see
    :func:`_install_file`); nothing is left behind on failure, and an OSError names ``path``."""
    path = Path(path)
    _mkdir(path.parent)
    if path.is_dir():
        raise MedaugError(f"{path}: is a folder; give a file path")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_name(path.name), suffix=TMP, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # the mode a plain open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _install_file(Path(tmp), path, note, overwrite)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (not the temporary file it failed on)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def write_json(path: Path, obj: Any, overwrite: bool = False) -> None:
    _atomic(path, lambda fh: fh.write((json.dumps(obj, indent=1, default=_jsonable) + "\n").encode()), overwrite=overwrite)


def write_text(path: Path, text: str, overwrite: bool = False) -> None:
    _atomic(path, lambda fh: fh.write(text.encode()), overwrite=overwrite)


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
    _mkdir(path.parent)
    if path.is_dir():
        raise MedaugError(f"{path}: is a folder; give a file path")
    tmp = path.with_name(f"{_tmp_name(path.stem)[:-1]}{TMP}{path.suffix}")
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        _install_file(tmp, path, True, False)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_file(path: str | Path) -> None:
    """Delete the file ``path`` if medaug can prove it wrote it (e.g. an old epoch's weights), with its record."""
    path = Path(os.path.abspath(path))
    owner = _owner(path.parent)
    if owner is None or not provable(path):
        return
    path.unlink()
    _update(owner, path.relative_to(owner).as_posix(), [])


def output_file(path: str | Path, flag: str, overwrite: bool = False) -> Path:
    """Check an explicit output file (``--json FILE``, ``--fix-list FILE``) before any work: refused when it is a
    folder, lies below a file, or exists and is not provably medaug's, unless ``overwrite``."""
    path = check_output_path(path, flag, folder=False)
    if os.path.lexists(path) and not overwrite and not provable(path):
        raise MedaugError(f"{flag} {path}: exists, and medaug cannot prove it wrote it; --overwrite to replace it, "
                          "or choose another path")
    return path


def preallocate(path: Path) -> None:
    """Reserve the disk blocks of the file ``path`` (a memory map): a full disk is then an OSError here, not a
    crash (SIGBUS) when a page of the map is written."""
    with writing(path), open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise OSError(exc.errno, exc.strerror, str(path)) from None


# ---------------------------------------------------------------------------------------------
# claiming, clearing, installing


def output_folder(path: str | Path, kind: str, *, inputs: tuple = (), overwrite: bool = False, flag: str = "--out") -> Path:
    """Claim ``path`` as medaug's output folder of ``kind`` (created if missing); returns it.

    Refused with one line naming ``flag``: see :func:`check_output_path`, plus a malformed marker, a medaug
    folder of another kind, a folder holding files medaug did not write. ``overwrite``: delete what medaug
    can prove it wrote there first. Stale temporary files of killed runs are removed. A claim that changes
    nothing writes nothing.
    """
    path = check_output_path(path, flag, inputs)
    marker = _marker(path) if path.is_dir() else None
    if marker is None and path.is_dir():
        marker = _adopt(path, kind, flag)
    elif marker is not None and marker["kind"] != kind:
        raise MedaugError(f"{flag} {path}: holds medaug's {marker['kind']} output, not a {kind}; choose another {flag}")
    marker = marker or {"kind": kind, "entries": []}
    created = [p for p in [*reversed(path.parents), path] if not os.path.lexists(p)]
    try:
        _mkdir(path)
        if overwrite:
            marker["entries"] = clear(path, marker)
        _clean_tmp(path)
        _write_marker(path, marker)
        record(path)  # in the folder above, when that is medaug's too (a run inside an experiment)
    except BaseException:  # e.g. a full disk: the folders this claim created go again
        if created:
            with contextlib.suppress(OSError):
                (path / MARKER).unlink(missing_ok=True)
                for folder in reversed(created):
                    folder.rmdir()
        raise
    return path


def _files(folder: Path, limit: int = 100_000) -> list[str]:
    """Relative paths of everything below ``folder`` that is not a folder (symlinks not followed)."""
    out = []
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.append(Path(root, name).relative_to(folder).as_posix())
            if len(out) >= limit:
                return out
    return out


def _layout_match(rel: str, pattern: str) -> bool:
    a, b = rel.split("/"), pattern.split("/")
    return len(a) == len(b) and all(fnmatchcase(x, y) for x, y in zip(a, b))


def _adopt(path: Path, kind: str, flag: str) -> dict | None:
    """A folder without a marker: None when it holds no file; a marker of an older medaug's (legacy,
    unprovable) top-level entries when every file matches ``kind``'s layout; else refused."""
    files = [f for f in _files(path) if not _stale_tmp(f.rsplit("/", 1)[-1])]
    if not files:
        return None
    evidence, patterns = LAYOUT.get(kind, (None, ()))
    foreign = [f for f in files if not any(_layout_match(f, p) for p in patterns)]
    if evidence is None or foreign or not any(_layout_match(f, evidence) for f in files):
        shown = foreign or files
        example = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
        raise MedaugError(f"{flag} {path}: the folder holds files medaug did not write ({example}); "
                          "choose a new or empty folder (medaug never deletes what it did not write)")
    names = sorted({f.split("/")[0] for f in files})
    return {"kind": kind, "entries": [{"path": n, "legacy": True} for n in names]}


def vouch_layout(folder: str | Path, kind: str) -> list[str]:
    """Record the current fingerprint of every file in the claimed ``folder`` that matches ``kind``'s layout and
    that medaug cannot prove it wrote (an older medaug's entry, or a file changed since); returns their names.

    Only for folders that lie in medaug's own cache root under a name medaug chose (the automatic data cache,
    ``$MEDAUG_CACHE/<dataset>-<hash>/px<size>``): nothing there is a user's, so an older medaug's cache may be
    decoded again in place. Files outside the layout stay unprovable (and block a replacement)."""
    folder = Path(folder)
    marker = _marker(folder)
    if marker is None:
        return []
    _, patterns = LAYOUT[kind]
    vouched = [rel for rel in _files(folder) if rel != MARKER and not _stale_tmp(rel.rsplit("/", 1)[-1])
               and any(_layout_match(rel, p) for p in patterns) and not provable(folder / rel)]
    if vouched:
        marker["entries"] = ([e for e in marker["entries"] if e["path"] not in vouched and not e.get("legacy")]
                             + [{"path": rel, **_fingerprint(folder / rel)} for rel in vouched])
        _write_marker(folder, marker)
    return vouched


def _nested(folder: Path, marker: dict) -> None:
    """Read every nested marker below ``folder`` first: a malformed one is refused before anything is deleted."""
    for rec in marker["entries"]:
        if rec.get("folder"):
            target, st = _walk(folder, rec["path"])
            if not isinstance(st, str) and stat.S_ISDIR(st.st_mode):
                sub = _marker(target)
                if sub is not None:
                    _nested(target, sub)


def clear(folder: Path, marker: dict | None = None, quiet: bool = False) -> list[dict]:
    """Delete what medaug can prove it wrote in ``folder`` (and in the medaug folders nested in it); returns
    the records to keep (an older medaug's entries, nested folders still holding other files). Files kept
    that medaug recorded (changed since, or an older medaug's) are named in one note on stderr."""
    folder = Path(folder)
    marker = marker if marker is not None else _marker(folder)
    if marker is None:
        return []
    _nested(folder, marker)
    kept: list[str] = []
    keep = _clear(folder, marker, kept)
    if kept and not quiet:
        shown = "; ".join(kept[:3]) + (f"; and {len(kept) - 3} more" if len(kept) > 3 else "")
        print(f"note: kept {len(kept)} file(s) in {folder} that medaug cannot prove it wrote: {shown} "
              "(delete them yourself if they are not needed)", file=sys.stderr)
    return keep


def _clear(folder: Path, marker: dict, kept: list[str]) -> list[dict]:
    by_path: dict[str, list[dict]] = {}
    for rec in marker["entries"]:
        by_path.setdefault(rec["path"], []).append(rec)
    keep = []
    for rel, recs in sorted(by_path.items()):
        target, st = _walk(folder, rel)
        if st == "missing":
            continue
        if st == "symlink":
            kept.append(f"{rel} (reached through a symlink)")
            continue
        if any(r.get("folder") for r in recs):
            if not stat.S_ISDIR(st.st_mode):
                continue  # a file where medaug's folder was: not medaug's
            sub = _marker(target)
            if sub is not None:
                sub["entries"] = _clear(target, sub, kept)
                if _only_marker(target):
                    (target / MARKER).unlink()
                else:
                    _write_marker(target, sub)
                    keep.append({"path": rel, "folder": True})
            _prune(target, folder)
            continue
        if _matching(target, st, recs) is not None:
            target.unlink()
            _KNOWN.pop(str(Path(os.path.abspath(target))), None)
            _prune(target.parent, folder)
        elif any(r.get("legacy") for r in recs):
            keep.append({"path": rel, "legacy": True})
            kept.append(f"{rel} (an older medaug's, no fingerprint)")
        else:
            kept.append(f"{rel} (changed since medaug wrote it)")
    return keep


def _only_marker(folder: Path) -> bool:
    return _files(folder, 2) == [MARKER]


def _prune(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    folder, stop = Path(os.path.abspath(folder)), Path(os.path.abspath(stop))
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def remove_output(folder: str | Path) -> None:
    """Undo a claim whose command failed before writing a result: what medaug wrote there, the marker and the
    folder when nothing else is in it. Never raises (it runs while another error is on its way to the user)."""
    folder = Path(folder)
    try:
        marker = _marker(folder)
        if marker is None:
            return
        marker["entries"] = clear(folder, marker, quiet=True)
        if _only_marker(folder):
            (folder / MARKER).unlink()
            _prune(folder, folder.parent)
        else:
            _write_marker(folder, marker)
    except (OSError, MedaugError):
        pass


_TMP_PID = re.compile(r"^\..*\.(\d+)\.(?:[a-z0-9_]+\.)?medaug-tmp(?:\.\w+)?$")


def _stale_tmp(name: str) -> bool:
    """A temporary file or folder of a medaug process that is no longer running (``.NAME.PID[.RANDOM].medaug-tmp``;
    a name without a pid is an older medaug's)."""
    if not name.startswith(".") or TMP not in name:
        return False
    match = _TMP_PID.match(name)
    return match is None or not _alive(int(match.group(1)))


def _clean_tmp(folder: Path) -> None:
    """Delete temporary files of killed medaug processes in ``folder`` (best effort: a read-only folder keeps them)."""
    try:
        children = [c for c in folder.iterdir() if _stale_tmp(c.name)]
    except OSError:
        return
    for child in children:
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError:
            pass


def tmp_sibling(path: Path) -> Path:
    """A temporary name beside ``path`` for building a folder, then moving it into place; the temporary
    folders of killed processes (their pid no longer running) are removed first."""
    path = Path(path)
    for old in path.parent.glob(f".{path.name[:64]}.*{TMP}") if path.parent.is_dir() else ():
        if _stale_tmp(old.name):
            shutil.rmtree(old, ignore_errors=True)
    return path.with_name(f"{_tmp_name(path.name)[:-1]}{TMP}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def install(tmp: Path, folder: Path, last: tuple[str, ...] = ("meta.json", "samples.json", "report.md")) -> None:
    """Move the files of the finished temporary folder ``tmp`` into the claimed ``folder``, replacing what medaug
    wrote there before, the names in ``last`` last; ``tmp`` is removed. Refused before anything changes when a
    new file would land on a file (or below one) medaug cannot prove it wrote."""
    tmp, folder = Path(tmp), Path(folder)
    marker = _marker(folder)
    if marker is None:
        raise MedaugError(f"{folder}: not a folder medaug claimed; claim it first (medaug.io_utils.output_folder)")
    files = sorted(_files(tmp), key=lambda rel: (rel in last, rel))
    recorded: dict[str, list[dict]] = {}
    for rec in marker["entries"]:
        recorded.setdefault(rec["path"], []).append(rec)
    for rel in files:
        target, st = _walk(folder, rel)
        if st == "missing":
            blocker = _first_file_on(target)
            if blocker is not None and blocker != folder / rel:
                rel_block = blocker.relative_to(folder).as_posix()
                if _matching(blocker, _lstat(blocker), recorded.get(rel_block, [])) is None:
                    raise _not_yours(blocker)
            continue
        if st == "symlink" or stat.S_ISDIR(st.st_mode) or _matching(target, st, recorded.get(rel, [])) is None:
            raise _not_yours(target)
    kept = clear(folder, marker)
    fingerprints = {rel: _fingerprint(tmp / rel) for rel in files}
    marker["entries"] = kept + [{"path": rel, **fp} for rel, fp in fingerprints.items()]
    _write_marker(folder, marker)  # first: an interrupted move leaves no unrecorded file
    for rel in files:
        _mkdir((folder / rel).parent)
        os.replace(tmp / rel, folder / rel)
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged(folder: Path, done: str) -> Iterator[Path]:
    """A temporary sibling of the claimed ``folder`` to write its new content into, installed when the block
    ends (:func:`install`); on failure it is removed, and a folder left without its ``done`` file is unclaimed."""
    folder = Path(folder)
    tmp = tmp_sibling(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(folder):
            tmp.mkdir(parents=True)
            yield tmp
            install(tmp, folder)
    except BaseException:
        if not (folder / done).is_file():
            remove_output(folder)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
