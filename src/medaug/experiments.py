"""Methods x seeds x shots x datasets: one folder per run, finished runs skipped, interrupted ones resumed.

Layout: ``<out>/<experiment>/<dataset>/<method>/shot-<k>/seed-<s>/`` (shot-all when k = 0).
Two-stage methods (``needs_baseline``) start from a checkpoint of the ``none`` run with the same
dataset, shot and seed, which is trained first and reused by every such method. Budgets are equal
by default (``budget = "equal"``): every method trains the classifier ``epochs`` epochs from
initialisation; a two-stage method continues the ``none`` run's best checkpoint of its first
``baseline_epochs`` epochs for the rest, and ``pgnm``'s heated and fine-tuning stages share the
``epochs``. With ``budget = "paper"`` (the papers' protocols) two-stage methods add ``epochs`` to the
``none`` run's final best checkpoint, and when a plan holds a method with a fine-tuning stage
(``pgnm``: a heated model, then 10 epochs without the policy) every other one-stage method gets the
same stage unless ``finetune_epochs`` is set; the report says when budgets differ.

A TOML config::

    [experiment]
    name = "demo"
    out = "runs"
    data = ["demo-data"]          # dataset folders
    methods = ["none", "classical", "cutout"]
    seeds = [0, 1]
    shots = [0]                   # 0 = all training images

    [train]                       # any TrainConfig field, for every run
    epochs = 15

    [methods.cutout]              # options of one method
    variant = "devries"

    [overrides.apga]              # TrainConfig fields for one method's runs
    finetune_lr = 1e-4

Two variants of one method coexist as named entries of ``methods`` (see :func:`method_spec`):
``BASE+FLAG`` (e.g. ``generative+classical``: ``generative`` with its boolean option ``classical``
true), or any name with a ``[methods.NAME]`` table holding ``method = "BASE"`` and the options.
Their runs land in ``<dataset>/<NAME>/...`` and are reported as ``NAME``.

A string option may name the run it is for: ``{shot}`` (the images per class, ``all`` for 0),
``{seed}`` and ``{dataset}`` (the dataset's folder key) are replaced per run, e.g. a generator's
samples per shot and seed: ``samples = "runs/study/generators/shot-{shot}/seed-{seed}/samples"``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

from .config import CACHE_FIELDS, NonNegFloat, NonNegInt, Range, Seed, TrainConfig, check_types, from_dict, load_toml
from .errors import MedaugError, RunBusy
from .io_utils import safe_name
from .methods import METHODS, resolved_options
from .progress import Outlook
from .ray_executor import run_ray
from .registry import Registry


@dataclass
class ExperimentConfig:
    name: str = "study"
    out: str = "runs"
    data: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["none", "classical", "cutout"])
    seeds: list[Seed] = field(default_factory=lambda: [0, 1])
    shots: list[NonNegInt] = field(default_factory=lambda: [0])  #: training images per class (0 = all)
    executor: str = "local"  #: local (one after another in this process) | ray (see medaug.ray_executor)
    ray_address: str = ""  #: Ray cluster to join ('' = $RAY_ADDRESS, else start a local one)
    ray_local_cpus: NonNegInt = 0  #: CPUs of a local Ray instance (0 = all)
    ray_cpus_per_run: NonNegFloat = 1.0
    ray_gpus_per_run: Annotated[float, Range(ge=0, also=(-1,))] = -1.0  #: -1 = one GPU per run when the cluster has GPUs; fractions share a GPU

    def __post_init__(self) -> None:
        check_types(self, "config")  # types and each field's Range
        safe_name(self.name, "name")
        if self.ray_gpus_per_run > 1 and self.ray_gpus_per_run != int(self.ray_gpus_per_run):
            raise MedaugError(f"config: ray_gpus_per_run {self.ray_gpus_per_run}: a fraction of one GPU (<= 1) or a whole number")


@dataclass
class Plan:
    experiment: ExperimentConfig
    train: TrainConfig
    method_options: dict
    overrides: dict
    outlook: Outlook | None = None  #: set by a caller running the plan in parts (medaug compare): progress counts the whole

    @property
    def root(self) -> Path:
        return Path(self.experiment.out) / self.experiment.name


def method_spec(name: str, method_options: dict | None = None) -> tuple[str, dict]:
    """(registered method, its options) of the plan entry ``name``.

    ``name`` is a method (``classical``), a named variant (``[methods.NAME]`` with ``method = "BASE"``
    and BASE's options), or ``BASE+FLAG[+FLAG...]``: BASE with each boolean option FLAG set to true
    (``generative+classical``); options in ``[methods."BASE+FLAG"]`` are added to those.
    """
    opts = dict((method_options or {}).get(name) or {})
    base = opts.pop("method", None)
    if base is not None and not isinstance(base, str):
        raise MedaugError(f"[methods.{name}] method: give a method name (a string), got {base!r}")
    if base is None and "+" in name:
        base, *flags = name.split("+")
        hints = typing.get_type_hints(METHODS.get(base).Options) if base in METHODS else {}
        bools = sorted(k for k, t in hints.items() if t is bool)
        for flag in flags:
            if flag not in bools:
                raise MedaugError(f"method {name!r}: {flag!r} is not a boolean option of {base!r}; "
                                  f"BASE+FLAG takes one of {', '.join(bools) or '(none: it has no boolean options)'}, "
                                  f"or name the variant in a [methods.NAME] table with method = \"{base}\"")
        opts = {**{flag: True for flag in flags}, **opts}
    base = base or name
    METHODS.get(base)  # an unknown method fails here
    return base, opts


def base_method(name: str, method_options: dict | None = None) -> str:
    return method_spec(name, method_options)[0]


def start_of(name: str, method_options: dict | None = None) -> str | None:
    """The plan entry a two-stage entry ``name`` starts from (``none``, or ``classical`` when it is stacked on
    classical augmentation); None for a one-stage entry."""
    base, opts = method_spec(name, method_options)
    cls = METHODS.get(base)
    return cls.builds_on(resolved_options(base, opts)) if cls.needs_baseline else None


def load_plan(path: str | Path) -> Plan:
    raw = load_toml(path)
    unknown = sorted(set(raw) - {"experiment", "train", "methods", "overrides"})
    if unknown:
        raise MedaugError(f"{path}: unknown section(s) {', '.join(unknown)}; use [experiment], [train], [methods.NAME], [overrides.NAME]")
    exp = from_dict(ExperimentConfig, raw.get("experiment", {}), f"{path} [experiment]")
    train = from_dict(TrainConfig, raw.get("train", {}), f"{path} [train]")
    return make_plan(exp, train, raw.get("methods", {}), raw.get("overrides", {}), where=str(path))


def make_plan(exp: ExperimentConfig, train: TrainConfig, method_options: dict | None = None,
              overrides: dict | None = None, where: str = "experiment") -> Plan:
    method_options, overrides = method_options or {}, overrides or {}
    if not exp.data:
        raise MedaugError(f"{where}: [experiment] data is empty; list at least one dataset folder")
    for key in ("methods", "seeds", "shots"):
        if not getattr(exp, key):
            raise MedaugError(f"{where}: [experiment] {key} is empty; list at least one (no run would train)")
    EXECUTORS.get(exp.executor)  # an unknown executor fails here
    for name in list(exp.methods) + list(method_options) + list(overrides):
        safe_name(name, f"{where}: method")  # it names the run folders <dataset>/<method>/
        base, opts = method_spec(name, method_options)  # unknown names fail here, before any training
        METHODS.create(base, **opts)  # validates the options
    for name, values in overrides.items():
        from_dict(TrainConfig, values, f"{where} [overrides.{name}]")
    starts = {start_of(m, method_options) for m in exp.methods} - {None}
    for start in sorted(starts):
        if base_method(start, method_options) != start:
            raise MedaugError(f"{where}: [methods.{start}] makes `{start}` a variant of another method, but two-stage "
                              f"methods of this plan start from a plain `{start}` run; give the variant another name")
    exp = dataclasses.replace(exp, methods=[*sorted(starts - set(exp.methods)), *exp.methods])
    # the baselines run first (none, then the others) so two-stage methods can start from them
    exp = dataclasses.replace(exp, methods=sorted(exp.methods, key=lambda m: (m != "none", m not in starts)))
    return Plan(exp, train, method_options, overrides)


def dataset_name(data: str, body_part: str = "all", others: list | tuple = ()) -> str:
    """A dataset's folder key in a plan: its folder name (with the body part; ``medmnist:NAME`` -> NAME), plus a
    short hash of its full path when another dataset of ``others`` has the same folder name (so run folders stay distinct)."""
    import hashlib

    from .data.medmnist_hub import spec_name

    def ident(d) -> tuple[str, str]:  # (what the dataset is, its folder name)
        if spec_name(str(d)):
            return str(d).lower(), spec_name(str(d))
        path = Path(d).expanduser().resolve()
        return str(path), path.name

    key, name = ident(data)
    if any(ident(o)[0] != key and ident(o)[1] == name for o in others):
        name = f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
    return safe_name(name if body_part == "all" else f"{name}-{body_part}", f"[experiment] data {data}: the folder name")


def run_dir(plan: Plan, data: str, method: str, shot: int, seed: int) -> Path:
    key = dataset_name(data, plan.train.body_part, plan.experiment.data)
    return plan.root / key / method / (f"shot-{shot}" if shot else "shot-all") / f"seed-{seed}"


def run_config(plan: Plan, data: str, method: str, shot: int, seed: int) -> TrainConfig:
    values = {**plan.train.to_dict(), **plan.overrides.get(method, {})}
    base, opts = method_spec(method, plan.method_options)
    fields = {"{shot}": str(shot) if shot else "all", "{seed}": str(seed),
              "{dataset}": dataset_name(data, plan.train.body_part, plan.experiment.data)}
    values.update(data=str(data), method=base, label=method if method != base else "", n_shot=shot, seed=seed,
                  method_options={k: run_placeholders(v, fields, f"[methods.{method}] {k}") for k, v in opts.items()})
    if METHODS.get(base).needs_baseline:
        values["baseline"] = str(run_dir(plan, data, start_of(method, plan.method_options), shot, seed))
    elif values["finetune_epochs"] == -1 and values["budget"] == "paper":  # one-stage methods get the plan's fine-tuning stage
        values["finetune_epochs"] = max(METHODS.get(base_method(m, plan.method_options)).finetune_epochs
                                        for m in plan.experiment.methods)
    return TrainConfig(**values)


def run_placeholders(value, fields: dict[str, str], where: str = "a method option"):
    """``value`` with each placeholder of ``fields`` (``{shot}``, ``{seed}``, ``{dataset}``) replaced; non-strings
    as they are. A ``{word}`` left over (a misspelt placeholder such as ``{shots}``) is refused, naming ``where``."""
    if not isinstance(value, str):
        return value
    for key, text in fields.items():
        value = value.replace(key, text)
    unknown = re.search(r"\{\w+\}", value)
    if unknown:
        raise MedaugError(f"{where}: unknown placeholder {unknown.group()} in {value!r}; "
                          f"use {', '.join(fields)} (docs/experiments.md)")
    return value


def plan_runs(plan: Plan) -> list[tuple[Path, TrainConfig, bool]]:
    """(run dir, config, needs a baseline) for every (dataset, shot, seed, method), baselines first."""
    exp = plan.experiment
    for what, values in (("data", [str(Path(d).expanduser().resolve()) for d in exp.data]), ("methods", exp.methods),
                         ("seeds", exp.seeds), ("shots", exp.shots)):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise MedaugError(f"[experiment] {what}: {', '.join(twice)} listed twice; list each once (every run needs its own folder)")
    return [(run_dir(plan, data, method, shot, seed), run_config(plan, data, method, shot, seed),
             METHODS.get(base_method(method, plan.method_options)).needs_baseline)
            for data in exp.data for shot in exp.shots for seed in exp.seeds for method in exp.methods]


# with CACHE_FIELDS (config.py), the TrainConfig fields that decide the images a run sees and their labels (the
# class mapping): runs agreeing on them share one loaded dataset
DATA_FIELDS = CACHE_FIELDS + ("split_ratios", "split_seed", "val_fraction", "n_shot", "seed", "classes")
OnResult = Callable[[Path, dict], None] | None
EXECUTORS: Registry[Callable[[Plan, list, OnResult], list]] = Registry("executor")


@EXECUTORS.register("local")
def run_local(plan: Plan, runs: list, on_result: OnResult = None) -> list[tuple[Path, dict]]:
    """One run after another in this process; runs that see the same images share one loaded dataset.

    A run another process is training now (a second ``medaug run`` of the same plan), and a two-stage run
    whose ``none`` run that is, are left to it and named at the end, so several processes can share a plan.
    Progress: a live view on a terminal, else one line per run (:class:`medaug.progress.PlanProgress`).
    """
    from .progress import PlanProgress, console, live_view
    from .train import fit, load_data, run_busy

    results, loaded, dataset, elsewhere = [], None, None, []
    with live_view(plan.train.progress) as bar:
        progress = PlanProgress(len(runs), bar, plan.outlook, folders=[out for out, _, _ in runs], busy=run_busy)
        for out, cfg, needs_baseline in runs:
            what = str(out.relative_to(plan.root)) if out.is_relative_to(plan.root) else str(out)
            if needs_baseline and Path(cfg.baseline) in elsewhere:
                elsewhere.append(out)
                progress.finished(what, None, trained=False, out=out)
                continue
            finished = (out / "metrics.json").is_file()
            key = tuple(getattr(cfg, k) for k in DATA_FIELDS)
            if not finished and loaded != key:
                dataset, loaded = load_data(cfg), key
            try:
                metrics = fit(cfg, out, dataset if loaded == key else None)
            except RunBusy:
                elsewhere.append(out)
                progress.finished(what, None, trained=False, out=out)
                continue
            results.append((out, metrics))
            progress.finished(what, metrics, trained=not finished, out=out)
            if on_result:
                on_result(out, metrics)
        progress.close()
    unfinished = [out for out in elsewhere if not (out / "metrics.json").is_file()]  # the other process may be done by now
    if unfinished:
        console.print(f"[yellow]{len(unfinished)} run(s) left to another medaug process training them now[/yellow] "
                      f"(first: {unfinished[0]}); run this command again when it has finished to collect them")
    elif elsewhere:
        console.print(f"{len(elsewhere)} run(s) were trained by another medaug process (all finished now)", highlight=False)
    return results


EXECUTORS.register("ray")(run_ray)  # the runs as Ray tasks (medaug.ray_executor)


def check_plan(runs: list, skip_finished: bool = True) -> None:
    """Build every distinct (method, options, model, image size) of the runs, networks included, and take one
    training step on two random images (``medaug.bench.prepare_method``), so a bad combination (a policy
    that cannot take the image size, a missing layer) fails in seconds, before the first run trains."""
    import json

    from .bench import prepare_method
    from .train import check_batch_memory, check_budget

    seen = set()
    for out, cfg, _ in runs:
        check_budget(cfg)  # both stages of a staged run fit in its epochs
        if skip_finished and (out / "metrics.json").is_file():
            continue
        check_batch_memory(cfg)
        key = (cfg.method, json.dumps(cfg.method_options, sort_keys=True), cfg.model, cfg.size, cfg.in_channels)
        if key in seen:
            continue
        seen.add(key)
        check = dataclasses.replace(cfg, device="cpu", precision="fp32", batch_size=2)
        try:
            prepare_method(cfg.method, check, cfg.method_options, batch=2, warmup=1)
        except MedaugError:
            raise
        except Exception as exc:  # a shape or type error inside a network: name the combination
            raise MedaugError(f"plan check: method {cfg.method!r} with options {cfg.method_options} does not run on "
                              f"{cfg.size} px images with model {cfg.model!r} ({type(exc).__name__}: {exc}); "
                              f"change [methods.{cfg.method}] or [train] size/model") from None


def run_plan(plan: Plan, on_result: OnResult = None, overwrite: bool = False) -> list[tuple[Path, dict]]:
    """Run every (dataset, shot, seed, method) of ``plan`` with its executor; returns (run dir, metrics) pairs.

    Every method is built first (:func:`check_plan`), then the experiment folder is claimed (``overwrite``:
    what medaug wrote there is removed); a run folder holding another configuration's results is refused
    before any training.
    """
    from .io_utils import check_output_path, output_folder, record
    from .train import left_behind

    runs = plan_runs(plan)
    inputs = tuple(d for d in plan.experiment.data if Path(d).is_dir())
    flag = "[experiment] out/name"
    for out in [plan.root, *(out for out, _, _ in runs)]:  # before any work: every run folder's name too
        check_output_path(out, flag, inputs)
    check_plan(runs, skip_finished=not overwrite)
    output_folder(plan.root, "experiment", inputs=inputs, overwrite=overwrite, flag=flag)
    for out, _, _ in runs:
        record(out)  # here, once: parallel runs then never rewrite the experiment's marker
        if overwrite:
            left_behind(out, ("metrics.json", "checkpoint.pt"))
    check_finished(runs)
    return EXECUTORS.get(plan.experiment.executor)(plan, runs, on_result)


def check_finished(runs: list) -> None:
    """Refuse, before any training, finished run folders trained with another configuration (a changed [train]):
    the identity medaug stored in their metrics.json (an older medaug's runs: their config.toml)."""
    from .train import check_identity, check_stages, read_json, run_identity, saved_identity

    for out, cfg, _ in runs:
        if (out / "metrics.json").is_file():
            metrics = read_json(out / "metrics.json", "the run's")
            check_stages(out, metrics, cfg)
            saved = saved_identity(out, metrics, fingerprint=False)
            if not cfg.in_channels and saved.get("in_channels") in (1, 3):  # "the data's": fit checks it against the data
                cfg = dataclasses.replace(cfg, in_channels=saved["in_channels"])
            check_identity(out, saved, run_identity(cfg, None, out), "a finished run", "--overwrite to start the experiment fresh")
