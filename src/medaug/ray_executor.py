"""``executor = "ray"``: the runs of a plan as Ray tasks, on this machine or an existing Ray cluster.

Same run folders, same skipping and resuming as the local executor (each task calls the one
:func:`medaug.train.fit`); only the order and the placement differ. A two-stage method's task
takes its ``none`` run's task as an argument, so Ray starts it when the baseline has finished.

Cluster use: the workers need medaug installed and the data, the run folder and the cache on a
shared filesystem (paths are made absolute before submission). Point ``ray_address`` (or
``$RAY_ADDRESS``) at the cluster, e.g. ``ray://head:10001``; with neither, a local Ray instance
with ``ray_local_cpus`` CPUs (0 = all) is started for the plan and shut down after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Callable

from .config import CACHE_FIELDS, TrainConfig
from .errors import MedaugError
from .progress import PlanProgress, live_view


def _fit_task(cfg: dict, out: str, _baseline=None) -> tuple[str, dict]:
    """One run on a Ray worker; ``_baseline`` is only there to order the task after its baseline."""
    from .allocator import steady_cpu_allocator
    from .train import fit

    steady_cpu_allocator()  # as `medaug` sets it for its own process

    return out, fit(TrainConfig(**{**cfg, "progress": False}), out)


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its data, baseline, weights and cache paths absolute (workers may not share the cwd)."""
    keys = ("data", "baseline", "pretrained", "cache")
    return dataclasses.replace(cfg, **{k: str(Path(getattr(cfg, k)).resolve()) for k in keys if getattr(cfg, k)})


def _resources(exp, cluster: dict) -> dict:
    """Ray resources per run: ``ray_cpus_per_run``, and ``ray_gpus_per_run`` (-1 = one GPU if the cluster has any)."""
    gpus = exp.ray_gpus_per_run if exp.ray_gpus_per_run >= 0 else float(cluster.get("GPU", 0) > 0)
    return dict(num_cpus=exp.ray_cpus_per_run, num_gpus=gpus)


@contextlib.contextmanager
def ray_session(exp):
    """Ray for the runs of experiment config ``exp``: the instance already initialised in this process, else the
    cluster at ``ray_address`` (or ``$RAY_ADDRESS``), else a local instance of ``ray_local_cpus`` CPUs; what was
    started here is shut down on leaving (so a caller running a plan in parts starts Ray once around all parts)."""
    try:
        import ray
    except ImportError:
        raise MedaugError("executor 'ray': Ray is not installed; pip install 'medaug[ray]' (or use executor = \"local\")") from None
    address = exp.ray_address or os.environ.get("RAY_ADDRESS") or None
    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": exp.ray_local_cpus or None, "include_dashboard": False}
        ray.init(address=address, log_to_driver=False, **local)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def run_ray(plan, runs, on_result: Callable[[Path, dict], None] | None = None) -> list[tuple[Path, dict]]:
    """Submit ``runs`` (run_dir, TrainConfig, needs_baseline) as tasks; returns (run dir, metrics) in plan order."""
    from .data.cache import default_cache_root
    from .methods import METHODS
    from .train import data_cache, fit

    exp = plan.experiment
    with ray_session(exp) as ray:
        resources = _resources(exp, ray.cluster_resources())
        env = {"env_vars": {"MEDAUG_CACHE": str(default_cache_root().resolve())}}
        task = ray.remote(_fit_task).options(**resources, runtime_env=env, max_retries=0)
        done: dict[Path, dict] = {}
        pending: dict = {}  # ObjectRef -> run dir
        baselines: dict[Path, object] = {}  # baseline run dir -> its ObjectRef
        decoded: set[tuple] = set()
        for out, cfg, needs_baseline in runs:
            out, cfg = out.resolve(), absolute_paths(cfg)
            if (out / "metrics.json").is_file():  # finished: read, do not schedule
                done[out] = fit(cfg, out)
                if on_result:
                    on_result(out, done[out])
                continue
            key = tuple(getattr(cfg, k) for k in CACHE_FIELDS)
            if key not in decoded:  # decode the cache once here, not racing in every task
                data_cache(cfg)
                decoded.add(key)
            after = baselines.get(Path(cfg.baseline).resolve()) if needs_baseline else None
            ref = task.remote(cfg.to_dict(), str(out), after)
            pending[ref] = out
            if METHODS.get(cfg.method).is_baseline:  # none, classical: two-stage runs may start from it
                baselines[out] = ref
        with live_view(plan.train.progress) as bar:
            progress = PlanProgress(len(pending), bar, getattr(plan, "outlook", None))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                out = pending.pop(ref)
                try:
                    _, metrics = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    for other in pending:
                        ray.cancel(other)
                    cause = exc.cause if isinstance(exc.cause, MedaugError) else exc
                    raise MedaugError(f"{out}: {cause}".splitlines()[0]) from None
                done[out] = metrics
                progress.finished(str(out), metrics, trained=True, out=out)
                if on_result:
                    on_result(out, metrics)
        return [(out.resolve(), done[out.resolve()]) for out, _, _ in runs]
