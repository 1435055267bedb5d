"""Hip-fracture style CSV + boxes: whole images or one crop per box, patient-disjoint 60:25:15 splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medaug.cli import app
from medaug.config import TrainConfig
from medaug.data.cache import assign_splits, build_cache, load_dataset
from medaug.data.index import detect_format, read_index
from medaug.data.io import load_image, load_sample
from medaug.errors import MedaugError
from medaug.train import fit

CLASSES = ["normal", "neck", "trochanteric"]


def pelvis(path: Path, seed: int) -> None:
    """A 60 x 80 (H x W) 16-bit gray image: a dark left half and a bright right half, plus noise."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 4000, (60, 80)).astype(np.uint16)
    arr[:, 40:] += 40000
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def hip_csv(root: Path, n_patients: int = 20, header: str = "image,diagnosis,patient_id,accession,xmin,ymin,xmax,ymax",
            box_labels: bool = False) -> Path:
    """Two boxes (left and right hip) per pelvis image; one image per patient.

    ``box_labels``: each hip gets its own label (then whole images are ambiguous).
    """
    lines = [header]
    for p in range(n_patients):
        rel = f"images/p{p:03d}.png"
        pelvis(root / rel, p)
        label = CLASSES[p % 3]
        for side, (x1, x2) in enumerate(((4, 36), (44, 76))):
            lab = CLASSES[(p + side) % 3] if box_labels else label
            lines.append(f"{rel},{lab},P{p:03d},A{p:03d},{x1},10,{x2},50")
    csv = root / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_whole_images_and_crops(tmp_path):
    csv = hip_csv(tmp_path / "hip")
    assert detect_format(csv) == "hipcsv" and detect_format(csv.parent) == "hipcsv"
    whole = read_index(csv)
    assert whole.format == "hipcsv" and sorted(whole.classes) == sorted(CLASSES) and len(whole.frame) == 20
    assert set(whole.frame.group) == {f"P{p:03d}" for p in range(20)} and set(whole.frame.study) == {f"A{p:03d}" for p in range(20)}
    crops = read_index(csv, crop="bbox")
    assert len(crops.frame) == 40 and set(crops.frame.bbox) == {"4,10,36,50", "44,10,76,50"}
    # the right-hip crop holds only the bright half of the image; the left one only the dark half
    right = crops.frame[crops.frame.bbox == "44,10,76,50"].iloc[0]
    left = crops.frame[crops.frame.bbox == "4,10,36,50"].iloc[0]
    img_r, _ = load_sample(right, 16)
    img_l, _ = load_sample(left, 16)
    source = load_image(right.path)
    expected = np.round(np.clip(source[10:50, 44:76], 0, 1).mean() * 255)
    assert abs(img_r.astype(float).mean() - expected) < 2
    assert img_r.min() > img_l.max()
    # crop and whole-image caches are different caches of the same folder
    assert build_cache(whole, 16, progress=False) != build_cache(crops, 16, progress=False)


def test_patient_disjoint_split_with_ratios(tmp_path):
    csv = hip_csv(tmp_path / "hip", n_patients=40)
    index = read_index(csv, crop="bbox")
    frame = assign_splits(index.frame, 0.2, seed=0)
    per_split = frame.groupby("split")["group"].apply(set)
    assert not (per_split["train"] & per_split["test"]) and not (per_split["train"] & per_split["valid"])
    share = frame["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.60) < 0.08 and abs(share["valid"] - 0.25) < 0.08 and abs(share["test"] - 0.15) < 0.08
    other = assign_splits(index.frame, 0.2, seed=0, ratios="50:25:25")["split"].value_counts(normalize=True)
    assert abs(other["test"] - 0.25) < 0.08
    with pytest.raises(MedaugError, match="three positive numbers"):
        assign_splits(index.frame, 0.2, seed=0, ratios="60:40")


def test_box_labels_need_crops_and_split_column_is_kept(tmp_path):
    csv = hip_csv(tmp_path / "hip", box_labels=True)
    with pytest.raises(MedaugError, match="different labels.*--crop bbox"):
        read_index(csv)
    assert len(read_index(csv, crop="bbox").frame) == 40
    # x,y,width,height boxes and an explicit split column
    root = tmp_path / "xywh"
    pelvis(root / "a.png", 0)
    pelvis(root / "b.png", 1)
    (root / "list.csv").write_text("path,label,patient,x,y,width,height,split\n"
                                   "a.png,0,P1,44,10,32,40,train\nb.png,1,P2,4,10,32,40,test\n")
    index = read_index(root, crop="bbox")
    assert index.frame.bbox.tolist() == ["44,10,76,50", "4,10,36,50"] and index.frame.split.tolist() == ["train", "test"]


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("diagnosis", "remark"), "names no image and label columns"),
    (lambda s: s.replace(",4,10,36,50", ",90,10,120,50", 1), "lies outside"),
    (lambda s: s.replace(",4,10,36,50", ",36,10,4,50", 1), "empty or negative"),
    (lambda s: s.replace(",4,10,36,50", ",,,,", 1), "no box on this row"),
    (lambda s: s.replace("images/p000.png", "../p000.png", 1), "escapes the data folder"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, edit, needle):
    csv = hip_csv(tmp_path / "hip")
    csv.write_text(edit(csv.read_text()))
    with pytest.raises(MedaugError, match=needle) as info:
        build_cache(read_index(csv, crop="bbox"), 16, progress=False)
    assert str(csv.parent) in str(info.value)
    if "label" in needle:  # named explicitly, the reader says which column is missing
        with pytest.raises(MedaugError, match="no label column"):
            read_index(csv, "hipcsv")


def test_crop_needs_box_columns(tmp_path):
    root = tmp_path / "nobox"
    pelvis(root / "a.png", 0)
    (root / "list.csv").write_text("image,label,patient_id\na.png,0,P1\n")
    assert detect_format(root) == "hipcsv"
    with pytest.raises(MedaugError, match="needs box columns"):
        read_index(root, crop="bbox")


def test_trains_end_to_end_on_crops_and_cli_check(tmp_path):
    csv = hip_csv(tmp_path / "hip", n_patients=30)
    cfg = TrainConfig(data=str(csv), crop="bbox", size=16, epochs=1, batch_size=8, model="tiny", progress=False)
    result = fit(cfg, tmp_path / "run")
    assert result["test"]["n"] == len(load_dataset(csv, size=16, progress=False, crop="bbox").test)
    assert 'crop = "bbox"' in (tmp_path / "run" / "config.toml").read_text()
    res = CliRunner().invoke(app, ["data", "check", str(csv), "--crop", "bbox"])
    assert res.exit_code == 0, res.output
    assert "hipcsv" in res.output and "usable" in res.output
