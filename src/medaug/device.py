"""All device, precision and determinism handling lives here, so CPU tests exercise the CUDA code path."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from .errors import MedaugError


def distributed() -> tuple[int, int]:
    """(rank, world size) of a torchrun launch; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> None:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU) once."""
    import torch.distributed as dist

    if distributed()[1] > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def barrier() -> None:
    """Wait for every torchrun process (nothing to wait for when alone)."""
    if distributed()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda:1', 'cpu' as given (checked).

    Under torchrun, 'auto' and 'cuda' mean this process's GPU (LOCAL_RANK).
    """
    if name in ("auto", "cuda") and torch.cuda.is_available() and distributed()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise MedaugError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise MedaugError(f"--device {name!r}: medaug runs on cpu or cuda (cuda:N); use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedaugError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


def place(module: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """``module`` on ``device``; ``channels_last`` stores its 4-D weights NHWC (faster convolutions on
    recent CPUs and on tensor-core GPUs; numerically equal up to float round-off)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (for saving, copying, hooks); ``module`` otherwise."""
    return getattr(module, "module", module)


def to_full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast outputs -> float32; float32/float64 pass through unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def autocast(device: torch.device, precision: str):
    """Autocast context for 'fp32' (none), 'bf16' or 'fp16' on the given device."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise MedaugError(f"unknown precision {precision!r}: choose fp32, bf16 or fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict:
    """Every RNG state needed to resume a run bit-exactly."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {  # plain types and tensors only, so checkpoints load with weights_only=True
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def fixed_rng(device: torch.device, seed: int):
    """Run a block with torch's RNG (CPU, and ``device``'s when CUDA) seeded to ``seed``, then restore it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def available_memory(device: torch.device | None = None) -> int:
    """Bytes free for new allocations: the GPU's free memory for a CUDA device, else the host's available
    RAM (``MemAvailable`` of /proc/meminfo; total physical RAM where that file does not exist)."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 3e12 -> '2.7 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def check_memory(nbytes: int, what: str, fix: str, device: torch.device | None = None) -> None:
    """Refuse, before allocating, work whose estimated memory ``nbytes`` exceeds what the machine (or the
    CUDA ``device``) has available: one line naming ``what`` (the flag and the arithmetic), the estimate,
    the limit and the ``fix``."""
    limit = available_memory(device)
    if nbytes > limit:
        where = f"free on {device}" if device is not None and device.type == "cuda" else "available on this machine"
        raise MedaugError(f"{what} needs about {human_bytes(nbytes)} of memory, more than the {human_bytes(limit)} "
                          f"{where}; {fix}")


def check_disk(nbytes: int, folder: str | os.PathLike, what: str, fix: str) -> None:
    """Refuse, before writing, output whose estimated size ``nbytes`` exceeds the free space of the file system
    holding ``folder`` (its nearest existing parent): one line naming ``what``, the estimate, the free space and the ``fix``."""
    import shutil
    from pathlib import Path

    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if nbytes > free:
        raise MedaugError(f"{what} needs about {human_bytes(nbytes)} of disk, more than the {human_bytes(free)} free in {path}; {fix}")
