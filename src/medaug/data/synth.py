"""Procedural synthetic radiographs with known regions of interest: medaug's built-in dataset.

Each image is a grayscale limb radiograph: soft tissue, one or two bone shafts (bright cortex,
darker medullary canal), often a joint, random rotation, exposure, gamma, blur and noise,
sometimes collimation borders. Distractors appear at random: a laterality letter (L/R) in a
corner and a ruler along an edge. The label is carried by a small *finding* on the bone whose
pixels are the ground-truth region (saved beside each image as ``<stem>_roi.png``):

- 2 classes: ``negative`` (no finding) / ``positive`` (a fracture line across the shaft);
- K > 2 classes: ``normal`` + K-1 finding types (fracture, lesion, hardware, sclerosis, periosteal).

``shortcut=P`` makes a distractor agree with the label with probability P in the *train* split
only (binary: letter R on positives, L on negatives; multi-class: the letter's corner encodes the
class), so a classifier can cheat on train and fail on test, and methods that erase the right
pixels can be told apart. Image i is the same whatever n is (per-image seeds).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..errors import MedaugError
from ..progress import progress_bar

FINDING_TYPES = ["fracture", "lesion", "hardware", "sclerosis", "periosteal"]
FINDINGS = ["negative", "positive"]  # binary class names (multi-class: class_names(K))


def class_names(classes: int) -> list[str]:
    return list(FINDINGS) if classes == 2 else ["normal"] + FINDING_TYPES[: classes - 1]


def _letter(canvas: np.ndarray, which: str, corner: int, rng: np.random.Generator) -> None:
    """Draw a bright block letter L or R (strokes, no fonts) into a corner (0..3) of ``canvas``."""
    s = canvas.shape[0]
    h = max(5, int(s * 0.12))
    w = max(4, int(h * 0.7))
    t = max(1, h // 5)
    m = max(1, int(s * 0.04))
    y0 = m if corner in (0, 1) else s - m - h
    x0 = m if corner in (0, 2) else s - m - w
    glyph = np.zeros((h, w), bool)
    glyph[:, :t] = True  # the stem, shared by L and R
    if which == "L":
        glyph[-t:, :] = True
    else:
        glyph[:t, :] = True
        glyph[h // 2 - t // 2 : h // 2 - t // 2 + t, :] = True
        glyph[: h // 2, -t:] = True
        for k in range(h // 2, h):  # the leg
            c = int(t + (w - t) * (k - h // 2) / max(1, h - h // 2 - 1))
            glyph[k, max(0, c - t) : c] = True
    level = rng.uniform(0.85, 1.0)
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    region[glyph] = level


def _ruler(canvas: np.ndarray, rng: np.random.Generator) -> None:
    s = canvas.shape[0]
    t = max(1, s // 40)
    edge = rng.integers(4)
    bar = np.zeros_like(canvas, bool)
    pos = int(s * rng.uniform(0.03, 0.08))
    lo, hi = int(s * 0.2), int(s * 0.8)
    step = max(3, s // 16)
    if edge < 2:
        r = pos if edge == 0 else s - pos - 1
        bar[r : r + t, lo:hi] = True
        for c in range(lo, hi, step):
            bar[max(0, r - 2 * t) : r + t, c : c + t] = True
    else:
        c = pos if edge == 2 else s - pos - 1
        bar[lo:hi, c : c + t] = True
        for r in range(lo, hi, step):
            bar[r : r + t, max(0, c - 2 * t) : c + t] = True
    canvas[bar] = rng.uniform(0.8, 0.95)


def render(rng: np.random.Generator, size: int, label: int, classes: int, shortcut_on: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image: (uint8 [size, size] radiograph, uint8 [size, size] ROI with 1 on the finding)."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    angle = np.deg2rad(rng.uniform(-30, 30))
    cy, cx = 0.5 + rng.uniform(-0.06, 0.06), 0.5 + rng.uniform(-0.06, 0.06)
    # limb coordinates: u along the limb, v across it
    u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)

    img = np.zeros((s, s), np.float32)
    tissue_w = rng.uniform(0.26, 0.36)
    img += rng.uniform(0.22, 0.32) * np.sqrt(np.clip(1 - (v / tissue_w) ** 2, 0, 1))

    n_bones = 1 if rng.random() < 0.6 else 2
    offsets = [0.0] if n_bones == 1 else [-0.075, 0.075]
    bone_w = rng.uniform(0.055, 0.08) if n_bones == 1 else rng.uniform(0.04, 0.055)
    joint = rng.random() < 0.6
    gap_u = rng.uniform(-0.15, 0.15)
    bone = np.zeros((s, s), bool)
    for off in offsets:
        widen = 1.0 + (0.6 * np.exp(-(((u - gap_u) / 0.08) ** 2)) if joint else 0.0)
        d = np.abs(v - off) / (bone_w * widen)
        this = d < 1
        if joint:
            this &= np.abs(u - gap_u) > 0.022
        cortex = this & (d > 0.55)
        if joint:  # bright subchondral end-plates make a joint look unlike a fracture
            cortex |= this & (np.abs(u - gap_u) < 0.045)
        img[this] = 0.5 + rng.uniform(-0.04, 0.04)
        img[cortex] = 0.78 + rng.uniform(-0.05, 0.05)
        bone |= this
    img[np.abs(u) > 0.47] *= 0.3  # the limb ends in the field of view

    roi = np.zeros((s, s), bool)
    kind = "none"
    if classes == 2:
        kind = "fracture" if label == 1 else "none"
    elif label > 0:
        kind = FINDING_TYPES[label - 1]
    if kind != "none":
        strength = rng.uniform(0.6, 1.0)  # some findings are faint
        off = offsets[rng.integers(len(offsets))]
        # a site on the shaft, away from the joint gap
        while True:
            fu = rng.uniform(-0.3, 0.3)
            if not joint or abs(fu - gap_u) > 0.1:
                break
        du, dv = u - fu, v - off
        on_bone = np.abs(dv) < bone_w * 1.05
        if kind == "fracture":
            tilt = rng.uniform(-0.6, 0.6)
            line = np.abs(du - tilt * dv) < max(0.016, 1.6 / s)
            region = line & on_bone
            img[region] *= 1 - 0.75 * strength
            shift = np.abs(du - tilt * dv) < max(0.03, 2.5 / s)
            roi = shift & on_bone
        elif kind == "lesion":
            r = rng.uniform(0.028, 0.04)
            region = (du / r) ** 2 + (dv / (r * 0.8)) ** 2 < 1
            img[region] *= 1 - 0.6 * strength
            roi = region
        elif kind == "hardware":
            region = (np.abs(du) < rng.uniform(0.07, 0.1)) & (np.abs(dv) < max(0.014, 1.2 / s))
            img[region] = 0.9 + 0.1 * strength
            roi = region
        elif kind == "sclerosis":
            r = rng.uniform(0.03, 0.045)
            region = (du / r) ** 2 + (dv / r) ** 2 < 1
            img[region] = np.minimum(1.0, img[region] + 0.3 * strength)
            roi = region
        elif kind == "periosteal":
            side = 1 if rng.random() < 0.5 else -1
            r = rng.uniform(0.035, 0.05)
            region = ((du / r) ** 2 + ((dv - side * bone_w) / (r * 0.5)) ** 2 < 1) & (side * dv > bone_w * 0.9)
            img[region] = 0.6 + 0.25 * strength
            roi = region

    # distractors: letter and ruler, drawn after blur-free geometry, before exposure and noise
    corner = int(rng.integers(4))
    letter = "L" if rng.random() < 0.5 else "R"
    show_letter = rng.random() < 0.5
    if shortcut_on:
        show_letter = True
        if classes == 2:
            letter = "R" if label == 1 else "L"
        else:
            corner = label % 4
    if show_letter:
        _letter(img, letter, corner, rng)
    if rng.random() < 0.5:
        _ruler(img, rng)

    img = gaussian_filter(img, sigma=rng.uniform(0.4, 0.9) * s / 64)
    img = np.clip(img * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05), 0, 1) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * (rng.uniform(0.015, 0.03) + 0.03 * np.sqrt(img))
    if rng.random() < 0.35:  # collimation: dark outside a slightly rotated rectangle
        a = rng.uniform(-0.1, 0.1)
        cu = (yy - 0.5) * np.cos(a) + (xx - 0.5) * np.sin(a)
        cv = -(yy - 0.5) * np.sin(a) + (xx - 0.5) * np.cos(a)
        inside = (np.abs(cu) < rng.uniform(0.38, 0.48)) & (np.abs(cv) < rng.uniform(0.38, 0.48))
        img[~inside] *= 0.15
    img = np.clip(img, 0, 1)
    return np.round(img * 255).astype(np.uint8), roi.astype(np.uint8)


def _plan(n: int, classes: int, rng: np.random.Generator, prefix: str) -> list[dict]:
    """Patients -> studies -> images with balanced study labels; returns one dict per image."""
    rows, patient, label = [], 0, 0
    while len(rows) < n:
        patient += 1
        for study in range(1, int(rng.integers(1, 3)) + 1):
            for k in range(1, int(rng.integers(1, 4)) + 1):
                if len(rows) < n:
                    rows.append(dict(patient=f"patient{prefix}{patient:05d}", study=study, image=k, label=label))
            label = (label + 1) % classes
    return rows


def generate(out: str | Path, n_train: int = 400, n_test: int = 200, size: int = 64, seed: int = 0, classes: int = 2,
             shortcut: float = 0.0, layout: str = "mura", progress: bool = True) -> Path:
    """Write a synthetic dataset to ``out`` (MURA or ImageFolder layout); returns ``out``."""
    out = Path(out)
    if size < 32:
        raise MedaugError(f"--size {size}: use at least 32 pixels")
    if classes < 2 or classes > len(FINDING_TYPES) + 1:
        raise MedaugError(f"--classes {classes}: choose 2 to {len(FINDING_TYPES) + 1}")
    if not 0.0 <= shortcut <= 1.0:
        raise MedaugError(f"--shortcut {shortcut}: a probability in [0, 1]")
    if n_train < 2 * classes or n_test < classes:
        raise MedaugError(f"--n-train {n_train} / --n-test {n_test}: need at least 2 train and 1 test image per class")
    if layout not in ("mura", "folders"):
        raise MedaugError(f"--layout {layout}: choose mura or folders")
    if layout == "mura" and classes != 2:
        raise MedaugError("--classes K > 2 needs --layout folders (MURA's layout is binary)")
    if out.exists() and any(out.iterdir()):
        raise MedaugError(f"{out}: already exists; choose a new --out or delete it")
    names = class_names(classes)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    root_seq = np.random.SeedSequence(seed)
    train_seq, test_seq, plan_seq = root_seq.spawn(3)
    plan_rng = np.random.default_rng(plan_seq)
    jobs = [("train", r, train_seq) for r in _plan(n_train, classes, plan_rng, "")]
    jobs += [("test", r, test_seq) for r in _plan(n_test, classes, plan_rng, "9")]  # patient ids disjoint
    counters = {"train": 0, "test": 0}
    meta, lines = [], {"train": [], "valid": []}
    studies = {"train": {}, "valid": {}}
    try:
        for split, row, seq in progress_bar(jobs, total=len(jobs), description="synthesising images", enabled=progress):
            i = counters[split]
            counters[split] += 1
            rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, i)))
            shortcut_on = split == "train" and rng.random() < shortcut
            image, roi = render(rng, size, row["label"], classes, shortcut_on)
            if layout == "mura":
                mura_split = "train" if split == "train" else "valid"
                study = f"study{row['study']}_{names[row['label']]}"
                rel = Path("MURA-v1.1") / mura_split / "XR_ELBOW" / row["patient"] / study / f"image{row['image']}.png"
                lines[mura_split].append(str(rel))
                studies[mura_split][str(rel.parent) + "/"] = row["label"]
            else:
                rel = Path(split) / names[row["label"]] / f"{row['patient']}_study{row['study']}_{row['image']}.png"
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(path)
            Image.fromarray(roi * 255, mode="L").save(path.with_name(path.stem + "_roi.png"))
            meta.append(f"{rel},{row['label']},{split},{int(shortcut_on)}")
        if layout == "mura":
            for split in ("train", "valid"):
                (tmp / "MURA-v1.1" / f"{split}_image_paths.csv").write_text("\n".join(lines[split]) + "\n")
                (tmp / "MURA-v1.1" / f"{split}_labeled_studies.csv").write_text(
                    "".join(f"{study},{label}\n" for study, label in studies[split].items()))
        (tmp / "synth_meta.csv").write_text("path,label,split,shortcut\n" + "\n".join(meta) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
