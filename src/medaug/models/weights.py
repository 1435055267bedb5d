"""Local pretrained weights: load a state dict safely (``weights_only=True``), explain mismatches.

Accepted: medaug and MONAI checkpoints of the same network, and torchvision ImageNet state dicts
of DenseNet-121/169 and ResNet-18/50 (``densenet121-a639ec97.pth``, ``resnet50-0676ba61.pth`` and
their newer releases), translated into the MONAI networks:

- DenseNet: ``denselayerN.norm1`` / old ``denselayerN.norm.1`` -> ``denselayerN.layers.norm1``
  (likewise relu, conv), ``classifier`` -> ``class_layers.out``; ResNet keys are already MONAI's.
- Tensors the torchvision file lacks but that change nothing: BatchNorm ``num_batches_tracked``
  (old files) keeps the model's value; the bias of MONAI's ResNet shortcut convolution
  (torchvision's has none) is set to zero, which computes the same function.
- First convolution: RGB kernels into a 1-channel model are summed over the colour axis (a gray
  image x as RGB (x, x, x) gives the same response); 1-channel kernels into a 3-channel model are
  repeated and divided by 3.
- The final layer is re-initialised when its class count differs (ImageNet's 1000 classes).
"""

from __future__ import annotations

import re
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

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file can raise anything here
            raise MedaugError(f"--pretrained {path}: not a loadable safetensors file ({exc.__class__.__name__}); "
                              "save the weights again") from None
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


# torchvision name -> MONAI name (applied only to keys the model does not have)
TORCHVISION_RENAMES = [
    (re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\."), r"\1.layers.\2\3."),
    (re.compile(r"^classifier\."), "class_layers.out."),
]


def from_torchvision(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with torchvision names renamed to the model's, no-op tensors filled, first conv adapted."""
    renamed = {}
    for key, value in state.items():
        if key not in own:
            for pattern, repl in TORCHVISION_RENAMES:
                new = pattern.sub(repl, key)
                if new != key and new in own:
                    key = new
                    break
        renamed[key] = value
    for key, value in own.items():
        if key in renamed:
            continue
        if key.endswith("num_batches_tracked"):
            renamed[key] = value
        elif key.endswith("downsample.0.bias") and key.replace(".bias", ".weight") in renamed:
            renamed[key] = torch.zeros_like(value)
    first = next((k for k, v in own.items() if v.ndim == 4), None)  # the first convolution's weight
    if first in renamed:
        w, target = renamed[first], own[first]
        if w.ndim == 4 and w.shape[0] == target.shape[0] and w.shape[2:] == target.shape[2:] and w.shape[1] != target.shape[1]:
            if target.shape[1] == 1:
                renamed[first] = w.sum(dim=1, keepdim=True)
            elif w.shape[1] == 1:
                renamed[first] = w.repeat(1, target.shape[1], 1, 1) / target.shape[1]
    return renamed


def load_pretrained(model: nn.Module, path: str | Path, arch: str = "", head: str = "") -> list[str]:
    """Load ``path`` into ``model``; a missing, unexpected or mis-shaped key is a clear error.

    Exception: the final layer ``head`` (e.g. 'fc') keeps its fresh initialisation when its shape
    differs (weights trained for another number of classes). Returns the keys left so.
    """
    own = model.state_dict()
    state = from_torchvision(read_state_dict(path), own)
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
