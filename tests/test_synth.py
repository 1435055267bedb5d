"""Synthetic radiographs: determinism, ground-truth regions, shortcut in train only, both layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medaug.data.index import read_index
from medaug.data.synth import class_names, generate, render
from medaug.errors import MedaugError


def test_render_is_deterministic_and_roi_marks_the_finding():
    a = render(np.random.default_rng(5), 64, 1, 2, False)
    b = render(np.random.default_rng(5), 64, 1, 2, False)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for seed in range(10):
        img, roi = render(np.random.default_rng(seed), 64, 1, 2, False)
        assert img.dtype == np.uint8 and img.shape == (64, 64)
        assert 0.002 < roi.mean() < 0.06  # small but present
        _, roi0 = render(np.random.default_rng(seed), 64, 0, 2, False)
        assert roi0.sum() == 0


def test_multiclass_findings_all_have_regions():
    for label in range(1, 6):
        _, roi = render(np.random.default_rng(label), 64, label, 6, False)
        assert roi.sum() > 0, class_names(6)[label]


def test_generate_mura_layout_is_readable_and_patient_disjoint(tmp_path):
    root = generate(tmp_path / "d", n_train=40, n_test=20, size=32, seed=1, progress=False)
    index = read_index(root)
    frame = index.frame
    assert index.format == "mura" and index.classes == ["negative", "positive"]
    assert (frame.split == "train").sum() == 40 and (frame.split == "test").sum() == 20
    assert set(frame[frame.split == "train"].group).isdisjoint(frame[frame.split == "test"].group)
    assert (frame.roi != "").all()
    assert abs(frame.label.mean() - 0.5) < 0.2
    # labels agree with the labeled-studies CSV
    studies = pd.read_csv(root / "MURA-v1.1" / "train_labeled_studies.csv", header=None, names=["study", "label"])
    assert set(studies.label) == {0, 1}


def test_same_seed_same_bytes(tmp_path):
    a = generate(tmp_path / "a", n_train=8, n_test=4, size=32, seed=3, progress=False)
    b = generate(tmp_path / "b", n_train=8, n_test=4, size=32, seed=3, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_shortcut_only_in_train(tmp_path):
    root = generate(tmp_path / "d", n_train=40, n_test=20, size=32, seed=0, shortcut=1.0, progress=False)
    meta = pd.read_csv(root / "synth_meta.csv")
    assert meta[meta.split == "train"].shortcut.all()
    assert not meta[meta.split == "test"].shortcut.any()


def test_folders_layout_multiclass(tmp_path):
    root = generate(tmp_path / "f", n_train=24, n_test=12, size=32, classes=4, layout="folders", seed=0, progress=False)
    for split in ("train", "test"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(class_names(4))
    roi = next((root / "train" / "lesion").glob("*_roi.png"))
    assert np.asarray(Image.open(roi)).max() == 255


@pytest.mark.parametrize("kwargs,needle", [
    (dict(size=16), "--size"), (dict(classes=9), "--classes"), (dict(shortcut=2.0), "--shortcut"),
    (dict(classes=4), "--layout folders"), (dict(layout="zip"), "--layout"), (dict(n_train=1), "--n-train"),
])
def test_bad_arguments(tmp_path, kwargs, needle):
    with pytest.raises(MedaugError, match=needle):
        generate(tmp_path / "x", progress=False, **{"n_train": 8, "n_test": 4, **kwargs})


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(MedaugError, match="already exists"):
        generate(tmp_path / "x", n_train=8, n_test=4, size=32, progress=False)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
