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
