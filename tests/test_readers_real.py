"""RadImageNet, MedMNIST and COVID-19 Radiography readers, on tiny fixtures in each dataset's real on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medaug.config import TrainConfig
from medaug.data.cache import build_cache
from medaug.data.check import check_dataset
from medaug.data.index import detect_format, read_index
from medaug.data.io import load_image, load_sample, npz_item
from medaug.errors import MedaugError
from medaug.train import fit


def png(path: Path, seed: int, size: int = 24, mode: str = "L", value: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    arr = np.full(shape, value, np.uint8) if value is not None else np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)
    return path


# --- RadImageNet -------------------------------------------------------------------------------------

RADIMAGENET_CLASSES = ["CT/abd/normal", "CT/abd/pancreatitis", "MR/knee/acl", "US/thyroid_nodule"]


def radimagenet(root: Path, n: int = 6, csv: bool = False) -> Path:
    """root/radiology_ai/{CT,MR}/<anatomy>/<pathology>/*.png, root/radiology_ai/US/<pathology>/*.png [+ split CSVs]."""
    rows = {"train": [], "val": [], "test": []}
    for c, cls in enumerate(RADIMAGENET_CLASSES):
        prefix = cls.replace("/", "_").lower()
        for i in range(n):
            rel = f"radiology_ai/{cls}/{prefix}{i:03d}.png"
            png(root / rel, seed=10 * c + i, mode="RGB" if i % 3 == 0 else "L")  # the release mixes RGB and gray PNGs
            split = "train" if i < n - 2 else ("val" if i == n - 2 else "test")
            rows[split].append(f"{rel},{cls}\n")
    if csv:
        for split, lines in rows.items():
            (root / f"RadiologyAI_{split}.csv").write_text("filename,label\n" + "".join(lines))
    return root


def test_radimagenet_unsplit_layout(tmp_path):
    root = radimagenet(tmp_path / "RadImageNet")
    assert detect_format(root) == "radimagenet"
    index = read_index(root)
    assert index.format == "radimagenet" and index.classes == RADIMAGENET_CLASSES
    frame = index.frame
    assert len(frame) == 24 and set(frame.split) == {""} and index.info["image_level_groups"]
    row = frame[frame.group == "radiology_ai/US/thyroid_nodule/us_thyroid_nodule002.png"].iloc[0]
    assert index.classes[row.label] == "US/thyroid_nodule" and Path(row.path).is_file() and row.roi == ""
    inner = read_index(root / "radiology_ai")  # the radiology_ai folder itself
    assert inner.format == "radimagenet" and inner.classes == RADIMAGENET_CLASSES and len(inner.frame) == 24


def test_radimagenet_split_csvs(tmp_path):
    root = radimagenet(tmp_path / "RadImageNet", csv=True)
    index = read_index(root)
    assert index.frame.split.value_counts().to_dict() == {"train": 16, "valid": 4, "test": 4}
    for _, r in index.frame.iterrows():  # the CSV label agrees with the folder the file is in
        assert f"/radiology_ai/{index.classes[r.label]}/" in r.path
    assert check_dataset(root, sample=None).problems == []
    # filenames relative to radiology_ai/ and labels spelled CT-abd-normal are accepted too
    (root / "RadiologyAI_test.csv").write_text("filename,label\nCT/abd/normal/ct_abd_normal005.png,CT-abd-normal\n"
                                               "MR/knee/acl/mr_knee_acl005.png,mr/knee/acl\n")
    test = read_index(root).frame.query("split == 'test'")
    assert len(test) == 2 and sorted(test.label) == [0, 2]


@pytest.mark.parametrize("line,needle", [
    ("radiology_ai/CT/abd/normal/ct_abd_normal000.png,CT/abd/fracture", "unknown label 'CT/abd/fracture'"),
    ("radiology_ai/CT/abd/normal/missing.png,CT/abd/normal", "not found"),
    ("../outside.png,CT/abd/normal", "escapes"),
])
def test_radimagenet_bad_csv_rows_name_the_file_and_line(tmp_path, line, needle):
    root = radimagenet(tmp_path / "RadImageNet", csv=True)
    (root / "RadiologyAI_val.csv").write_text(f"filename,label\n{line}\n")
    with pytest.raises(MedaugError, match=needle) as err:
        read_index(root)
    assert "RadiologyAI_val.csv line 2" in str(err.value)


def test_radimagenet_bad_header_and_no_false_match(tmp_path):
    root = radimagenet(tmp_path / "RadImageNet", csv=True)
    (root / "RadiologyAI_train.csv").write_text("path,class\nx.png,CT/abd/normal\n")
    with pytest.raises(MedaugError, match="RadiologyAI_train.csv: expected columns filename,label"):
        read_index(root)
    # an ImageFolder whose classes happen to be CT and MR (a modality classifier) stays an ImageFolder
    for cls in ("CT", "MR"):
        for i in range(3):
            png(tmp_path / "modality" / cls / f"{i}.png", seed=i)
    assert detect_format(tmp_path / "modality") == "imagefolder"


# --- MedMNIST ----------------------------------------------------------------------------------------

def medmnist(path: Path, rgb: bool = False, n: tuple[int, int, int] = (24, 8, 8), classes: int = 2,
             compressed: bool = False, multilabel: bool = False, size: int = 28) -> Path:
    """A MedMNIST archive: {train,val,test}_{images,labels}; uint8 [N, H, W(, 3)], labels [N, 1] (or [N, L])."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = (np.arange(count) % classes).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, 14), dtype=np.uint8) if multilabel else labels[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_medmnist_archive_labels_splits_and_pixels(tmp_path):
    npz = medmnist(tmp_path / "pneumonia" / "pneumoniamnist.npz")
    for root in (npz, npz.parent):  # the file, or a folder holding it
        assert detect_format(root) == "medmnist"
    index = read_index(npz.parent)
    assert index.format == "medmnist" and index.classes == ["normal", "pneumonia"]  # the medmnist package's INFO
    assert index.frame.split.value_counts().to_dict() == {"train": 24, "valid": 8, "test": 8}
    row = index.frame.iloc[27]  # valid image 3
    assert row.split == "valid" and row.label == 1 and row.path == npz_item(npz, "val_images", 3)
    with np.load(npz) as data:
        expected = data["val_images"][3]
    assert np.array_equal(load_image(row.path), expected.astype(np.float32) / 255)
    image, roi = load_sample(row, 28)
    assert roi is None and np.array_equal(image, expected)
    report = check_dataset(npz.parent, sample=None)
    assert report.problems == [] and any("image-level" in n for n in report.notes)
    (npz.parent / "classes.txt").write_text("healthy\nsick\n")  # classes.txt beside it wins
    assert read_index(npz).classes == ["healthy", "sick"]
    other = medmnist(tmp_path / "mine" / "my_xrays.npz")  # not a MedMNIST name: numbered classes
    assert read_index(other).classes == ["0", "1"]


def test_medmnist_rgb_compressed_and_info_json(tmp_path):
    npz = medmnist(tmp_path / "bloodmnist_64.npz", rgb=True, classes=3, compressed=True, size=64)
    (tmp_path / "bloodmnist.json").write_text(json.dumps({"label": {"0": "basophil", "1": "eosinophil", "2": "erythroblast"}}))
    index = read_index(npz)
    assert index.classes == ["basophil", "eosinophil", "erythroblast"]
    with np.load(npz) as data:
        rgb = data["test_images"][5]
    assert np.array_equal(load_image(npz_item(npz, "test_images", 5)), rgb.astype(np.float32) / 255)  # RGB sets stay RGB


@pytest.mark.parametrize("make,needle", [
    (lambda p: medmnist(p, multilabel=True), "multi-label"),
    (lambda p: p.write_bytes(b"not a zip archive"), "expected a MedMNIST .npz|not a readable"),
    (lambda p: np.savez(p, train_images=np.zeros((4, 28, 28), np.uint8)), "no train_labels"),
    (lambda p: np.savez(p, train_images=np.zeros((4, 8, 28, 28), np.uint8), train_labels=np.zeros((4, 1), np.uint8)),
     "3D MedMNIST volumes are not supported"),
])
def test_medmnist_bad_archives_name_the_file(tmp_path, make, needle):
    npz = tmp_path / "chestmnist.npz"
    make(npz)
    with pytest.raises(MedaugError, match=needle) as err:
        read_index(npz, "medmnist")
    assert "chestmnist.npz" in str(err.value)


def test_medmnist_classes_txt_too_short_and_stale_index(tmp_path):
    npz = medmnist(tmp_path / "organamnist.npz", classes=3)
    (tmp_path / "classes.txt").write_text("liver\nkidney\n")
    with pytest.raises(MedaugError, match="classes.txt: names 2 class"):
        read_index(npz)
    with pytest.raises(MedaugError, match="organamnist.npz: image 99 out of range"):
        load_image(npz_item(npz, "test_images", 99))
    (tmp_path / "notes.txt").write_text("a stray file beside the archive")
    assert detect_format(tmp_path) == "medmnist"


# --- COVID-19 Radiography Database --------------------------------------------------------------------

COVID_CLASSES = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]


def covid(root: Path, n: int = 6) -> Path:
    """root/<Class>/images/<Class>-<k>.png, root/<Class>/masks/<same name> (not for Lung_Opacity), metadata xlsx."""
    for c, cls in enumerate(COVID_CLASSES):
        for i in range(1, n + 1):
            png(root / cls / "images" / f"{cls}-{i}.png", seed=10 * c + i, size=30)
            if cls != "Lung_Opacity":
                mask = np.zeros((20, 20), np.uint8)  # the release's masks are smaller than the images
                mask[4:16, 2:9] = mask[4:16, 11:18] = 255  # two lungs
                (root / cls / "masks").mkdir(exist_ok=True)
                Image.fromarray(mask).save(root / cls / "masks" / f"{cls}-{i}.png")
        (root / f"{cls}.metadata.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (root / "README.md.txt").write_text("COVID-19 Radiography Database")
    return root


def test_covid_layout_classes_and_masks(tmp_path):
    root = covid(tmp_path / "COVID-19_Radiography_Dataset")
    assert detect_format(root) == "covid"
    index = read_index(root)
    assert index.format == "covid" and index.classes == COVID_CLASSES and len(index.frame) == 24
    assert set(index.frame.split) == {""} and index.info["image_level_groups"]
    frame = index.frame.assign(cls=[COVID_CLASSES[i] for i in index.frame.label])
    with_mask = frame[frame.roi != ""]
    assert set(with_mask.cls) == {"COVID", "Normal", "Viral Pneumonia"} and len(with_mask) == 18
    for _, r in with_mask.iterrows():
        assert Path(r.roi).name == Path(r.path).name and Path(r.roi).parent.name == "masks"
    _, roi = load_sample(with_mask.iloc[0], 32)
    assert roi is not None and 0.2 < roi.mean() < 0.6  # the lung mask, resized to the image size
    assert not any("xlsx" in p or "masks" in p for p in frame.path)


def test_covid_bad_layouts(tmp_path):
    root = covid(tmp_path / "c")
    for f in (root / "Normal" / "images").iterdir():
        f.unlink()
    with pytest.raises(MedaugError, match=r"Normal/images: no images"):
        read_index(root)
    one = tmp_path / "one"
    png(one / "COVID" / "images" / "a.png", seed=1)
    png(one / "Normal" / "b.png", seed=2)  # not the COVID layout: no images/ subfolder
    with pytest.raises(MedaugError, match="found 1 class folder"):
        read_index(one, "covid")


def test_layouts_are_detected_apart(tmp_path, tiny_data):
    assert detect_format(tiny_data) == "mura"
    assert detect_format(radimagenet(tmp_path / "r")) == "radimagenet"
    assert detect_format(covid(tmp_path / "c", n=2)) == "covid"
    assert detect_format(medmnist(tmp_path / "m" / "dermamnist.npz").parent) == "medmnist"
    for cls in ("benign", "malignant"):
        for i in range(2):
            png(tmp_path / "f" / cls / f"{i}.png", seed=i)
    assert detect_format(tmp_path / "f") == "imagefolder"
    (tmp_path / "f.csv").write_text("path,label\nf/benign/0.png,benign\n")
    assert detect_format(tmp_path / "f.csv") == "csv"


# --- end to end ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["radimagenet", "medmnist", "covid"])
def test_each_real_layout_trains_end_to_end(tmp_path, layout):
    method = "none"
    if layout == "radimagenet":
        data = radimagenet(tmp_path / "d", n=8, csv=True)
    elif layout == "medmnist":
        data = medmnist(tmp_path / "d" / "pneumoniamnist_64.npz", size=64)
    else:
        data, method = covid(tmp_path / "d", n=8), "cutout"  # masks -> mask metrics on the test split
    cfg = TrainConfig(data=str(data), size=32, epochs=1, batch_size=8, model="tiny", method=method, progress=False,
                      cache=str(tmp_path / "c"))
    result = fit(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert result["n_train"] > 0 and result["n_valid"] > 0 and result["n_test"] > 0
    for name in ("accuracy", "auroc"):
        assert 0 <= result["test"][name] <= 1
    if layout == "covid":
        assert result["mask"]["n_roi"] > 0 and 0 <= result["mask"]["mask_iou"] <= 1
    cache = build_cache(read_index(data), 32, tmp_path / "c", progress=False)  # unchanged sources: the same cache
    assert json.loads((cache / "meta.json").read_text())["fingerprint"] == result["data_fingerprint"]
