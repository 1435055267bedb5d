"""MedMNIST: v2's own model and protocol (28-px ResNets, multistep schedule), sets by name, real data in the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.models.classifiers import classifier_info, create_classifier
from medaug.train import make_scheduler


@pytest.mark.parametrize("name", ["resnet18_small", "resnet50_small"])
def test_small_resnet_has_medmnist_stem_and_named_layers(name):
    net = create_classifier(name, 1, 3)
    assert classifier_info(name).small_stem and not classifier_info(name.removesuffix("_small")).small_stem
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.padding == (1, 1)
    shapes = {}
    net.get_submodule(classifier_info(name).cam).register_forward_hook(lambda m, i, o: shapes.update(cam=tuple(o.shape)))
    net.eval()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    assert shapes["cam"][-2:] == (4, 4)  # 28 -> 28 (stem, no max-pool) -> 14 -> 7 -> 4; the ImageNet stem gives 1 x 1
    assert net.get_submodule(classifier_info(name).head).out_features == 3
    big = create_classifier(name.removesuffix("_small"), 1, 3)
    assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2)


def _lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    out = []
    for _ in range(epochs):  # the lr each epoch trains with
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_schedule_is_medmnist_protocol():
    cfg = TrainConfig(data="x", epochs=100, lr=1e-3, schedule="multistep", milestones=[50, 75])
    lrs = _lrs(cfg, 100)
    assert lrs[0] == lrs[49] == pytest.approx(1e-3)
    assert lrs[50] == lrs[74] == pytest.approx(1e-4)
    assert lrs[75] == lrs[99] == pytest.approx(1e-5)
    assert _lrs(TrainConfig(data="x", schedule="none"), 3) == [1e-3] * 3


@pytest.mark.parametrize("values, msg", [
    (dict(schedule="multistep"), "needs milestones"),
    (dict(schedule="multistep", milestones=[75, 50]), "increasing"),
    (dict(schedule="multistep", milestones=[0, 5]), "milestones must each be >= 1, got 0"),
    (dict(schedule="multistep", milestones=[5.5]), "milestones should be list of int, got \\[5.5\\]"),
    (dict(schedule="step"), "schedule should be one of 'cosine', 'none', 'multistep', got 'step'"),
    (dict(lr_gamma=0.0), "lr_gamma"),
])
def test_multistep_config_is_validated(values, msg):
    with pytest.raises(MedaugError, match=msg):
        TrainConfig(data="x", **values)


def test_multistep_run_logs_its_schedule(tiny_cfg, tmp_path):
    from medaug.train import fit

    cfg = tiny_cfg(epochs=3, schedule="multistep", milestones=[1, 2], lr=1e-3, batch_size=32)
    fit(cfg, tmp_path / "r")
    import json

    rows = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    # each row's lr is the one after that epoch's scheduler step: x0.1 after epochs 1 and 2
    assert [r["lr"] for r in rows] == pytest.approx([1e-4, 1e-5, 1e-5])


# --- MedMNIST by name (the official package), offline ---------------------------------------------

SHARED = Path(os.environ.get("MEDAUG_PNEUMONIAMNIST", Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist"))


def shared_npz() -> Path:
    npz = SHARED / "pneumoniamnist.npz"
    if not npz.is_file():
        pytest.skip(f"real PneumoniaMNIST not at {SHARED}: `medaug data fetch pneumoniamnist --root DIR`, then MEDAUG_PNEUMONIAMNIST=DIR")
    return npz


@pytest.fixture
def no_download(monkeypatch):
    import torch.hub

    def refuse(url, dst, *a, **k):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def mm_root(tmp_path, monkeypatch):
    """A MedMNIST root holding a symlink to the shared (read-only) file; $MEDAUG_MEDMNIST points at it."""
    root = tmp_path / "medmnist"
    root.mkdir()
    (root / "pneumoniamnist.npz").symlink_to(shared_npz())
    monkeypatch.setenv("MEDAUG_MEDMNIST", str(root))
    return root


def test_package_reads_an_existing_file_without_downloading(mm_root, no_download):
    from medaug.data.medmnist_hub import fetch

    path, downloaded, counts = fetch("PneumoniaMNIST", 28, mm_root)
    assert path == mm_root / "pneumoniamnist.npz" and not downloaded
    assert counts == {"train": 4708, "val": 524, "test": 624}
    assert sorted(p.name for p in mm_root.iterdir()) == ["pneumoniamnist.npz"]  # nothing written beside it


def test_spec_resolves_by_size_and_names_classes_from_info(mm_root, no_download, tmp_path):
    from medaug.data.index import read_index
    from medaug.data.medmnist_hub import resolve
    from medaug.experiments import dataset_name

    assert resolve("medmnist:pneumoniamnist", 28) == mm_root / "pneumoniamnist.npz"
    assert resolve(tmp_path, 28) == tmp_path  # a path stays a path
    index = read_index("medmnist:pneumoniamnist")
    assert index.format == "medmnist" and index.classes == ["normal", "pneumonia"]  # no classes.txt beside it: INFO
    assert dataset_name("medmnist:pneumoniamnist") == "pneumoniamnist"
    assert dataset_name("medmnist:pneumoniamnist_64") == "pneumoniamnist_64"


def test_a_failed_download_leaves_nothing(tmp_path, monkeypatch):
    import torch.hub

    from medaug.data.medmnist_hub import fetch

    def corrupt(url, dst, *a, **k):
        Path(dst).write_bytes(b"not the published file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", corrupt)
    with pytest.raises(MedaugError, match="MD5"):
        fetch("breastmnist", 64, tmp_path)
    assert list(tmp_path.iterdir()) == []

    def offline(url, dst, *a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MedaugError, match="check the connection"):
        fetch("breastmnist", 28, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, size, msg", [
    ("nopemnist", 28, "unknown MedMNIST set 'nopemnist'"),
    ("chestmnist", 28, "multi-label"),
    ("organmnist3d", 28, "3D"),
    ("pneumoniamnist", 32, "28, 64, 128, 224"),
])
def test_fetch_refuses_clearly(tmp_path, name, size, msg):
    from medaug.data.medmnist_hub import fetch

    with pytest.raises(MedaugError, match=msg):
        fetch(name, size, tmp_path, download=False)


def test_cli_data_fetch_finds_the_shared_file(mm_root):
    from test_cli import medaug

    proc = medaug("data", "fetch", "pneumoniamnist", "--root", mm_root)
    assert proc.returncode == 0, proc.stderr
    assert "found" in proc.stdout and "train 4708, val 524, test 624" in proc.stdout and "normal, pneumonia" in proc.stdout


# --- real chest X-rays in the suite --------------------------------------------------------------

def test_none_learns_real_pneumoniamnist(tmp_path):
    """The tiny CNN on 500 real training images per class, 3 epochs: test AUROC >= 0.9 (0.95 measured)."""
    from medaug.train import fit

    cfg = TrainConfig(data=str(shared_npz().parent), size=28, epochs=3, n_shot=500, seed=0, progress=False)
    result = fit(cfg, tmp_path / "none")
    assert result["n_train"] == 1000 and result["n_test"] == 624 and result["classes"] == ["normal", "pneumonia"]
    assert result["test"]["auroc"] >= 0.9, result["test"]
