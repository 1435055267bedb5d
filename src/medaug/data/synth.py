"""Procedural synthetic radiographs with known regions of interest: medaug's built-in dataset
(and :func:`generate_hue`, a colour set whose two classes differ only in hue, at the end of the file).

Each image is a grayscale limb radiograph: tapered soft tissue, one or two slightly bowed bone
shafts (bright cortex, darker medullary canal), often a joint (two rounded bone ends with bright
end plates and a gap), random rotation and position, exposure, contrast, gamma, blur,
Gaussian + Poisson-like noise, sometimes collimation borders. Distractors appear at random
(probability 0.5 each): a laterality letter (L/R, drawn as strokes) in a corner and a ruler with
tick marks along an edge. The label is carried by a small *finding* on a bone whose pixels are
the ground-truth region, saved beside each image as ``<stem>_roi.png`` (0/255, all zero when
there is no finding):

- 2 classes: ``negative`` (no finding) / ``positive`` (a dark fracture line across the shaft,
  sometimes displaced, sometimes through both bones, sometimes faint);
- K > 2 classes: ``normal`` + K-1 finding types (up to 5): fracture (dark line), lesion (dark
  oval with a bright rim), hardware (very bright plate with screws), sclerosis (bright blob
  inside the bone), periosteal (a bump on the outer cortex).

``shortcut=P``: with probability P, in the *train* split only, the letter agrees with the label
(binary: R on positives, L on negatives; K > 2: the letter's corner and identity encode the
class), so a classifier can cheat on train and fail on test; methods that erase the right pixels
can be told apart. ``synth_meta.csv`` at the root records, per image: path (relative to the
root), label, split, letter ('' when absent), letter_corner (0 top-left, 1 top-right,
2 bottom-left, 3 bottom-right, -1 absent), ruler (0/1), shortcut (0/1), finding, roi_fraction.

Image i of a split is the same whatever n_train / n_test are (per-image seeds, prefix-stable
labels). In the MURA layout test patients are numbered after the train patients, so their
folder names (not their pixels) depend on n_train.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..config import Seed, check_range
from ..device import check_memory
from ..errors import MedaugError
from ..io_utils import check_output_path, writing
from ..progress import progress_bar

FINDING_TYPES = ["fracture", "lesion", "hardware", "sclerosis", "periosteal"]
FINDINGS = ["negative", "positive"]  # binary class names by label; K > 2: class_names(K)
MAX_CLASSES = len(FINDING_TYPES) + 1
CORNERS = ["top-left", "top-right", "bottom-left", "bottom-right"]
META_COLUMNS = ["path", "label", "split", "letter", "letter_corner", "ruler", "shortcut", "finding", "roi_fraction"]


def class_names(classes: int) -> list[str]:
    """Class names by label index: FINDINGS for 2 classes, else ``normal`` + the first K-1 finding types."""
    return list(FINDINGS) if classes == 2 else ["normal"] + FINDING_TYPES[: classes - 1]


def finding_of(label: int, classes: int) -> str:
    """The finding type drawn for ``label`` ('none' for the negative/normal class)."""
    if label == 0:
        return "none"
    return "fracture" if classes == 2 else FINDING_TYPES[label - 1]


def shortcut_letter(label: int, classes: int) -> tuple[str, int | None]:
    """The (letter, corner) a shortcut image carries; corner None = random (binary case)."""
    if classes == 2:
        return ("R" if label == 1 else "L"), None
    return "LR"[(label // 4) % 2], label % 4


# ----------------------------------------------------------------------------------------------
# distractors


def _letter(canvas: np.ndarray, which: str, corner: int, rng: np.random.Generator) -> None:
    """Draw a bright block letter L or R (strokes, no fonts) into a corner (0..3) of ``canvas``."""
    s = canvas.shape[0]
    h = max(6, int(s * 0.12))
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
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    region[glyph] = rng.uniform(0.85, 1.0)


def _ruler(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """A bright bar with tick marks along a random edge."""
    s = canvas.shape[0]
    t = max(1, s // 40)
    edge = rng.integers(4)
    bar = np.zeros_like(canvas, bool)
    pos = int(s * rng.uniform(0.03, 0.08))
    lo, hi = int(s * rng.uniform(0.15, 0.3)), int(s * rng.uniform(0.7, 0.85))
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


# ----------------------------------------------------------------------------------------------
# one image


def _render(rng: np.random.Generator, size: int, label: int, classes: int, shortcut_on: bool,
            kinds: list[str] | None = None):
    """(image uint8, roi uint8, info dict) — :func:`render` plus what was drawn.

    ``kinds``: finding type per label ('none' first) instead of the default order."""
    s = size
    px = 1.0 / s  # one pixel in normalised units
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    angle = np.deg2rad(rng.uniform(-35, 35))
    cy, cx = 0.5 + rng.uniform(-0.06, 0.06), 0.5 + rng.uniform(-0.06, 0.06)
    # limb coordinates: u along the limb, v across it
    u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)

    n_bones = 1 if rng.random() < 0.6 else 2
    offsets = [0.0] if n_bones == 1 else [-0.08, 0.08]
    offsets = [o + rng.uniform(-0.015, 0.015) for o in offsets]
    bone_w = rng.uniform(0.06, 0.08) if n_bones == 1 else rng.uniform(0.045, 0.058)
    joint = rng.random() < 0.5
    gap_u = rng.uniform(-0.18, 0.18)
    gap_half = rng.uniform(0.02, 0.03) + 0.5 * px
    end_r = rng.uniform(0.03, 0.05)  # rounding of the bone ends at the joint
    cortex_frac = rng.uniform(0.3, 0.45)
    medulla, cortex = rng.uniform(0.2, 0.28), rng.uniform(0.45, 0.55)

    # soft tissue: smooth tapered band (bulging at the joint)
    tissue_w = rng.uniform(0.25, 0.33) * (1 + rng.uniform(-0.25, 0.25) * u)
    if joint:
        tissue_w = tissue_w + 0.04 * np.exp(-(((u - gap_u) / 0.12) ** 2))
    tissue = rng.uniform(0.2, 0.3) * np.sqrt(np.clip(1 - (v / tissue_w) ** 2, 0, 1))

    # the finding is planned first: a fracture displaces the bone beyond its line
    kind = kinds[label] if kinds else finding_of(label, classes)
    strength = rng.uniform(0.5, 1.0)  # some findings are faint
    site_bones = [int(rng.integers(n_bones))]
    while True:  # a site on the shaft, away from the joint gap
        fu = rng.uniform(-0.3, 0.3)
        if not joint or abs(fu - gap_u) > 0.13:
            break
    tilt = rng.uniform(-0.7, 0.7)
    disp = rng.uniform(0.25, 0.5) * bone_w if rng.random() < 0.5 else 0.0
    disp *= 1 if rng.random() < 0.5 else -1
    if kind == "fracture" and n_bones == 2 and rng.random() < 0.7:
        site_bones = [0, 1]
    if kind != "fracture":
        disp = 0.0

    bone = np.zeros((s, s), np.float32)
    on_bone = np.zeros((len(offsets), s, s), bool)  # per bone, dilated a little
    dvs = []
    bows = [rng.uniform(-0.05, 0.05) for _ in offsets]
    for b, off in enumerate(offsets):
        dv = v - off - bows[b] * (u * u - 0.1)
        if b in site_bones and disp:
            dv = dv - disp * ((u - fu) - tilt * dv > 0)
        dvs.append(dv)
        hw = bone_w * (1 + 0.08 * u)
        if joint:
            hw = hw * (1 + rng.uniform(0.4, 0.7) * np.exp(-(((u - gap_u) / 0.08) ** 2)))
        d = np.abs(dv) / hw
        this = d < 1
        if joint:
            e = np.abs(u - gap_u) - gap_half  # distance from the joint space into the bone
            this &= (e > 0) & ((e >= end_r) | (d**2 + ((end_r - e) / end_r) ** 2 < 1))
        val = np.where(d > 1 - cortex_frac, cortex, medulla)
        if joint:  # bright subchondral end plates
            val = np.where(e < 0.03, cortex * 1.05, val)
        bone += np.where(this, val * rng.uniform(0.9, 1.1), 0).astype(np.float32)
        on_bone[b] = d < 1.15

    roi = np.zeros((s, s), bool)
    if kind != "none":
        b0 = site_bones[0]
        du, dv = u - fu, dvs[b0]
        hw0 = bone_w * (1 + 0.08 * fu)
        if kind == "fracture":
            lw = max(0.028, 1.8 * px) * rng.uniform(0.9, 1.3)
            for b in site_bones:
                dist = np.abs(du - tilt * dvs[b])
                line = (dist < lw) & on_bone[b]
                bone[line] *= 1 - 0.95 * strength
                roi |= (dist < lw + max(0.016, 1.0 * px)) & on_bone[b]
        elif kind == "lesion":
            ru = rng.uniform(0.045, 0.06)
            rv = min(0.8 * ru, 0.75 * hw0)
            q = np.sqrt((du / ru) ** 2 + ((dv - rng.uniform(-0.15, 0.15) * hw0) / rv) ** 2)
            bone[q < 1] *= 1 - 0.7 * strength
            rim = (q >= 1) & (q < 1.3) & on_bone[b0]
            bone[rim] += 0.12 * strength
            roi = (q < 1.3) & on_bone[b0]
        elif kind == "hardware":
            half = rng.uniform(0.1, 0.14)
            side = 1 if rng.random() < 0.5 else -1
            pt = max(0.014, 1.0 * px)
            plate = (np.abs(du) < half) & (np.abs(dv - side * hw0) < pt)
            screws = np.zeros_like(plate)
            sw = max(0.008, 0.6 * px)
            for us in (-0.7 * half, 0.0, 0.7 * half) if rng.random() < 0.6 else (-0.6 * half, 0.6 * half):
                screws |= (np.abs(du - us) < sw) & (np.abs(dv) < hw0 * 1.05)
            metal = plate | screws
            bone[metal] = np.maximum(bone[metal], 0.75 + 0.2 * strength)
            roi = metal
        elif kind == "sclerosis":
            rv = min(rng.uniform(0.05, 0.065), 0.95 * hw0)
            ru = rv * rng.uniform(1.1, 1.5)
            q = (du / ru) ** 2 + (dv / rv) ** 2
            bone += (0.3 * strength * np.sqrt(np.clip(1 - q, 0, 1))).astype(np.float32) * on_bone[b0]
            roi = (q < 1) & on_bone[b0]
        elif kind == "periosteal":
            side = 1 if rng.random() < 0.5 else -1
            ru, rv = rng.uniform(0.075, 0.1), max(rng.uniform(0.032, 0.045), 2 * px)
            q = (du / ru) ** 2 + ((side * dv - hw0) / rv) ** 2
            bump = (q < 1) & (side * dv > hw0 * 0.9)
            bone[bump] = np.maximum(bone[bump], cortex * (0.6 + 0.4 * strength))
            roi = q < 1

    img = rng.uniform(0.02, 0.06) + rng.uniform(-0.03, 0.03) * (yy - 0.5) + tissue + bone  # background with heel effect

    # distractors: letter and ruler (on the detector, so not rotated with the limb)
    corner = int(rng.integers(4))
    letter = "L" if rng.random() < 0.5 else "R"
    show_letter = rng.random() < 0.5
    show_ruler = rng.random() < 0.5
    if shortcut_on:
        show_letter = True
        letter, forced = shortcut_letter(label, classes)
        corner = corner if forced is None else forced
    if show_letter:
        _letter(img, letter, corner, rng)
    if show_ruler:
        _ruler(img, rng)

    img = gaussian_filter(img, sigma=rng.uniform(0.4, 0.8) * s / 64)
    img = np.clip(img * rng.uniform(0.8, 1.25) + rng.uniform(-0.04, 0.04), 0, 1) ** rng.uniform(0.75, 1.3)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * (rng.uniform(0.01, 0.025) + rng.uniform(0.02, 0.04) * np.sqrt(img))
    if rng.random() < 0.35:  # collimation: dark outside a slightly rotated rectangle
        a = rng.uniform(-0.1, 0.1)
        cu = (yy - 0.5) * np.cos(a) + (xx - 0.5) * np.sin(a)
        cv = -(yy - 0.5) * np.sin(a) + (xx - 0.5) * np.cos(a)
        inside = (np.abs(cu) < rng.uniform(0.4, 0.48)) & (np.abs(cv) < rng.uniform(0.4, 0.48))
        img[~inside] *= 0.15
    img = np.clip(img, 0, 1)
    info = dict(
        letter=letter if show_letter else "",
        letter_corner=corner if show_letter else -1,
        ruler=int(show_ruler),
        shortcut=int(shortcut_on),
        finding=kind,
        roi_fraction=round(float(roi.mean()), 5),
    )
    return np.round(img * 255).astype(np.uint8), roi.astype(np.uint8), info


def render(rng: np.random.Generator, size: int, label: int, classes: int, shortcut_on: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image: (image uint8 [size, size], roi uint8 [size, size] with 1 on the finding, 0 elsewhere)."""
    image, roi, _ = _render(rng, size, label, classes, shortcut_on)
    return image, roi


def arrays(n: int, size: int = 64, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic radiographs in memory, no files and no shortcut: images uint8 [n, size, size] and
    labels int64 [n] (classes in turn). For one's own loop (examples/own_loop.py); ``generate`` writes datasets."""
    if n < 1 or classes < 2:
        raise MedaugError(f"synth arrays: n={n}, classes={classes}; give n >= 1 and classes >= 2")
    labels = np.arange(n, dtype=np.int64) % classes
    images = [render(np.random.default_rng(s), size, int(c), classes, False)[0]
              for s, c in zip(np.random.SeedSequence(seed).spawn(n), labels)]
    return np.stack(images), labels


# ----------------------------------------------------------------------------------------------
# colour: classes that differ only in hue

HUE_CLASSES = ["green", "red"]  #: label 0, 1 of the hue-only set
HUE_STRENGTH = [(8, 30), (12, 45)]  #: range of the chroma strength s, green and red (red moves G and B 0.43 s, green R and B 1.42 s)
HUE_NOISE = 8  #: std of the pixel noise, drawn per channel (gray and colour noise, alike for both classes)
#: chroma directions (R, G, B) of zero luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B = 0), green then red
HUE_CHROMA = np.array([[-0.587 / 0.413, 1.0, -0.587 / 0.413], [1.0, -0.299 / 0.701, -0.299 / 0.701]])


def render_hue(rng: np.random.Generator, size: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One hue-only image: a soft elliptical blob on a noisy gray background, RGB uint8 [size, size, 3],
    and its region uint8 0/1 [size, size].

    The luminance image (background level, blob position, shape, brightness, noise) is drawn the same
    way for both classes; the blob then gets a chroma of zero luminance (ITU-R 601), s * HUE_CHROMA[label]
    (green for label 0, red for label 1). Converted to gray, the two classes have one distribution: only
    colour tells them apart.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    cy, cx = rng.uniform(0.3, 0.7, 2)
    ry, rx = rng.uniform(0.12, 0.25, 2)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u, v = dx * np.cos(theta) + dy * np.sin(theta), -dx * np.sin(theta) + dy * np.cos(theta)
    inside = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    blob = gaussian_filter(inside.astype(np.float64), sigma=max(0.5, size / 48))
    background, brightness = rng.uniform(40, 80), rng.uniform(100, 150)
    lum = background + (brightness - background) * blob
    strength = rng.uniform(*HUE_STRENGTH[label])
    chroma = strength * blob[..., None] * HUE_CHROMA[label]
    noise = rng.normal(0, HUE_NOISE, (size, size, 3))  # per channel: colour noise too, the same for both classes
    rgb = np.clip(np.round(lum[..., None] + chroma + noise), 0, 255).astype(np.uint8)
    return rgb, inside.astype(np.uint8)


def hue_arrays(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hue-only images in memory: uint8 [n, size, size, 3] and labels int64 [n] (classes in turn)."""
    if n < 1:
        raise MedaugError(f"hue arrays: n={n}; give n >= 1")
    labels = np.arange(n, dtype=np.int64) % 2
    images = [render_hue(np.random.default_rng(s), size, int(c))[0] for s, c in zip(np.random.SeedSequence(seed).spawn(n), labels)]
    return np.stack(images), labels


def generate_hue(out: str | Path, n_train: int = 400, n_test: int = 200, size: int = 32, seed: int = 0,
                 progress: bool = True) -> Path:
    """Write the hue-only dataset: ``out/{train,test}/{green,red}/NNNNN.png`` (RGB) with ``NNNNN_roi.png``
    (the blob) beside each; classes alternate, so they are balanced. Written to a temporary sibling
    folder and renamed. ``medaug data synth --colour hue``."""
    out = Path(out).expanduser()
    if size < 16:
        raise MedaugError(f"--size {size}: use at least 16 pixels")
    if n_train < 4 or n_test < 2:
        raise MedaugError(f"--n-train {n_train} / --n-test {n_test}: need at least 4 train and 2 test images")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MedaugError(f"{out}: already exists; choose a new --out or delete it")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    seqs = dict(zip(("train", "test"), np.random.SeedSequence(seed).spawn(2)))
    jobs = [(split, i) for split, n in (("train", n_train), ("test", n_test)) for i in range(n)]
    try:
        for split, i in progress_bar(jobs, total=len(jobs), description="synthesising images", enabled=progress):
            seq = seqs[split]
            rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, i)))
            image, roi = render_hue(rng, size, i % 2)
            path = tmp / split / HUE_CLASSES[i % 2] / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            Image.fromarray(roi * 255).save(path.with_name(path.stem + "_roi.png"))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------
# datasets


def _plan(n: int, classes: int, rng: np.random.Generator, first_patient: int) -> list[dict]:
    """Patients -> 1-2 studies -> 1-3 images; one dict per image.

    Each new study takes the class with the fewest images so far and is capped so class counts
    never differ by more than 2, so every class is present once n >= 2 * classes. Prefix-stable:
    the first i rows do not depend on n.
    """
    rows, patient, counts = [], first_patient - 1, [0] * classes
    while len(rows) < n:
        patient += 1
        for study in range(1, int(rng.integers(1, 3)) + 1):
            label = int(np.argmin(counts))
            others = min(c for j, c in enumerate(counts) if j != label)
            k = min(int(rng.integers(1, 4)), others + 2 - counts[label])
            for image in range(1, k + 1):
                if len(rows) < n:
                    rows.append(dict(patient=f"patient{patient:05d}", study=study, image=image, label=label))
                    counts[label] += 1
    return rows


def parse_findings(findings: str) -> list[str]:
    """'sclerosis,periosteal' -> ['none', 'sclerosis', 'periosteal'] (label 0 = normal); [] for ''."""
    if not findings.strip():
        return []
    names = [f.strip() for f in findings.split(",") if f.strip()]
    bad = [f for f in names if f not in FINDING_TYPES]
    if bad or len(set(names)) != len(names):
        raise MedaugError(f"--findings {findings}: give distinct finding types from {', '.join(FINDING_TYPES)}")
    return ["none", *names]


def _check(out: Path, n_train: int, n_test: int, size: int, classes: int, shortcut: float, layout: str, seed: int = 0) -> None:
    if size < 32:
        raise MedaugError(f"--size {size}: use at least 32 pixels")
    check_range("--seed", seed, Seed)
    # peak memory while drawing one image: about 160 bytes a pixel (peak RSS measured at 1024 and 2048 px),
    # plus one row of metadata (~400 bytes) per image
    check_memory(160 * size**2 + 400 * (n_train + n_test), f"--size {size} (one {size} x {size} image in float64 layers) "
                 f"and --n-train {n_train} / --n-test {n_test}", "lower --size or the image counts")
    if classes < 2 or classes > MAX_CLASSES:
        raise MedaugError(f"--classes {classes}: choose 2 to {MAX_CLASSES}")
    if not 0.0 <= shortcut <= 1.0:
        raise MedaugError(f"--shortcut {shortcut}: a probability in [0, 1]")
    if n_train < 2 * classes or n_test < classes:
        raise MedaugError(
            f"--n-train {n_train} / --n-test {n_test}: need at least {2 * classes} train and {classes} test images for {classes} classes"
        )
    if layout not in ("mura", "folders"):
        raise MedaugError(f"--layout {layout}: choose mura or folders")
    if layout == "mura" and classes != 2:
        raise MedaugError("--classes K > 2 needs --layout folders (MURA's layout is binary)")
    check_output_path(out, "--out")  # not below a file, not inside a dataset or a medaug cache, a short enough name
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MedaugError(f"{out}: already exists; choose a new --out or delete it")


def generate(out: str | Path, n_train: int = 400, n_test: int = 200, size: int = 64, seed: int = 0, classes: int = 2,
             shortcut: float = 0.0, layout: str = "mura", progress: bool = True, findings: str = "") -> Path:
    """Write a synthetic dataset to `out`; returns the dataset root. Raises medaug.errors.MedaugError on bad arguments.

    layout='mura': ``out/MURA-v1.1/{train,valid}/XR_ELBOW/patientNNNNN/studyN_{positive,negative}/imageK.png``
    plus the four headerless CSVs (test split -> ``valid``). layout='folders':
    ``out/{train,test}/<class>/<patient>_study<N>_<K>.png``. Every image has ``<stem>_roi.png``
    beside it, and ``out/synth_meta.csv`` describes every image. Written to a temporary sibling
    folder and renamed, so ``out`` appears complete or not at all. ``findings``: a comma list of
    finding types (classes = normal + those, in that order; needs layout='folders'), e.g. a task
    with findings a backbone never saw (``medaug transfer``).
    """
    out = Path(out).expanduser()
    kinds = parse_findings(findings)
    if kinds:
        if layout != "folders":
            raise MedaugError("--findings needs --layout folders")
        classes = len(kinds)
    _check(out, n_train, n_test, size, classes, shortcut, layout, seed)
    names = ["normal", *kinds[1:]] if kinds else class_names(classes)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    train_seq, test_seq, train_plan, test_plan = np.random.SeedSequence(seed).spawn(4)
    train_rows = _plan(n_train, classes, np.random.default_rng(train_plan), 1)
    last_train_patient = int(train_rows[-1]["patient"][len("patient"):])
    test_rows = _plan(n_test, classes, np.random.default_rng(test_plan), last_train_patient + 1)  # patient-disjoint
    jobs = [("train", i, r, train_seq) for i, r in enumerate(train_rows)]
    jobs += [("test", i, r, test_seq) for i, r in enumerate(test_rows)]
    meta = [",".join(META_COLUMNS)]
    lines: dict[str, list[str]] = {"train": [], "valid": []}
    studies: dict[str, dict[str, int]] = {"train": {}, "valid": {}}
    try:
        with writing(out):  # a full disk names the dataset folder
            for split, i, row, seq in progress_bar(jobs, total=len(jobs), description="synthesising images", enabled=progress):
                rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, i)))
                shortcut_on = split == "train" and bool(rng.random() < shortcut)
                image, roi, info = _render(rng, size, row["label"], classes, shortcut_on, kinds or None)
                if layout == "mura":
                    mura_split = "train" if split == "train" else "valid"
                    study = f"study{row['study']}_{names[row['label']]}"
                    rel = f"MURA-v1.1/{mura_split}/XR_ELBOW/{row['patient']}/{study}/image{row['image']}.png"
                    lines[mura_split].append(rel)
                    studies[mura_split][rel.rsplit("/", 1)[0] + "/"] = row["label"]
                else:
                    rel = f"{split}/{names[row['label']]}/{row['patient']}_study{row['study']}_{row['image']}.png"
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
                Image.fromarray(roi * 255).save(path.with_name(path.stem + "_roi.png"))
                meta.append(",".join(str(x) for x in (rel, row["label"], split, info["letter"], info["letter_corner"],
                                                      info["ruler"], info["shortcut"], info["finding"], info["roi_fraction"])))
            if layout == "mura":
                for split in ("train", "valid"):
                    (tmp / "MURA-v1.1" / f"{split}_image_paths.csv").write_text("\n".join(lines[split]) + "\n")
                    (tmp / "MURA-v1.1" / f"{split}_labeled_studies.csv").write_text(
                        "".join(f"{study},{label}\n" for study, label in studies[split].items()))
            (tmp / "synth_meta.csv").write_text("\n".join(meta) + "\n")
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
