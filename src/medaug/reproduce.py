"""``medaug reproduce RUN_DIR``: train a finished run again and compare the metrics.

:func:`reproduce` re-runs a finished run from its saved ``config.toml`` into a temporary folder
on the same device type and compares every metric of metrics.json (valid, test, mask, best
epoch, data fingerprint) and every per-epoch value of log.jsonl. On the CPU the match must be
exact; on CUDA within ``CUDA_ATOL`` (absolute), see docs/reproducibility.md.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import TrainConfig, from_dict, load_toml
from .errors import MedaugError
from .provenance import git_state
from .train import fit

CUDA_ATOL = 1e-2  #: default absolute tolerance for metrics reproduced on CUDA (metrics in [0, 1]); 0 on CPU
IGNORED = {"wall_s", "device", "provenance", "medaug_version", "world_size", "identity"}  #: metrics.json keys not compared
IGNORED_LOG = {"time_s"}  #: log.jsonl keys not compared


# --- reproduce ---------------------------------------------------------------------------------

@dataclass
class Reproduction:
    run_dir: Path
    device: str
    atol: float
    compared: int = 0
    diffs: list[tuple[str, object, object]] = field(default_factory=list)  #: (key, saved, reproduced)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs


def flatten(metrics: dict, log: list[dict] | None = None) -> dict:
    """metrics.json (and log.jsonl rows) as {'test.accuracy': 0.81, 'epoch 2.train_loss': 0.6, ...}."""
    out = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    walk("", {k: v for k, v in metrics.items() if k not in IGNORED})
    for i, row in enumerate(log or []):
        for k, v in row.items():
            if k not in IGNORED_LOG:
                out[f"epoch {row.get('epoch', i + 1)}.{k}"] = v
    return out


def compare(saved: dict, new: dict, atol: float = 0.0) -> tuple[int, list[tuple[str, object, object]]]:
    """Number of values compared and the differing ones; numbers within ``atol`` match, NaN matches NaN."""
    diffs = []
    for key in sorted(set(saved) | set(new), key=lambda k: (k.startswith("epoch"), k)):
        a, b = saved.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            if (math.isnan(a) and math.isnan(b)) or abs(a - b) <= atol:
                continue
        elif a == b:
            continue
        diffs.append((key, a, b))
    return len(set(saved) | set(new)), diffs


def _read_log(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def reproduce(run_dir: str | Path, *, device: str | None = None, atol: float | None = None, data: str | None = None,
              work_dir: str | Path | None = None, keep: bool = False) -> Reproduction:
    """Train ``run_dir`` again from its config.toml (in a temporary folder) and compare the results.

    ``device`` defaults to the device type the run used; ``atol`` to 0 on CPU and ``CUDA_ATOL`` on
    CUDA; ``data`` replaces the config's dataset folder (when it has moved).
    """

    run = Path(run_dir)
    done, cfg_path = run / "metrics.json", run / "config.toml"
    if not done.is_file() or not cfg_path.is_file():
        raise MedaugError(f"{run}: not a finished run (needs metrics.json and config.toml); pass a folder like runs/x/data/none/shot-all/seed-0")
    try:
        saved = json.loads(done.read_text())
    except json.JSONDecodeError:
        raise MedaugError(f"{done}: not valid JSON") from None
    values = load_toml(cfg_path).get("train", {})
    cfg = from_dict(TrainConfig, values, str(cfg_path))
    values = {**cfg.to_dict(), "progress": False}
    if data:
        values["data"] = str(data)
    if not Path(values["data"]).exists() and not data:
        raise MedaugError(f"{cfg_path}: data folder {values['data']} not found; pass --data with its new location")
    saved_device = str(saved.get("device", "cpu"))
    import torch

    want = device or saved_device.split(":")[0]
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise MedaugError(f"{run}: trained on {saved_device}, and this machine has no CUDA; reproduce it on a CUDA machine, "
                          "or pass --device cpu --atol 0.05 to compare across devices (not expected to match exactly)")
    values["device"] = want
    tol = atol if atol is not None else (CUDA_ATOL if want.startswith("cuda") else 0.0)
    result = Reproduction(run, want, tol)
    if want.split(":")[0] != saved_device.split(":")[0]:
        result.notes.append(f"trained on {saved_device}, reproduced on {want}: bit-exact agreement is not expected")
    prov = saved.get("provenance", {})

    commit, _ = git_state()
    if saved.get("medaug_version") not in (None, __version__):
        result.notes.append(f"run made with medaug {saved.get('medaug_version')}, reproduced with {__version__}")
    if prov.get("git_commit") and commit and prov["git_commit"] != commit:
        result.notes.append(f"run made at git commit {prov['git_commit'][:12]}, reproduced at {commit[:12]}")
    if prov.get("packages", {}).get("torch") and prov["packages"]["torch"] != torch.__version__:
        result.notes.append(f"run made with torch {prov['packages']['torch']}, reproduced with {torch.__version__}")
    if values.get("baseline") and not (Path(values["baseline"]) / "best.pt").is_file():
        raise MedaugError(f"{cfg_path}: baseline {values['baseline']} has no best.pt; it is needed to reproduce this run")

    # CPU kernels split reductions across threads: a different thread count changes the last bits
    threads = torch.get_num_threads()
    if isinstance(prov.get("threads"), int) and prov["threads"] != threads:
        result.notes.append(f"using {prov['threads']} torch threads like the original run (this process had {threads})")
        torch.set_num_threads(prov["threads"])
    elif "threads" not in prov:
        result.notes.append("the run did not record its torch thread count; CPU results can differ in the last bits "
                            "if it differs from this process's")
    tmp = Path(tempfile.mkdtemp(prefix="medaug-reproduce-", dir=work_dir))
    try:
        new = fit(TrainConfig(**values), tmp / "run")
        before, after = flatten(saved, _read_log(run)), flatten(new, _read_log(tmp / "run"))
        added = sorted(set(after) - set(before))  # values a later medaug records (e.g. test.per_class): nothing to compare
        if added:
            result.notes.append(f"{len(added)} value(s) the run did not record (written by a later medaug, e.g. {added[0]}) "
                                "are not compared")
        result.compared, result.diffs = compare(before, {k: v for k, v in after.items() if k in before}, tol)
    finally:
        torch.set_num_threads(threads)
        if keep:
            result.notes.append(f"reproduced run kept in {tmp / 'run'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result
