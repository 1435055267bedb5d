"""Reading a dataset: layout detection over the registered readers (:data:`medaug.data.table.READERS`)
and :func:`read_index`. Importing this module registers every reader (``mura.py`` and the files of
``readers/``); a reader imports only :mod:`medaug.data.table`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MedaugError
from . import mura, readers  # noqa: F401 - imported for their registrations
from .medmnist_hub import resolve
from .table import READERS, DataIndex

GENERIC = ("imagefolder", "csv")  # tried last: they would also match more specific layouts


def detect_format(root: Path) -> str:
    names = [n for n in READERS.names() if n not in GENERIC] + [n for n in GENERIC if n in READERS]
    for name in names:
        if READERS.create(name).detect(root):
            return name
    if root.suffix.lower() == ".csv":
        with open(root, errors="replace") as fh:
            header = fh.readline().rstrip("\r\n")
        raise MedaugError(f"{root}: CSV header {header or '(empty)'!r} names no image and label columns; "
                          "expected path,label[,group][,split] (csv) or image,label with patient_id or box columns (hipcsv)")
    tried = "; ".join(f"{name}: {_expects(name)}" for name in names)
    raise MedaugError(f"{root}: layout not recognised; none of the formats found its layout there (tried {tried}); "
                      "see README 'Datasets', or pass --format")


def _expects(name: str) -> str:
    """What reader ``name`` looks for: the first line of its module's docstring."""
    import sys

    doc = sys.modules[READERS.create(name).read.__module__].__doc__ or ""
    return (doc.strip().splitlines() or ["?"])[0].replace("``", "").rstrip(".")


def read_index(root: str | Path, fmt: str = "auto", **options) -> DataIndex:
    """Read a dataset folder (or file) into a :class:`DataIndex`; ``fmt='auto'`` detects the layout.

    ``root`` may be ``medmnist:FLAG[_SIZE]`` (see :mod:`medaug.data.medmnist_hub`; 28 px unless named).
    """
    root = resolve(root).expanduser()
    if not root.exists():
        raise MedaugError(f"{root}: no such file or folder; check the --data path")
    if not root.is_dir() and not root.is_file():
        raise MedaugError(f"{root}: not a regular file or folder (a pipe or device?); point --data at the dataset folder or file")
    if root.is_dir() and not any(root.iterdir()):
        raise MedaugError(f"{root}: the folder is empty; point --data at a dataset (or run `medaug data synth --out {root}`)")
    name = detect_format(root) if fmt == "auto" else fmt
    reader = READERS.create(name)
    index = reader.read(root, **options)
    index.source = root
    return index
