"""MedMNIST by name through the official ``medmnist`` package: ``medaug data fetch FLAG`` and ``--data medmnist:FLAG``.

The package is the catalogue and the reference reader: its ``INFO`` gives each set's file names,
Zenodo URLs, MD5s, class names and sample counts, and its 2D dataset class (``download=False``)
must read a file before medaug uses it. medaug downloads with ``torch.hub.download_url_to_file``
and checks the MD5 from ``INFO``, because the package's own download goes through torchvision,
which medaug does not install (only ``medmnist.info`` and ``medmnist.dataset`` are imported: numpy,
PIL and torch). Training then reads the same ``.npz`` with the MedMNIST reader
(``readers/medmnist.py``). Install: ``pip install medmnist --no-deps``; importing it creates its
default root ``~/.medmnist`` when missing.

``--data medmnist:pneumoniamnist`` resolves to ``ROOT/pneumoniamnist[_SIZE].npz`` (ROOT:
``$MEDAUG_MEDMNIST`` or ``~/.medmnist``), the smallest published size >= the training size
(``medmnist:pneumoniamnist_64`` names one), downloaded first when it is not there.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..errors import MedaugError
from ..io_utils import file_digest

PREFIX = "medmnist:"
SIZES = (28, 64, 128, 224)
INSTALL = "pip install medmnist --no-deps"


def _table() -> dict:
    try:
        from medmnist.info import INFO
    except ImportError:
        raise MedaugError(f"MedMNIST by name needs the official `medmnist` package: {INSTALL} "
                          "(or download the .npz from https://medmnist.com and pass its path to --data)") from None
    return INFO


def flags_2d() -> list[str]:
    """The 2D MedMNIST sets medaug can train on (single-label)."""
    return sorted(k for k, v in _table().items() if not k.endswith("3d") and "multi-label" not in v["task"])


def info(flag: str) -> dict:
    """The package's INFO entry of a 2D single-label set; a clear error for unknown, 3D or multi-label ones."""
    table, flag = _table(), flag.lower()
    if flag not in table:
        raise MedaugError(f"unknown MedMNIST set {flag!r}: choose one of {', '.join(flags_2d())}")
    if flag.endswith("3d"):
        raise MedaugError(f"{flag} is a 3D MedMNIST set; medaug trains 2D classifiers: choose one of {', '.join(flags_2d())}")
    if "multi-label" in table[flag]["task"]:
        raise MedaugError(f"{flag} is multi-label ({table[flag]['task']}); medaug trains single-label classifiers: "
                          f"choose one of {', '.join(flags_2d())}")
    return table[flag]


def class_names(flag: str, n: int) -> list[str] | None:
    """Class names from the package's INFO for ``flag`` (labels 0..n-1), or None without the package or the set."""
    try:
        from medmnist.info import INFO
    except ImportError:
        return None
    labels = INFO.get(flag, {}).get("label", {})
    if any(str(i) not in labels for i in range(n)):
        return None
    return [str(labels[str(i)]) for i in range(n)]


def default_root() -> Path:
    return Path(os.environ.get("MEDAUG_MEDMNIST") or Path.home() / ".medmnist").expanduser()


def file_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def read_with_package(flag: str, size: int, root: Path) -> dict[str, int]:
    """Open every split with the package's dataset class (no download); returns images per split.

    The package checks the file name under ``root`` and, on ``len``, that each split has INFO's count.
    """
    import medmnist.dataset as datasets

    entry, path = info(flag), root / file_name(flag, size)
    cls = getattr(datasets, entry["python_class"])
    counts = {}
    for split in ("train", "val", "test"):
        try:
            counts[split] = len(cls(split=split, root=str(root), size=size, download=False))
        except AssertionError:
            raise MedaugError(f"{path}: its {split} split does not have the {entry['n_samples'][split]} images the "
                              f"medmnist package expects; fetch it again into an empty --root") from None
        except Exception as exc:  # the package raises RuntimeError/KeyError/zip errors alike
            raise MedaugError(f"{path}: the medmnist package cannot read it ({exc.__class__.__name__}: {exc}); "
                              "fetch it again into an empty --root") from None
    return counts


def fetch(flag: str, size: int = 28, root: str | Path | None = None, download: bool = True,
          progress: bool = True) -> tuple[Path, bool, dict[str, int]]:
    """``ROOT/<flag>[_size].npz``, downloaded (MD5-checked) when missing; read back by the package.

    Returns (path, downloaded, images per split). An existing file is never replaced or modified.
    """
    entry = info(flag)
    flag = flag.lower()
    if size not in SIZES:
        raise MedaugError(f"--size {size}: MedMNIST publishes {', '.join(map(str, SIZES))} px")
    root = Path(root).expanduser() if root else default_root()
    path = root / file_name(flag, size)
    downloaded = False
    if not path.is_file():
        if not download:
            raise MedaugError(f"{path}: not there; fetch it with `medaug data fetch {flag} --size {size} --root {root}`")
        key = "" if size == 28 else f"_{size}"
        url, md5 = entry[f"url{key}"], entry[f"MD5{key}"]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedaugError(f"--root {root}: cannot create it ({exc.strerror}); choose a writable folder") from None
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        import torch.hub

        try:
            torch.hub.download_url_to_file(url, str(part), progress=progress)
            got = file_digest(part, "md5")
            if got != md5:
                raise MedaugError(f"{url}: downloaded file has MD5 {got}, not the published {md5}; try again later")
            part.replace(path)
        except OSError as exc:
            raise MedaugError(f"downloading {url} failed ({exc.__class__.__name__}: {exc}); check the connection, or "
                              f"download it by hand into {root}") from None
        finally:
            part.unlink(missing_ok=True)
        downloaded = True
    return path, downloaded, read_with_package(flag, size, root)


def parse_spec(data: str) -> tuple[str, int | None] | None:
    """'medmnist:pneumoniamnist' -> ('pneumoniamnist', None); 'medmnist:pneumoniamnist_64' -> (..., 64); else None."""
    if not str(data).lower().startswith(PREFIX):
        return None
    name = str(data)[len(PREFIX):].strip().lower()
    m = re.fullmatch(r"(.+?)_(\d+)", name)
    if m and int(m.group(2)) in SIZES:
        return m.group(1), int(m.group(2))
    return name, None


def spec_name(data: str) -> str | None:
    """The dataset name of a ``medmnist:`` spec (for run folders), else None."""
    spec = parse_spec(data)
    return None if spec is None else spec[0] + (f"_{spec[1]}" if spec[1] else "")


def resolve(data: str | Path, size: int | None = None) -> Path:
    """A ``medmnist:FLAG[_SIZE]`` spec -> the local .npz (fetched when missing); any other path as is."""
    spec = parse_spec(str(data))
    if spec is None:
        return Path(data)
    flag, file_size = spec
    if file_size is None:
        file_size = next((s for s in SIZES if s >= (size or 28)), SIZES[-1])
    info(flag)  # unknown, 3D and multi-label sets fail here
    path = default_root() / file_name(flag, file_size)
    if path.is_file():  # the reader checks it; the package read it when it was fetched
        return path
    print(f"{data}: fetching {path.name} into {default_root()} (MEDAUG_MEDMNIST sets the folder)", file=sys.stderr)
    return fetch(flag, file_size, default_root(), progress=True)[0]
