"""Readers, decoding and `medaug data check/prepare`, on fixtures in each format's real on-disk layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import nibabel.testing
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medaug.config import TrainConfig
from medaug.data.cache import build_cache, default_cache_root
from medaug.data.check import check_dataset
from medaug.data.index import read_index
from medaug.data.io import load_image
from medaug.data.splits import k_shot
from medaug.errors import MedaugError
from medaug.train import fit

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def png(path: Path, value: int = 128, size: int = 24, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 255, (size, size) if mode == "L" else (size, size, len(mode)), dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def imagefolder(root: Path, split: bool = False, n: int = 6) -> Path:
    for s in (["train", "val", "test"] if split else [""]):
        for c in ("benign", "malignant"):
            for i in range(n):
                png(root / s / c / f"{c}{i}.png", value=i + 10 * len(c))
    return root


def test_imagefolder_unsplit_and_split(tmp_path):
    index = read_index(imagefolder(tmp_path / "a"))
    assert index.format == "imagefolder" and index.classes == ["benign", "malignant"]
    assert set(index.frame.split) == {""} and len(index.frame) == 12
    split = read_index(imagefolder(tmp_path / "b", split=True))
    assert split.frame.split.value_counts().to_dict() == {"train": 12, "valid": 12, "test": 12}


def test_csv_reader_paths_labels_and_errors(tmp_path):
    for i in range(4):
        png(tmp_path / "img" / f"{i}.png", value=i)
    (tmp_path / "labels.csv").write_text("path,label,group\n" + "".join(f"img/{i}.png,{'ab'[i % 2]},p{i}\n" for i in range(4)))
    index = read_index(tmp_path)
    assert index.format == "csv" and index.classes == ["a", "b"] and index.frame.group.tolist() == ["p0", "p1", "p2", "p3"]
    (tmp_path / "labels.csv").write_text("path,label\n../outside.png,a\nimg/1.png,b\n")
    with pytest.raises(MedaugError, match="escapes"):
        read_index(tmp_path, "csv")
    (tmp_path / "labels.csv").write_text("file,diagnosis\nimg/1.png,b\n")
    with pytest.raises(MedaugError, match="missing column"):
        read_index(tmp_path, "csv")
    (tmp_path / "labels.csv").write_text("path,label\nimg/0.png,a\nimg/1.png,c\n")
    with pytest.raises(MedaugError, match="not in the class list"):
        read_index(tmp_path, "csv", classes=["a", "b"])


def test_format_detection_prefers_specific_layouts(tiny_data, tmp_path):
    assert read_index(tiny_data).format == "mura"
    with pytest.raises(MedaugError, match="unknown data format"):
        read_index(tiny_data, "nonsense")


def test_dicom_sample_files():
    ct = load_image(get_testdata_file("CT_small.dcm"))
    assert ct.shape == (128, 128) and ct.dtype == np.float32 and 0 <= ct.min() < ct.max() <= 1
    assert load_image(get_testdata_file("MR_small.dcm")).shape == (64, 64)
    with pytest.raises(MedaugError, match="multi-frame"):
        load_image(PYDICOM_FILES / "rtdose.dcm")
    with pytest.raises(MedaugError, match="no pixel data"):
        load_image(PYDICOM_FILES / "reportsi.dcm")


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    normal = load_image(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    assert np.allclose(load_image(tmp_path / "mono1.dcm"), 1 - normal)


def test_nifti_sample_files_give_2d_slices():
    vol = load_image(os.path.join(nibabel.testing.data_path, "example4d.nii.gz"))
    assert vol.ndim == 2 and vol.max() <= 1
    img = nib.load(os.path.join(nibabel.testing.data_path, "anatomical.nii"))
    axis2 = img.shape[2]
    first = load_image(os.path.join(nibabel.testing.data_path, "anatomical.nii"), slice_index=0)
    assert first.shape == img.shape[:2]
    with pytest.raises(MedaugError, match="out of range"):
        load_image(os.path.join(nibabel.testing.data_path, "anatomical.nii"), slice_index=axis2)


@pytest.mark.parametrize("make,needle", [
    (lambda p: p.write_bytes(png(p).read_bytes()[:60]), "cannot decode"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("not an image at all"), "cannot decode"),
])
def test_bad_files_name_the_file(tmp_path, make, needle):
    bad = tmp_path / "bad.png"
    make(bad)
    with pytest.raises(MedaugError, match=needle) as err:
        load_image(bad)
    assert "bad.png" in str(err.value)


def test_odd_but_valid_images(tmp_path):
    rgba = png(tmp_path / "rgba.png", mode="RGBA")
    with Image.open(rgba) as img:
        rgb = np.asarray(img)[..., :3]
    assert np.array_equal(load_image(rgba), rgb.astype(np.float32) / 255)  # colour kept, alpha dropped
    wide = np.zeros((32, 32), np.uint16)
    wide[0, 0], wide[1:, :] = 65535, 100  # one hot pixel, huge dynamic range
    wide[16:, :] = 300
    Image.fromarray(wide).save(tmp_path / "wide16.png")
    arr = load_image(tmp_path / "wide16.png")
    assert arr[20, 5] > arr[5, 5]  # the robust range keeps the real contrast visible
    Image.new("L", (10_000, 10_000), 77).save(tmp_path / "huge.png")
    huge = load_image(tmp_path / "huge.png")
    assert max(huge.shape) <= 4096 and abs(huge.mean() - 77 / 255) < 1e-3


def test_empty_class_after_k_shot(tiny_data):
    frame = read_index(tiny_data).frame
    with pytest.raises(MedaugError, match="--n-shot 1000"):
        k_shot(frame, 1000, 0, ["negative", "positive"])


def test_check_finds_leaks_duplicates_and_unreadable_files(tmp_path):
    root = imagefolder(tmp_path / "d", split=True, n=4)
    shutil.copy(root / "train" / "benign" / "benign0.png", root / "test" / "benign" / "copy.png")
    (root / "train" / "malignant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    r = check_dataset(root, sample=None)
    text = " ".join(r.problems)
    assert "identical file" in text and "unreadable" in text
    assert any("broken.png" in p for p in r.bad_paths)
    assert any("image-level" in n for n in r.notes)
    proc = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(root), "--all", "--fix-list", str(tmp_path / "bad.txt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "problem" in proc.stdout and "broken.png" in (tmp_path / "bad.txt").read_text()
    ok = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(imagefolder(tmp_path / "ok"))], capture_output=True, text=True)
    assert ok.returncode == 0 and "usable" in ok.stdout


def test_prepare_skips_and_counts_corrupt_files_and_reuses_the_cache(tmp_path):
    root = imagefolder(tmp_path / "d", n=5)
    (root / "benign" / "trunc.png").write_bytes(png(tmp_path / "x.png").read_bytes()[:50])
    proc = subprocess.run([sys.executable, "-m", "medaug", "data", "prepare", str(root), "--size", "32", "--out", str(tmp_path / "c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "cached 10 images" in proc.stdout and "skipped 1" in proc.stdout
    assert "trunc.png" in (tmp_path / "c" / "skipped.csv").read_text()
    images = np.load(tmp_path / "c" / "images.npy")
    assert images.shape == (10, 32, 32) and images.dtype == np.uint8
    stamp = (tmp_path / "c" / "meta.json").stat().st_mtime_ns
    index = read_index(root)
    build_cache(index, 32, tmp_path / "c", strict=False, progress=False)  # unchanged sources: reused
    assert (tmp_path / "c" / "meta.json").stat().st_mtime_ns == stamp
    os.utime(root / "benign" / "benign0.png", (1, 1))  # same bytes, new time (a re-copy): reused
    build_cache(read_index(root), 32, tmp_path / "c", strict=False, progress=False)
    assert (tmp_path / "c" / "meta.json").stat().st_mtime_ns == stamp
    png(root / "benign" / "benign0.png", value=7)  # a source's content changed: rebuilt
    build_cache(read_index(root), 32, tmp_path / "c", strict=False, progress=False)
    assert (tmp_path / "c" / "meta.json").stat().st_mtime_ns != stamp
    memo = json.loads((default_cache_root() / "file-hashes.json").read_text())  # the hash memo: newest version only
    assert sum(key.startswith(f"{os.path.realpath(root / 'benign' / 'benign0.png')}|") for key in memo) == 1


@pytest.mark.parametrize("layout", ["imagefolder", "imagefolder-split", "csv", "prepared-cache"])
def test_each_reader_trains_end_to_end(tmp_path, layout):
    if layout == "csv":
        for i in range(16):
            png(tmp_path / "d" / "img" / f"{i}.png", value=i)
        (tmp_path / "d" / "list.csv").write_text("path,label,group\n" + "".join(f"img/{i}.png,{i % 2},p{i // 2}\n" for i in range(16)))
        data = tmp_path / "d"
    elif layout == "prepared-cache":
        data = build_cache(read_index(imagefolder(tmp_path / "d", n=8)), 32, tmp_path / "prepared", progress=False)
    else:
        data = imagefolder(tmp_path / "d", split=layout.endswith("split"), n=8)
    result = fit(TrainConfig(data=str(data), size=32, epochs=1, batch_size=8, progress=False, cache=str(tmp_path / "c")), tmp_path / "run")
    assert result["n_train"] > 0 and result["n_test"] > 0 and 0 <= result["test"]["accuracy"] <= 1


# --- masks by the conventions public datasets use -------------------------------------------------------

def mask_png(path: Path, box: tuple[int, int, int, int] | None, size: int = 24) -> Path:
    """A 0/255 mask with the box (y1, y2, x1, x2) set; None = an empty mask (BUSI's normal images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size, size), np.uint8)
    if box:
        arr[box[0]:box[1], box[2]:box[3]] = 255
    Image.fromarray(arr).save(path)
    return path


def busi(root: Path, n: int = 4) -> Path:
    """The breast-ultrasound (BUSI) layout: 'benign (1).png' with 'benign (1)_mask.png' beside it, a second
    lesion as 'benign (1)_mask_1.png', normal images with empty masks; 'benign (4).png' has none."""
    for c, cls in enumerate(("benign", "malignant", "normal")):
        for i in range(1, n + 1):
            png(root / cls / f"{cls} ({i}).png", value=100 + 10 * c + i)
            if (cls, i) != ("benign", n):
                mask_png(root / cls / f"{cls} ({i})_mask.png", None if cls == "normal" else (2, 8, 2, 8))
    mask_png(root / "benign" / "benign (1)_mask_1.png", (16, 22, 16, 22))
    return root


def test_busi_masks_are_masks_not_images_and_several_are_merged(tmp_path):
    from medaug.data.io import load_sample

    index = read_index(busi(tmp_path / "Dataset_BUSI_with_GT"))
    frame = index.frame
    assert index.format == "imagefolder" and index.classes == ["benign", "malignant", "normal"]
    assert len(frame) == 12 and not any("_mask" in Path(p).name for p in frame.path)  # 12 images, not 12 + 12 masks
    first = frame[frame.path.str.endswith("benign (1).png")].iloc[0]
    assert [Path(m).name for m in first.roi.split("|")] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    _, roi = load_sample(first, 24)
    assert roi[4, 4] == 1 and roi[18, 18] == 1 and roi.sum() == 2 * 36  # the union of both lesions
    assert frame[frame.path.str.endswith("benign (4).png")].roi.iloc[0] == ""
    r = check_dataset(tmp_path / "Dataset_BUSI_with_GT", sample=None)
    assert r.masks.startswith("11 of 12 images have a mask (<stem>_mask: 10, <stem>_mask + <stem>_mask_N: 1;")
    assert "several masks merged by union: 1 image(s)" in r.masks and not r.problems


def test_seg_roi_masks_folder_and_csv_mask_conventions(tmp_path):
    # <stem>_seg and <stem>_roi beside the image; a mask without its image is noted, never read as an image
    for cls, kind in (("a", "seg"), ("b", "roi")):
        for i in range(3):
            png(tmp_path / "f" / cls / f"x{i}.png", value=10 * ord(cls) + i)
            mask_png(tmp_path / "f" / cls / f"x{i}_{kind}.png", (0, 4, 0, 4))
    mask_png(tmp_path / "f" / "a" / "lost_seg.png", (0, 4, 0, 4))
    index = read_index(tmp_path / "f")
    assert len(index.frame) == 6 and (index.frame.roi != "").all()
    assert index.info["orphan_masks"] == [str(tmp_path / "f" / "a" / "lost_seg.png")]
    r = check_dataset(tmp_path / "f", sample=None)
    assert not r.duplicates and not r.problems
    assert "6 of 6 images have a mask (<stem>_roi: 3, <stem>_seg: 3)" in r.masks
    assert any("1 mask file(s) without an image" in n and "lost_seg.png" in n for n in r.notes)
    # COVID-19 radiography's masks/ folder beside images/, here inside a split layout (read as ImageFolder)
    for split in ("train", "test"):
        for cls in ("COVID", "Normal"):
            for i in range(3):
                png(tmp_path / "s" / split / cls / "images" / f"{cls}-{i}.png", value=len(split) * 7 + ord(cls[0]) + i)
                mask_png(tmp_path / "s" / split / cls / "masks" / f"{cls}-{i}.png", (4, 12, 2, 9))
    index = read_index(tmp_path / "s")
    assert index.format == "imagefolder" and len(index.frame) == 12
    assert all(Path(p).parent.name == "images" for p in index.frame.path)
    assert all(Path(r).parent.name == "masks" and Path(r).name == Path(p).name for p, r in zip(index.frame.path, index.frame.roi))
    assert "12 of 12 images have a mask (masks/ folder: 12)" in check_dataset(tmp_path / "s", sample=None).masks
    # a CSV's mask column (several masks separated by |)
    for i in range(4):
        png(tmp_path / "c" / f"{i}.png", value=200 + i)
        mask_png(tmp_path / "c" / f"{i}-lesion.png", (0, 6, 0, 6))
    mask_png(tmp_path / "c" / "0-second.png", (10, 14, 10, 14))
    rows = [f"{i}.png,{'ab'[i % 2]},{i}-lesion.png" + ("|0-second.png" if i == 0 else "") for i in range(4)]
    (tmp_path / "c" / "list.csv").write_text("path,label,mask\n" + "\n".join(rows) + "\n")
    index = read_index(tmp_path / "c")
    assert (index.frame.roi != "").all() and index.frame.roi.iloc[0].count("|") == 1
    assert "4 of 4 images have a mask (CSV column: 4; several masks merged by union: 1 image(s)" in check_dataset(tmp_path / "c").masks


def test_mask_metrics_work_on_busi_masks(tmp_path):
    """The mask metrics count the images whose mask marks a lesion (not the empty masks, not the images without one)."""
    from medaug.data.cache import load_dataset

    root = busi(tmp_path / "b", n=8)
    ds = load_dataset(root, size=24, progress=False)
    for split in (ds.train, ds.valid, ds.test):
        assert split.rois is not None and split.has_roi is not None
        assert list(split.has_roi) == [not p.endswith("benign (8).png") for p in split.paths]
    result = fit(TrainConfig(data=str(root), size=24, epochs=1, batch_size=4, method="cutout", progress=False,
                             cache=str(tmp_path / "c")), tmp_path / "run")
    lesions = int(sum(("normal" not in p) and not p.endswith("benign (8).png") for p in ds.test.paths))
    assert result["mask"]["n_roi"] == lesions and 0 <= result["mask"]["mask_iou"] <= 1
    saved = np.load(tmp_path / "run" / "masks.npz")
    assert "has_roi" in saved and saved["has_roi"].dtype == bool


# --- exact duplicates: label conflicts, copies across and within splits --------------------------------

def test_check_finds_duplicates_within_and_across_splits_and_classes(tmp_path):
    root = imagefolder(tmp_path / "d", n=4)  # unsplit: benign0..3, malignant0..3
    shutil.copy(root / "benign" / "benign0.png", root / "malignant" / "same-bytes.png")  # a label conflict
    shutil.copy(root / "benign" / "benign1.png", root / "benign" / "copy of benign1.png")  # a copy within the class
    r = check_dataset(root, sample=None)
    kinds = [d.kind for d in r.duplicates]
    assert kinds == ["label conflict", "same class"]
    assert r.duplicates[0].describe(r.index.classes).endswith("benign0.png (benign) = " + str(root / "malignant" / "same-bytes.png") + " (malignant)")
    assert any("1 label conflict(s)" in p and "allow_label_conflicts" in p for p in r.problems)
    assert any("identical files within one class" in n and "may put copies in train and test" in n for n in r.notes)
    proc = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(root)], capture_output=True, text=True)
    assert proc.returncode == 2 and "label conflict: " in proc.stdout and "same class: " in proc.stdout
    # a CSV listing one path under two labels is a label conflict too
    for i in range(4):
        png(tmp_path / "c" / f"{i}.png", value=50 + i)
    (tmp_path / "c" / "list.csv").write_text("path,label\n0.png,a\n1.png,a\n2.png,b\n3.png,b\n0.png,b\n")
    r = check_dataset(tmp_path / "c", sample=None)
    assert [d.kind for d in r.duplicates] == ["label conflict"]
    assert r.duplicates[0].describe(r.index.classes).endswith("0.png listed 2 times as a and b")


def test_training_refuses_label_conflicts_unless_told(tmp_path):
    root = imagefolder(tmp_path / "d", n=8)
    shutil.copy(root / "benign" / "benign0.png", root / "malignant" / "same-bytes.png")
    cmd = [sys.executable, "-m", "medaug", "train", "--data", str(root), "--size", "24", "--epochs", "1", "--batch-size", "4",
           "--no-progress", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = " ".join(proc.stderr.split())  # Rich wraps the one line on narrow terminals
    assert "1 label conflict(s)" in line and "benign0.png (benign)" in line and "same-bytes.png (malignant)" in line
    assert "allow_label_conflicts = true" in line and "--allow-label-conflicts" in line
    assert not (tmp_path / "run").exists()  # nothing half-written
    (tmp_path / "run.toml").write_text("[train]\nallow_label_conflicts = true\n")
    proc = subprocess.run(cmd + ["--config", str(tmp_path / "run.toml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "label conflict(s) kept" in proc.stderr
