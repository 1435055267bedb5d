"""Local pretrained weights: load a state dict safely (``weights_only=True``), explain mismatches."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import MedaugError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .pt/.pth (plain or {'model'|'state_dict': ...}) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise MedaugError(f"--pretrained {path}: file not found; give the path of a local checkpoint (nothing is downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise MedaugError(f"--pretrained {path}: not a loadable weights file ({exc.__class__.__name__}); save a state_dict") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MedaugError(f"--pretrained {path}: expected a dict of tensors (a state_dict)")
    return obj


def load_pretrained(model: nn.Module, path: str | Path, arch: str = "", head: str = "") -> list[str]:
    """Load ``path`` into ``model``; a missing, unexpected or mis-shaped key is a clear error.

    Exception: the final layer ``head`` (e.g. 'fc') keeps its fresh initialisation when its shape
    differs (weights trained for another number of classes). Returns the keys left so.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    fresh = [k for k in own if head and k.startswith(head + ".") and k in state and state[k].shape != own[k].shape]
    state = {k: (own[k] if k in fresh else v) for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        def show(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"missing {show(missing)}" if missing else "", f"unexpected {show(unexpected)}" if unexpected else "",
                 f"shape mismatch {show(shape)}" if shape else ""]
        raise MedaugError(f"--pretrained {path}: does not fit model {arch!r}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)
    return fresh
