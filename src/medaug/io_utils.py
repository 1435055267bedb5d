"""Atomic writes: a result file is either complete or absent."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
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


def _jsonable(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
