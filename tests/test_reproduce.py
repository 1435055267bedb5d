"""Provenance in metrics.json, `medaug reproduce` (passes on a CPU run, fails loudly on a tampered
metric) and the optional trackers (lazy imports, clear errors, what gets logged)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types

import pytest

from medaug.errors import MedaugError
from medaug.provenance import provenance
from medaug.reproduce import compare, flatten, reproduce
from medaug.tracking import create_tracker


@pytest.fixture
def tiny_run(tiny_cfg, tmp_path):
    from medaug.train import fit

    out = tmp_path / "run"
    fit(tiny_cfg(epochs=2, method="cutout"), out)
    return out


def medaug(*args):
    return subprocess.run([sys.executable, "-m", "medaug", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_provenance_block(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    prov = m["provenance"]
    assert set(prov) == {"git_commit", "git_dirty", "python", "packages", "device", "threads"}
    assert set(prov["packages"]) == {"torch", "numpy", "monai"} and prov["packages"]["torch"]
    assert prov["device"].startswith("cpu")
    assert socket.gethostname() not in json.dumps(prov)
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert provenance("cpu") == {**prov, "device": provenance("cpu")["device"]}


def test_reproduce_passes_then_fails_on_a_tampered_metric(tiny_run):
    r = reproduce(tiny_run)
    assert r.ok and r.atol == 0 and r.compared > 30, r.diffs
    proc = medaug("reproduce", tiny_run)  # OMP_NUM_THREADS=1 here: reproduce uses the run's recorded thread count
    assert proc.returncode == 0 and "reproduced" in proc.stdout and "exactly" in proc.stdout, proc.stderr

    path = tiny_run / "metrics.json"
    m = json.loads(path.read_text())
    m["test"]["auroc"] += 1e-9  # even a tiny change is caught on the CPU
    path.write_text(json.dumps(m))
    r = reproduce(tiny_run)
    assert not r.ok and [d[0] for d in r.diffs] == ["test.auroc"]
    proc = medaug("reproduce", tiny_run)
    assert proc.returncode == 2
    assert "NOT reproduced" in proc.stderr and "test.auroc" in proc.stderr and "Traceback" not in proc.stderr
    assert medaug("reproduce", tiny_run, "--atol", "1e-6").returncode == 0  # within a stated tolerance


def test_reproduce_errors_are_clear(tmp_path, tiny_run):
    with pytest.raises(MedaugError, match="not a finished run"):
        reproduce(tmp_path)
    cfg = (tiny_run / "config.toml").read_text()
    data = [line for line in cfg.splitlines() if line.startswith("data = ")][0]
    (tiny_run / "config.toml").write_text(cfg.replace(data, f'data = "{tmp_path / "moved"}"'))
    with pytest.raises(MedaugError, match="--data"):
        reproduce(tiny_run)


def test_compare_rules():
    saved = flatten({"test": {"accuracy": 0.5, "auroc": float("nan")}, "wall_s": 3.0, "data_fingerprint": "ab"},
                    [{"epoch": 1, "train_loss": 0.7, "time_s": 1.0}])
    assert "wall_s" not in saved and "epoch 1.time_s" not in saved and saved["epoch 1.train_loss"] == 0.7
    same = dict(saved)
    assert compare(saved, same) == (len(saved), [])  # NaN matches NaN
    new = {**saved, "test.accuracy": 0.505, "data_fingerprint": "cd"}
    n, diffs = compare(saved, new)
    assert {d[0] for d in diffs} == {"test.accuracy", "data_fingerprint"}
    assert {d[0] for d in compare(saved, new, atol=0.01)[1]} == {"data_fingerprint"}
    assert compare(saved, {k: v for k, v in saved.items() if k != "test.accuracy"})[1] == [("test.accuracy", 0.5, "<missing>")]


# --- tracking ----------------------------------------------------------------------------------

class FakeTracker:
    def __init__(self):
        self.params, self.metrics, self.artifacts, self.closed = {}, [], [], False

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, metrics))

    def log_artifact(self, path):
        self.artifacts.append(str(path))

    def close(self):
        self.closed = True


def test_fit_logs_to_a_tracker(tiny_cfg, tmp_path):
    from medaug.train import fit

    fake = FakeTracker()
    fit(tiny_cfg(epochs=2), tmp_path / "r", tracker=fake)
    assert fake.params["method"] == "none" and fake.params["epochs"] == 2
    steps = [s for s, _ in fake.metrics if s is not None]
    assert steps == [1, 2] and "train_loss" in fake.metrics[0][1] and "val_auroc" in fake.metrics[0][1]
    final = fake.metrics[-1][1]
    assert final["test"]["accuracy"] == json.loads((tmp_path / "r" / "metrics.json").read_text())["test"]["accuracy"]
    assert fake.artifacts == [str(tmp_path / "r" / "metrics.json")] and fake.closed


def test_missing_trackers_name_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails even where it is installed
    with pytest.raises(MedaugError, match="pip install mlflow"):
        create_tracker("mlflow", tmp_path)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MedaugError, match="pip install tensorboard"):
        create_tracker("tensorboard", tmp_path)
    with pytest.raises(MedaugError, match="mlflow or tensorboard"):
        create_tracker("wandb", tmp_path)


def test_env_switch_uses_mlflow_with_a_local_sqlite_store(monkeypatch, tiny_cfg, tmp_path):
    calls = []
    fake = types.ModuleType("mlflow")
    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "log_artifact", "end_run"):
        setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MEDAUG_TRACK", "mlflow")
    monkeypatch.delenv("MEDAUG_TRACK_URI", raising=False)
    from medaug.train import fit

    fit(tiny_cfg(epochs=1), tmp_path / "r")
    names = [c[0] for c in calls]
    assert names[:3] == ["set_tracking_uri", "set_experiment", "start_run"] and names[-1] == "end_run"
    assert calls[0][1] == ("sqlite:///mlflow.db",)
    params = [c for c in calls if c[0] == "log_params"][0][1][0]
    assert params["method"] == "none" and all(isinstance(v, str) for v in params.values())
    logged = [c for c in calls if c[0] == "log_metrics"]
    assert logged[0][2]["step"] == 1 and "test.accuracy" in logged[-1][1][0]
    monkeypatch.setenv("MEDAUG_TRACK", "bogus")
    with pytest.raises(MedaugError, match="--track 'bogus'"):
        fit(tiny_cfg(epochs=1), tmp_path / "r2")


def test_tensorboard_tracker_writes_real_event_files(monkeypatch, tiny_cfg, tmp_path):
    """The real TensorBoard writer (installed by `make install`): scalars per epoch, final metrics, config text."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard (requirements-lock.txt installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from medaug.train import fit

    monkeypatch.setenv("MEDAUG_TRACK", "tensorboard")
    monkeypatch.delenv("MEDAUG_TRACK_URI", raising=False)
    fit(tiny_cfg(epochs=2), tmp_path / "r")
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "train_loss" in scalars and "val_auroc" in scalars and "test.accuracy" in scalars
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    final = json.loads((tmp_path / "r" / "metrics.json").read_text())["test"]["accuracy"]
    assert acc.Scalars("test.accuracy")[-1].value == pytest.approx(final)
    assert "config" in " ".join(acc.Tags()["tensors"])
