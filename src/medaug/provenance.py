"""Provenance of a run: the small block ``train.fit`` writes into metrics.json: the git commit of the
medaug source tree (when it is a git checkout), package versions, the Python version and a device
string without the host name."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout medaug is imported from; (None, None) if not a checkout."""
    pkg = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    # the package must be tracked by that repository (not a site-packages copy inside some other repo)
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit, (bool(status) if status is not None else None)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_string(device) -> str:
    """'cpu x86_64, 2 threads' or 'cuda NVIDIA H100 80GB HBM3, CUDA 12.8, cuDNN 91002' (no host name)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return (f"cuda {torch.cuda.get_device_name(dev)}, CUDA {torch.version.cuda}, "
                f"cuDNN {torch.backends.cudnn.version()}")
    return f"{dev.type} {platform.machine()}, {torch.get_num_threads()} threads"


def provenance(device="cpu") -> dict:
    """The provenance block of metrics.json (tiny: a commit, versions, a device string)."""
    import torch

    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "python": platform.python_version(),
            "packages": {"torch": torch.__version__, "numpy": _version("numpy"), "monai": _version("monai")},
            "device": device_string(device), "threads": torch.get_num_threads()}
