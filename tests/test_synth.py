"""Synthetic radiographs: determinism, ground-truth regions, shortcut in train only, both layouts, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medaug.data.index import read_index
from medaug.data.synth import FINDINGS, META_COLUMNS, class_names, generate, render, shortcut_letter
from medaug.errors import MedaugError


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_class_names():
    assert FINDINGS == ["negative", "positive"] == class_names(2)
    assert class_names(4) == ["normal", "fracture", "lesion", "hardware"]
    assert len(class_names(6)) == 6


def test_render_is_deterministic():
    a = render(np.random.default_rng(5), 64, 1, 2, False)
    b = render(np.random.default_rng(5), 64, 1, 2, False)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].dtype == np.uint8 and a[0].shape == (64, 64) and a[1].dtype == np.uint8
    assert set(np.unique(a[1])) <= {0, 1}


@pytest.mark.parametrize("classes", [2, 6])
def test_roi_small_and_present_exactly_for_findings(classes):
    for label in range(classes):
        for seed in range(6):
            img, roi = render(np.random.default_rng(seed), 64, label, classes, False)
            if label == 0:
                assert roi.sum() == 0
            else:
                assert 0.004 < roi.mean() < 0.05, (class_names(classes)[label], roi.mean())


def test_same_seed_same_bytes_and_prefix_stable(tmp_path):
    a = generate(tmp_path / "a", n_train=8, n_test=4, size=32, seed=3, progress=False)
    b = generate(tmp_path / "b", n_train=8, n_test=4, size=32, seed=3, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # image i of a split is the same whatever n is
    c = generate(tmp_path / "c", n_train=12, n_test=6, size=32, seed=3, progress=False)
    ma, mc = pd.read_csv(a / "synth_meta.csv"), pd.read_csv(c / "synth_meta.csv")
    for split in ("train", "test"):
        pa, pc = ma[ma.split == split].path.tolist(), mc[mc.split == split].path.tolist()
        for i in range(len(pa)):
            assert np.array_equal(_png(a / pa[i]), _png(c / pc[i]))
    d = generate(tmp_path / "d", n_train=8, n_test=4, size=32, seed=4, progress=False)
    assert (a / ma.path[0]).read_bytes() != (d / ma.path[0]).read_bytes()


def test_mura_layout_is_readable_and_patient_disjoint(tmp_path):
    root = generate(tmp_path / "d", n_train=40, n_test=20, size=32, seed=1, progress=False)
    assert root == tmp_path / "d"
    assert not list(tmp_path.glob("*.tmp-*"))
    index = read_index(root)
    frame = index.frame
    assert index.format == "mura" and index.classes == ["negative", "positive"]
    assert (frame.split == "train").sum() == 40 and (frame.split == "test").sum() == 20
    assert set(frame[frame.split == "train"].group).isdisjoint(frame[frame.split == "test"].group)
    assert (frame.roi != "").all()
    for split in ("train", "test"):
        counts = frame[frame.split == split].label.value_counts()
        assert abs(counts[0] - counts[1]) <= 2  # balanced
    for row in frame.itertuples():  # masks: empty exactly on negatives
        assert (_png(row.roi).max() == 255) == (row.label == 1)
    mdir = root / "MURA-v1.1"
    paths = (mdir / "train_image_paths.csv").read_text().split()
    assert paths[0].startswith("MURA-v1.1/train/XR_ELBOW/patient00001/study1_") and paths[0].endswith("/image1.png")
    assert all((root / p).is_file() for p in paths)
    studies = pd.read_csv(mdir / "valid_labeled_studies.csv", header=None, names=["study", "label"])
    assert all(s.startswith("MURA-v1.1/valid/") and s.endswith("/") for s in studies.study)
    assert all(s.rstrip("/").endswith("_positive") == bool(lab) for s, lab in zip(studies.study, studies.label))
    images_per_study = pd.Series([p.rsplit("/", 1)[0] for p in paths]).value_counts()
    assert images_per_study.max() <= 3


def test_meta_and_shortcut_in_train_only(tmp_path):
    root = generate(tmp_path / "d", n_train=60, n_test=60, size=32, seed=0, shortcut=1.0, progress=False)
    meta = pd.read_csv(root / "synth_meta.csv", keep_default_na=False)
    assert list(meta.columns) == META_COLUMNS
    train, test = meta[meta.split == "train"], meta[meta.split == "test"]
    assert train.shortcut.all() and not test.shortcut.any()
    assert (train.letter == np.where(train.label == 1, "R", "L")).all()
    shown = test[test.letter != ""]
    assert 0.2 < len(shown) / len(test) < 0.8  # the letter appears at random on test
    agree = (shown.letter == np.where(shown.label == 1, "R", "L")).mean()
    assert 0.2 < agree < 0.8  # and says nothing about the label
    assert set(test.ruler) == {0, 1}
    assert ((meta.finding == "none") == (meta.label == 0)).all()


def test_no_shortcut_means_independent_letter(tmp_path):
    root = generate(tmp_path / "d", n_train=60, n_test=8, size=32, seed=0, shortcut=0.0, progress=False)
    meta = pd.read_csv(root / "synth_meta.csv", keep_default_na=False)
    assert not meta.shortcut.any() and 0.2 < (meta.letter != "").mean() < 0.8


def test_folders_layout_multiclass_with_shortcut(tmp_path):
    root = generate(tmp_path / "f", n_train=24, n_test=12, size=32, classes=4, layout="folders", seed=0,
                    shortcut=1.0, progress=False)
    for split in ("train", "test"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(class_names(4))
        for name in class_names(4):
            images = [p for p in (root / split / name).glob("*.png") if not p.stem.endswith("_roi")]
            assert images and all(p.name.startswith("patient") for p in images)
            for p in images:
                roi = _png(p.with_name(p.stem + "_roi.png"))
                assert (roi.max() == 255) == (name != "normal")
    meta = pd.read_csv(root / "synth_meta.csv", keep_default_na=False)
    train = meta[meta.split == "train"]
    assert all((row.letter, row.letter_corner) == shortcut_letter(row.label, 4) for row in train.itertuples())


@pytest.mark.parametrize("kwargs,needle", [
    (dict(size=16), "--size"), (dict(classes=1), "--classes"), (dict(classes=9), "--classes"),
    (dict(shortcut=2.0), "--shortcut"), (dict(shortcut=-0.1), "--shortcut"), (dict(classes=4), "--layout folders"),
    (dict(layout="zip"), "--layout"), (dict(n_train=1), "--n-train"), (dict(n_test=0), "--n-test"),
])
def test_bad_arguments(tmp_path, kwargs, needle):
    with pytest.raises(MedaugError, match=needle) as err:
        generate(tmp_path / "x", progress=False, **{"n_train": 8, "n_test": 4, **kwargs})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_refuses_to_overwrite_but_fills_an_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(MedaugError, match="already exists"):
        generate(tmp_path / "x", n_train=8, n_test=4, size=32, progress=False)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    (tmp_path / "y").mkdir()
    generate(tmp_path / "y", n_train=4, n_test=2, size=32, progress=False)
    assert (tmp_path / "y" / "synth_meta.csv").is_file()


def test_progress_bar_runs(tmp_path):
    generate(tmp_path / "p", n_train=4, n_test=2, size=32, progress=True)
