"""Run and experiment configs: dataclasses, loaded from TOML with unknown keys and bad values rejected."""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from .errors import MedaugError


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults suit the tiny CPU demo.

    The one source of ``medaug train``'s flags (``--n-shot`` for ``n_shot``; help from the ``#:`` comments)
    and of the ``[train]`` table of a TOML config; ``Literal`` fields take only their listed values.
    """

    data: str = ""  #: dataset folder, CSV or prepared cache
    format: str = "auto"  #: dataset format (auto = detected from the folder)
    body_part: str = "all"  #: MURA body part, e.g. XR_ELBOW (all = every part)
    crop: Literal["none", "bbox"] = "none"  #: bbox: train on the boxed regions, one sample per box (hipcsv)
    split_ratios: str = "60:25:15"  #: ratios train:valid:test of the patient-disjoint split of datasets without splits
    allow_label_conflicts: bool = False  #: train even when identical images carry different labels (`medaug data check` lists them)
    size: int = 64  #: image side in pixels after resizing
    method: str = "none"  #: augmentation method (`medaug methods` lists them and their options)
    method_options: dict = field(default_factory=dict)  #: the method's options (-o KEY=VALUE)
    label: str = ""  #: the run's name in reports (metrics.json "method") when it is a named variant of `method` ('' = method)
    model: str = "tiny"  #: classifier: tiny, densenet121, densenet169, resnet18, resnet50, resnet18_small, resnet50_small (28-px MedMNIST stem)
    pretrained: str = ""  #: local weights file for the classifier ('' = random init; nothing is downloaded)
    train_layers: Literal["all", "head"] = "all"  #: layers that train (head: a linear probe, the backbone and its BatchNorm statistics frozen)
    in_channels: int = 1  #: 1, or 3 to repeat the gray channel for RGB-pretrained networks
    epochs: int = 15  #: training epochs (of stage 1 when the method fine-tunes after)
    batch_size: int = 32  #: images per batch (per process under torchrun)
    optimizer: Literal["adam", "sgd"] = "adam"  #: the classifier's optimizer (sgd: momentum 0.9)
    lr: float = 1e-3  #: learning rate of the classifier
    weight_decay: float = 0.0  #: the optimizer's weight decay
    schedule: Literal["cosine", "none", "multistep"] = "cosine"  #: lr schedule over the epochs (multistep: lr x lr_gamma at each of `milestones`)
    milestones: list[int] = field(default_factory=list)  #: multistep: epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1  #: multistep: the factor at each milestone
    patience: int = 0  #: early stopping after this many epochs without improvement (0 = off)
    monitor: Literal["auroc", "accuracy", "balanced_accuracy", "macro_f1", "kappa", "auroc_ovo", "loss"] = "auroc"  #: validation metric for best-checkpoint selection
    seed: int = 0  #: seed of the run (initialisation, batches, augmentation, k-shot sample)
    split_seed: int = 0  #: seed of the patient-disjoint validation split (fixed across seeds by default)
    n_shot: int = 0  #: training images per class (0 = all)
    val_fraction: float = 0.2  #: fraction of the training patients held out for validation
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    channels_last: bool = False  #: NHWC memory format for the classifier (faster convolutions; see docs/performance.md)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  #: autocast precision on the device
    baseline: str = ""  #: run folder of a trained `none` model; two-stage methods start from its best checkpoint
    finetune_lr: float = 0.0  #: lr when starting from a baseline or in the fine-tuning stage (0 = use lr; stage 2: lr / 10)
    finetune_epochs: int = -1  #: stage 2 without the method after training (-1 = the method's default: pgnm 10, others 0)
    average_last: int = 3  #: stage 2 ends with the mean of its last N epochs' weights (0 = best validation epoch)
    eval_batch_size: int = 256  #: images per batch when evaluating
    cache: str = ""  #: cache folder ('' = $MEDAUG_CACHE or ~/.cache/medaug)
    progress: bool = True  #: Rich progress bar

    def __post_init__(self) -> None:
        check_types(self, "config")
        checks = [
            (self.size >= 16, "size must be >= 16"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two images per batch)"),
            (self.lr > 0, "lr must be > 0"),
            (self.in_channels in (1, 3), "in_channels must be 1 or 3"),
            (self.schedule != "multistep" or bool(self.milestones), "schedule multistep needs milestones, e.g. [50, 75]"),
            (all(m >= 1 for m in self.milestones)  # whole numbers: check_types above (list[int])
             and list(self.milestones) == sorted(set(self.milestones)),
             "milestones must be increasing whole epochs >= 1, e.g. [50, 75]"),
            (0 < self.lr_gamma <= 1, "lr_gamma must be in (0, 1]"),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (self.n_shot >= 0, "n_shot must be >= 0"),
            (self.finetune_epochs >= -1, "finetune_epochs must be >= 0 (or -1 for the method's default)"),
            (self.average_last >= 0, "average_last must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise MedaugError(f"config: {msg}")
        parse_ratios(self.split_ratios)  # checked here, not only when a dataset without splits needs it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_defaults(cls) -> dict:
        """Every field's default value (without validating a config)."""
        return {f.name: field_default(f) for f in dataclasses.fields(cls)}


#: the TrainConfig fields that decide a run's decoded cache: runs agreeing on them share one cache
CACHE_FIELDS = ("data", "format", "body_part", "crop", "size", "cache")


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one for ``default_factory`` fields)."""
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def _matches(value: Any, tp: Any) -> bool:
    """``value`` is of annotated type ``tp``: float also takes int, bool is not an int, list/tuple elements
    are checked, a Literal takes only its values (of their types)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if (origin or tp) in (list, tuple):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    return isinstance(value, origin or tp)


def _describe(tp: Any) -> str:
    """'int', 'list of int', 'one of 'fp32', 'bf16'', 'int or None' for an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in args)
    if (origin or tp) in (list, tuple):
        return (origin or tp).__name__ + (f" of {_describe(args[0])}" if args and args[0] is not Any else "")
    return getattr(origin or tp, "__name__", str(tp))


def choices(tp: Any) -> tuple | None:
    """The values of a ``Literal[...]`` annotation (also inside ``Optional``), else None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    inner = [choices(a) for a in typing.get_args(tp) if a is not type(None)]
    return inner[0] if len(inner) == 1 else None


def check_types(obj: Any, where: str) -> None:
    """Every field of dataclass ``obj`` holds a value of its annotated type (:func:`_matches`), else one line
    naming ``where``, the field, the type and the value."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise MedaugError(f"{where}: {f.name} should be {_describe(hints[f.name])}, got {value!r}")


def options_from(cls: type, values: dict[str, Any], where: str, noun: str = "key"):
    """Dataclass ``cls`` (TrainConfig, a method's or a generator's Options, ...) from ``values`` (a TOML
    table, -o pairs): unknown names and values of the wrong type (:func:`check_types`, run by the
    class's ``__post_init__`` or here) or out of range (a ``ValueError``/``MedaugError`` of
    ``__post_init__``) are one line naming ``where``."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise MedaugError(f"{where}: unknown {noun}(s) {', '.join(unknown)}; valid: {', '.join(names) or '(none)'}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():  # before construction: a range check never sees a wrong type
        if not _matches(value, hints[key]):
            raise MedaugError(f"{where}: {key} should be {_describe(hints[key])}, got {value!r}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise MedaugError(f"{where}: {exc}") from None
    except MedaugError as exc:  # a range check: name the file and table it came from
        raise MedaugError(f"{where}: {str(exc).removeprefix('config: ')}") from None
    check_types(obj, where)  # defaults and __post_init__ results too
    return obj


def from_dict(cls, values: dict[str, Any], where: str):
    """Build dataclass ``cls`` from a TOML table ``values`` (:func:`options_from`)."""
    return options_from(cls, values, where)


def field_help(cls: type) -> dict[str, str]:
    """The ``#:`` comment of each field of dataclass ``cls`` (its documentation), from the class's source."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):[^#]*#:\s*(.+)$", line)
        if m:
            out[m[1]] = m[2].strip()
    return out


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


def parse_options(pairs: list[str]) -> dict:
    """['lam=0.1', 'variant=devries', 'tta=true'] -> typed dict (TOML value syntax, bare words as strings)."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise MedaugError(f"--option {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            options[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            options[key.strip()] = value
    return options


def parse_ratios(text: str) -> dict[str, float]:
    """'60:25:15' -> {'train': 60, 'valid': 25, 'test': 15} (any positive numbers; only ratios count)."""
    try:
        values = [float(v) for v in str(text).split(":")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise MedaugError(f"--split-ratios {text!r}: give three positive numbers train:valid:test, e.g. 60:25:15")
    return dict(zip(("train", "valid", "test"), values))
