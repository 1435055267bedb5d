"""Run and experiment configs: dataclasses, loaded from TOML with unknown keys and bad values rejected."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from .errors import MedaugError


FLOAT32_MAX = 3.4028234663852886e38  #: the largest float32: torch computes options such as lr in float32


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric field, declared once with it: ``lr: Annotated[float, Range(gt=0)] = 1e-3``
    (or a shorthand below: ``lr: PosFloat = 1e-3``); on a ``list[...]`` it applies to each item.

    ``ge``/``gt`` and ``le``/``lt`` bound the value; ``also``: values valid besides the range (e.g. -1 = "the
    default"); a float must be finite (and fit float32) unless ``nonfinite``; an int must fit in 64 bits.
    :func:`check_types` (so :func:`options_from` and every config's ``__post_init__``) refuses any other value
    in one line naming the field, the valid range and the value. Rules between fields
    (``area_min <= area_max``) stay in the class's ``__post_init__``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    also: tuple = ()
    nonfinite: bool = False
    note: str = ""

    def holds(self, value: int | float) -> bool:
        if value in self.also:
            return True
        if isinstance(value, float) and math.isnan(value):
            return self.nonfinite
        if isinstance(value, float) and math.isinf(value) and not self.nonfinite:
            return False
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            return False
        if isinstance(value, float) and abs(value) > FLOAT32_MAX and not self.nonfinite:
            return False  # torch computes in float32: a larger value overflows there (e.g. an lr of 1e300)
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self, base: type, value: int | float) -> str:
        """The range of a ``base`` (int or float) field in words, for a message about ``value``: '>= 1',
        'in [0, 1)', 'a finite number > 0', '-1 or >= 0', with the note in parentheses."""
        lo = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else ""
        hi = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else ""
        parts = [f"in {lo}, {hi}"] if lo and hi else [f"{op} {v}" for op, v in (
            (">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if v is not None]
        if base is int and not hi and not -2**63 <= value < 2**63:
            parts.append("below 2**63")
        if base is float and not hi and isinstance(value, float) and FLOAT32_MAX < abs(value) < math.inf:
            parts.append(f"at most {FLOAT32_MAX:.3g} (float32)")
        text = " and ".join(parts)
        if base is float and not self.nonfinite and not (lo and hi):
            text = "a finite number" + (f" {text}" if text else "")
        text = text or "a number"
        text = " or ".join([*map(str, self.also), text])
        return text + (f" ({self.note})" if self.note else "")


#: shorthands for the common ranges
PosFloat = Annotated[float, Range(gt=0)]
NonNegFloat = Annotated[float, Range(ge=0)]
Prob = Annotated[float, Range(ge=0, le=1)]  #: a probability or fraction in [0, 1]
PosInt = Annotated[int, Range(ge=1)]
NonNegInt = Annotated[int, Range(ge=0)]
Seed = Annotated[int, Range(ge=0, le=2**32 - 1, note="NumPy's seed range")]


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
    classes: str = ""  #: merge or rename the data's classes, NEW=SOURCE,...;... in the order the new classes take, e.g. "no-oa=KL0,KL1;oa=KL2,KL3,KL4"; drop=SOURCE,... leaves classes out ('' = the data's classes)
    ordinal: bool = False  #: the classes are ordered grades (class index = grade): also report mae (mean absolute error in grades) and qwk (quadratic-weighted kappa)
    split_ratios: str = "60:25:15"  #: ratios train:valid:test of the patient-disjoint split of datasets without splits
    allow_label_conflicts: bool = False  #: train even when identical images carry different labels (`medaug data check` lists them)
    size: Annotated[int, Range(ge=16)] = 64  #: image side in pixels after resizing
    method: str = "none"  #: augmentation method (`medaug methods` lists them and their options)
    method_options: dict = field(default_factory=dict)  #: the method's options (-o KEY=VALUE)
    label: str = ""  #: the run's name in reports (metrics.json "method") when it is a named variant of `method` ('' = method)
    model: str = "tiny"  #: classifier: tiny, densenet121, densenet169, resnet18, resnet50, resnet18_small, resnet50_small (28-px MedMNIST stem)
    pretrained: str = ""  #: local weights file for the classifier ('' = random init; nothing is downloaded)
    train_layers: Literal["all", "head"] = "all"  #: layers that train (head: a linear probe, the backbone and its BatchNorm statistics frozen)
    in_channels: int = 0  #: classifier input channels: 0 = the data's (1 gray, 3 colour); 3 on gray data repeats the gray channel (RGB-pretrained networks); 1 on colour data feeds luminance
    epochs: PosInt = 15  #: training epochs (of stage 1 when the method fine-tunes after)
    batch_size: Annotated[int, Range(ge=2, note="BatchNorm needs two images per batch")] = 32  #: images per batch (per process under torchrun)
    optimizer: Literal["adam", "sgd"] = "adam"  #: the classifier's optimizer (sgd: momentum 0.9)
    lr: PosFloat = 1e-3  #: learning rate of the classifier
    weight_decay: NonNegFloat = 0.0  #: the optimizer's weight decay
    schedule: Literal["cosine", "none", "multistep"] = "cosine"  #: lr schedule over the epochs (multistep: lr x lr_gamma at each of `milestones`)
    milestones: list[PosInt] = field(default_factory=list)  #: multistep: epochs after which the lr is multiplied by lr_gamma
    lr_gamma: Annotated[float, Range(gt=0, le=1)] = 0.1  #: multistep: the factor at each milestone
    patience: NonNegInt = 0  #: early stopping after this many epochs without improvement (0 = off)
    monitor: Literal["auroc", "accuracy", "balanced_accuracy", "macro_f1", "kappa", "auroc_ovo", "qwk", "loss"] = "auroc"  #: validation metric for best-checkpoint selection (qwk: ordinal runs)
    seed: Seed = 0  #: seed of the run (initialisation, batches, augmentation, k-shot sample)
    split_seed: Seed = 0  #: seed of the patient-disjoint validation split (fixed across seeds by default)
    n_shot: NonNegInt = 0  #: training images per class (0 = all)
    val_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2  #: fraction of the training patients held out for validation
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    channels_last: bool = False  #: NHWC memory format for the classifier (faster convolutions; see docs/performance.md)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  #: autocast precision on the device
    baseline: str = ""  #: run folder of a trained `none` model; two-stage methods start from its checkpoint (see budget)
    budget: Literal["equal", "paper"] = "equal"  #: equal: every method trains the classifier `epochs` epochs from initialisation, stages included; paper: the papers' two-stage protocols, longer budgets for two-stage methods (docs/experiments.md)
    baseline_epochs: Annotated[int, Range(ge=1, also=(-1,))] = -1  #: budget equal: two-stage methods (apga, gradcam, end2end) start from the none run's best checkpoint of its first baseline_epochs epochs and train the rest of `epochs` (-1 = 4/5 of epochs, rounded up, at most epochs - 1: 24 of 30)
    finetune_lr: NonNegFloat = 0.0  #: lr when starting from a baseline or in the fine-tuning stage (0 = use lr; stage 2: lr / 10, or lr for pgnm's default share of an equal budget)
    finetune_epochs: Annotated[int, Range(ge=0, also=(-1,))] = -1  #: stage 2 without the method after training (-1 = the method's default: pgnm 10, others 0)
    average_last: NonNegInt = 3  #: stage 2 ends with the mean of its last N epochs' weights (0 = best validation epoch)
    eval_batch_size: PosInt = 256  #: images per batch when evaluating
    cache: str = ""  #: cache folder ('' = $MEDAUG_CACHE or ~/.cache/medaug)
    progress: bool = True  #: Rich progress bar

    def __post_init__(self) -> None:
        check_types(self, "config")  # types and each field's Range
        checks = [
            (self.in_channels in (0, 1, 3), "in_channels must be 0 (the data's), 1 or 3"),
            (self.schedule != "multistep" or bool(self.milestones), "schedule multistep needs milestones, e.g. [50, 75]"),
            (list(self.milestones) == sorted(set(self.milestones)), "milestones must be increasing whole epochs >= 1, e.g. [50, 75]"),
            (self.monitor != "qwk" or self.ordinal, "monitor qwk needs ordinal = true (--ordinal): qwk is reported for ordered classes only"),
        ]
        for ok, msg in checks:
            if not ok:
                raise MedaugError(f"config: {msg}")
        parse_ratios(self.split_ratios)  # checked here, not only when a dataset without splits needs it
        if self.classes:  # checked here (before any training) and written one way, so equal mappings are one configuration
            self.classes = format_classes(*parse_classes(self.classes))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_defaults(cls) -> dict:
        """Every field's default value (without validating a config)."""
        return {f.name: field_default(f) for f in dataclasses.fields(cls)}


#: the TrainConfig fields that decide a run's decoded cache: runs agreeing on them share one cache (a class mapping,
#: ``classes``, relabels after the cache, so the 5-grade and the merged task share one)
CACHE_FIELDS = ("data", "format", "body_part", "crop", "size", "cache")


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one for ``default_factory`` fields)."""
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def _matches(value: Any, tp: Any) -> bool:
    """``value`` is of annotated type ``tp``: float also takes int, bool is not an int, list/tuple elements
    are checked, a Literal takes only its values (of their types). Ranges: :func:`_out_of_range`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Annotated:
        return _matches(value, args[0])
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


def _out_of_range(value: Any, tp: Any) -> tuple[str, Any] | None:
    """(the valid range in words, the offending value) when ``value``, of type ``tp`` (:func:`_matches`), is
    outside the :class:`Range` that ``tp`` declares (on a list: for each item), else None. A float
    without a declared range must still be finite, and an int fit in 64 bits."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        base, ranges = args[0], [m for m in args[1:] if isinstance(m, Range)] or [Range()]
        if (typing.get_origin(base) or base) in (list, tuple):
            item = (typing.get_args(base) or (Any,))[0]
            return next(filter(None, (_out_of_range(v, Annotated[(item, *ranges)]) for v in value)), None)
        if base not in (int, float):
            return _out_of_range(value, base)
        bad = next((r for r in ranges if not r.holds(value)), None)
        return None if bad is None else (bad.describe(base, value), value)
    if origin in (typing.Union, types.UnionType):
        return next((_out_of_range(value, a) for a in args if _matches(value, a)), None)
    if (origin or tp) in (list, tuple) and args:
        return next(filter(None, (_out_of_range(v, args[0]) for v in value)), None)
    if tp in (int, float):
        return _out_of_range(value, Annotated[tp, Range()])
    return None


def _describe(tp: Any) -> str:
    """'int', 'list of int', 'one of 'fp32', 'bf16'', 'int or None' for an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in args)
    if (origin or tp) in (list, tuple):
        return (origin or tp).__name__ + (f" of {_describe(args[0])}" if args and args[0] is not Any else "")
    return getattr(origin or tp, "__name__", str(tp))


def _check_value(name: str, value: Any, tp: Any, where: str) -> None:
    """One line naming ``where``, ``name``, the expected type or range and ``value``, unless ``value`` fits ``tp``."""
    if not _matches(value, tp):
        raise MedaugError(f"{where}: {name} should be {_describe(tp)}, got {value!r}")
    bad = _out_of_range(value, tp)
    if bad:
        desc, item = bad
        raise MedaugError(f"{where}: {name} must be {desc}, got {value!r}" if item is value else
                          f"{where}: {name} must each be {desc}, got {item!r} in {value!r}")


def range_text(tp: Any) -> str:
    """The declared :class:`Range` of annotation ``tp`` in words ('' when it declares none), for --help."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        ranges = [m for m in args[1:] if isinstance(m, Range)]
        base = args[0]
        if (typing.get_origin(base) or base) in (list, tuple):
            inner = range_text(Annotated[((typing.get_args(base) or (Any,))[0], *ranges)]) if ranges else ""
            return f"each {inner}" if inner else ""
        return ranges[0].describe(base, 0) if ranges and base in (int, float) else range_text(base)
    inner = next(filter(None, (range_text(a) for a in args if a is not type(None))), "")
    return f"each {inner}" if inner and origin in (list, tuple) else inner


def check_range(flag: str, value: int | float, tp: Any) -> None:
    """A command-line flag without a config field against a range type, by the fields' rule
    (``check_range("--tolerance", t, NonNegFloat)``): one line ``--flag VALUE: must be ...``."""
    bad = _out_of_range(value, tp)
    if bad:
        raise MedaugError(f"{flag} {value!r}: must be {bad[0]}")


def choices(tp: Any) -> tuple | None:
    """The values of a ``Literal[...]`` annotation (also inside ``Optional``), else None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    inner = [choices(a) for a in typing.get_args(tp) if a is not type(None)]
    return inner[0] if len(inner) == 1 else None


def check_types(obj: Any, where: str) -> None:
    """Every field of dataclass ``obj`` holds a value of its annotated type (:func:`_matches`) inside its
    :class:`Range`, else one line naming ``where``, the field, the type or range and the value."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        _check_value(f.name, getattr(obj, f.name), hints[f.name], where)


def options_from(cls: type, values: dict[str, Any], where: str, noun: str = "key"):
    """Dataclass ``cls`` (TrainConfig, a method's or a generator's Options, ...) from ``values`` (a TOML
    table, -o pairs): unknown names, values of the wrong type or outside the field's :class:`Range`
    (:func:`check_types`, here and in the class's ``__post_init__``) and rules between fields (a
    ``ValueError``/``MedaugError`` of ``__post_init__``) are one line naming ``where``."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise MedaugError(f"{where}: unknown {noun}(s) {', '.join(unknown)}; valid: {', '.join(names) or '(none)'}")
    hints = typing.get_type_hints(cls, include_extras=True)
    for key, value in values.items():  # before construction: __post_init__ never sees a wrong type or range
        _check_value(key, value, hints[key], where)
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
    if len(values) != 3 or not all(0 < v < math.inf for v in values):
        raise MedaugError(f"--split-ratios {text!r}: give three positive numbers train:valid:test, e.g. 60:25:15")
    return dict(zip(("train", "valid", "test"), values))


#: the group of a ``--classes`` mapping that lists source classes to leave out (not a class name)
DROP = "drop"


def parse_classes(text: str, flag: str = "--classes") -> tuple[dict[str, list[str]], list[str]]:
    """'no-oa=KL0,KL1;oa=KL2,KL3,KL4;drop=KL9' -> ({'no-oa': ['KL0', 'KL1'], 'oa': ['KL2', 'KL3', 'KL4']}, ['KL9']).

    Groups ``NEW=SOURCE[,SOURCE...]`` separated by ``;`` (spaces around names ignored); the new classes take the
    order written (index 0 = the first). ``drop=...`` lists source classes to leave out. Syntax only: whether the
    sources are the data's classes is checked when the data is read (:func:`medaug.data.classes.class_map`).
    """
    example = 'e.g. "no-oa=KL0,KL1;oa=KL2,KL3,KL4" (NEW=SOURCE,...; one group per new class; drop=SOURCE,... to leave classes out)'
    groups = [g.strip() for g in str(text).split(";")]
    if not any(groups):
        raise MedaugError(f"{flag} {text!r}: empty; give the new classes, {example}")
    mapping: dict[str, list[str]] = {}
    drop: list[str] = []
    owner: dict[str, str] = {}
    for group in groups:
        if not group:
            continue  # a trailing ';'
        name, eq, sources = (part.strip() for part in group.partition("="))
        items = [s.strip() for s in sources.split(",")]
        if not eq or not name or not all(items):
            what = "no '='" if not eq else "no new class name before '='" if not name else "an empty source class"
            raise MedaugError(f"{flag} {text!r}: group {group!r} has {what}; {example}")
        if name in mapping or (name == DROP and drop):
            raise MedaugError(f"{flag} {text!r}: {name!r} is named twice; list all its source classes in one group, "
                              f"{name}={','.join((mapping.get(name) or drop) + items)}")
        for item in items:
            if item in owner:
                raise MedaugError(f"{flag} {text!r}: source class {item!r} is mapped twice (to {owner[item]!r} and "
                                  f"{name!r}); map each source class exactly once")
            owner[item] = name
        if name == DROP:
            drop = items
        else:
            mapping[name] = items
    if len(mapping) < 2:
        raise MedaugError(f"{flag} {text!r}: {len(mapping)} new class(es); a classifier needs at least 2, {example}")
    return mapping, drop


def format_classes(mapping: dict[str, list[str]], drop: list[str] | None = None) -> str:
    """The one spelling of a mapping: 'no-oa=KL0,KL1;oa=KL2,KL3,KL4' (then ';drop=...')."""
    groups = [f"{name}={','.join(sources)}" for name, sources in mapping.items()]
    return ";".join(groups + ([f"{DROP}={','.join(drop)}"] if drop else []))
