"""Run and experiment configs: dataclasses, loaded from TOML with unknown keys and bad values rejected."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .errors import MedaugError


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults suit the tiny CPU demo."""

    data: str = ""
    format: str = "auto"
    body_part: str = "all"
    crop: str = "none"  #: none | bbox (hipcsv: train on the boxed regions, one sample per box)
    split_ratios: str = "60:25:15"  #: train:valid:test, patient-disjoint, for datasets without splits
    size: int = 64  #: image side in pixels after resizing
    method: str = "none"
    method_options: dict = field(default_factory=dict)
    label: str = ""  #: the run's name in reports (metrics.json "method") when it is a named variant of `method` ('' = method)
    model: str = "tiny"
    pretrained: str = ""  #: local weights file for the classifier ('' = random init)
    train_layers: str = "all"  #: all | head (a linear probe: the backbone frozen, BatchNorm statistics too)
    in_channels: int = 1  #: 1, or 3 to repeat the gray channel for RGB-pretrained networks
    epochs: int = 15
    batch_size: int = 32
    optimizer: str = "adam"  #: adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  #: cosine | none | multistep (lr x lr_gamma at each of `milestones`)
    milestones: list = field(default_factory=list)  #: multistep: epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1  #: multistep: the factor at each milestone
    patience: int = 0  #: early stopping after this many epochs without improvement (0 = off)
    monitor: str = "auroc"  #: validation metric for best-checkpoint selection
    seed: int = 0
    split_seed: int = 0  #: seed of the patient-disjoint validation split (fixed across seeds by default)
    n_shot: int = 0  #: training images per class (0 = all)
    val_fraction: float = 0.2
    device: str = "auto"
    channels_last: bool = False  #: NHWC memory format for the classifier (faster convolutions; see docs/performance.md)
    precision: str = "fp32"  #: fp32 | bf16 | fp16 (autocast on the device)
    baseline: str = ""  #: run folder of a trained `none` model; two-stage methods start from its best checkpoint
    finetune_lr: float = 0.0  #: lr when starting from a baseline or in the fine-tuning stage (0 = use lr; stage 2: lr / 10)
    finetune_epochs: int = -1  #: stage 2 without the method after training (-1 = the method's default: pgnm 10, others 0)
    average_last: int = 3  #: stage 2 ends with the mean of its last N epochs' weights (0 = best validation epoch)
    eval_batch_size: int = 256
    cache: str = ""  #: cache folder ('' = $MEDAUG_CACHE or ~/.cache/medaug)
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self, "config")
        checks = [
            (self.size >= 16, "size must be >= 16"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two images per batch)"),
            (self.lr > 0, "lr must be > 0"),
            (self.in_channels in (1, 3), "in_channels must be 1 or 3"),
            (self.optimizer in ("adam", "sgd"), "optimizer must be adam or sgd"),
            (self.train_layers in ("all", "head"), "train_layers must be all or head"),
            (self.schedule in ("cosine", "none", "multistep"), "schedule must be cosine, none or multistep"),
            (self.schedule != "multistep" or bool(self.milestones), "schedule multistep needs milestones, e.g. [50, 75]"),
            (all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.milestones)
             and list(self.milestones) == sorted(set(self.milestones)),
             "milestones must be increasing whole epochs >= 1, e.g. [50, 75]"),
            (0 < self.lr_gamma <= 1, "lr_gamma must be in (0, 1]"),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (self.n_shot >= 0, "n_shot must be >= 0"),
            (self.crop in ("none", "bbox"), "crop must be none or bbox"),
            (self.finetune_epochs >= -1, "finetune_epochs must be >= 0 (or -1 for the method's default)"),
            (self.average_last >= 0, "average_last must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise MedaugError(f"config: {msg}")
        from .data.cache import parse_ratios

        parse_ratios(self.split_ratios)  # checked here, not only when a dataset without splits needs it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_defaults(cls) -> dict:
        """Every field's default value (without validating a config)."""
        return {f.name: field_default(f) for f in dataclasses.fields(cls)}


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one for ``default_factory`` fields)."""
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and (not default or all(_same_type(v, default[0]) for v in value))
    return isinstance(value, type(default))


_TYPES = {"int": 0, "float": 0.0, "bool": False, "str": "", "dict": {}, "list": [], "tuple": ()}


def _annotated(f: dataclasses.Field) -> tuple[list, bool] | None:
    """Example values of the types a field's annotation names ('int | None' -> [0], True), or None if unparsed."""
    names = [p.strip().split("[")[0] for p in str(f.type).split("|")]
    examples = [_TYPES.get(n) for n in names if n != "None"]
    return (examples, "None" in names) if examples and all(e is not None for e in examples) else None


def check_types(obj: Any, where: str) -> None:
    """Every field of dataclass ``obj`` has its annotated type (else its default's): float also takes int,
    bool is not an int, list elements match the default's first element."""
    for f in dataclasses.fields(obj):
        default = field_default(f)
        value = getattr(obj, f.name)
        parsed = _annotated(f)
        if parsed is not None:
            examples, optional = parsed
            if isinstance(default, (list, tuple)) and default:
                examples = [default]
            ok = (value is None and optional) or any(_same_type(value, e) for e in examples)
        elif default is dataclasses.MISSING or default is None:
            continue
        else:
            examples, ok = [default], _same_type(value, default)
        if not ok:
            e = examples[0]
            kind = type(e).__name__ + (f" of {type(e[0]).__name__}" if isinstance(e, (list, tuple)) and e else "")
            raise MedaugError(f"{where}: {f.name} should be {kind}, got {value!r}")


def from_dict(cls, values: dict[str, Any], where: str):
    """Build dataclass ``cls`` from ``values``, naming unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MedaugError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    for key, value in values.items():
        f = fields[key]
        default = field_default(f)
        expected = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise MedaugError(f"{where}: {key} should be {type(default).__name__}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise MedaugError(f"{where}: {exc}") from None
    except MedaugError as exc:  # a range check: name the file and table it came from
        raise MedaugError(f"{where}: {str(exc).removeprefix('config: ')}") from None


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MedaugError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MedaugError(f"{path}: not a text file (not UTF-8); give a TOML config (see docs/experiments.md)") from None
    except tomllib.TOMLDecodeError as exc:
        raise MedaugError(f"{path}: malformed TOML ({exc})") from None


def dump_toml(values: dict) -> str:
    return tomli_w.dumps(values)


def parse_ints(text: str, what: str) -> list[int]:
    """'16,32,64' -> [16, 32, 64] for the option ``--what``; anything else is a clear error."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise MedaugError(f"--{what} {text!r}: expected comma-separated non-negative integers, e.g. 20,50,100")
    return values
