"""Quality of generated images: FID, KID, precision/recall, density/coverage, memorisation
(``evaluation.py`` runs them all on a folder of samples, with TSTR).

Feature-based metrics are computed on the features of a *local* network, never a download:
by default a medaug classifier trained on the real training images (its penultimate features:
the input of its last ``nn.Linear``, captured by a forward hook); or a user-named local
checkpoint (a medaug run folder / best.pt, or a TorchScript module mapping [B, 3, H, W] images in
[0, 1] to [B, D] features, e.g. an exported Inception or RadImageNet network). Numbers from
different extractors do not compare, so every number is reported with the extractor's name.

- FID (Heusel et al. 2017): ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged
  over random subsets; can be negative, ~0 for equal distributions.
- Precision / recall (Kynkaenniemi et al. 2019, k = 3): the fraction of fakes inside the union of
  k-NN balls of the reals / of reals inside the fakes' balls.
- Density / coverage (Naeem et al. 2020, k = 5): density = sum over fakes of the number of real
  balls containing them / (k M); coverage = fraction of real balls containing at least one fake.
- Memorisation: the nearest real training image (pixel RMS distance) of each synthetic image,
  against the same distance for real test images (which the generator never saw).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MedaugError
from ..models.inputs import normalize

# ----------------------------------------------------------------------------------------------
# reading generated image folders


def read_image_folder(root: str | Path, size: int, classes: list[str] | None = None,
                      channels: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``root/<class>/*.png`` -> (uint8 [N, C, size, size], int64 labels [N], class names).

    C = 1 when every image is gray, else 3 (gray ones repeated); ``channels`` (1 or 3, the real data's)
    makes another C an error. With ``classes`` the folder names are mapped to those indices (an unknown
    name is an error); mask files (``*_roi.*``, ``*_mask.*``, ...) and files at the root (contact sheets) are skipped.
    """
    from ..data.io import load_image, resize
    from ..data.readers.imagefolder import class_dirs, image_files

    root = Path(root)
    if not root.is_dir():
        raise MedaugError(f"{root}: no such folder; expected generated images in root/<class>/*.png")
    dirs = class_dirs(root)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise MedaugError(f"{root}: class folder(s) {', '.join(unknown)} are not classes of the real data ({', '.join(classes)})")
    images, labels = [], []
    for d in dirs:
        for path in image_files(d):
            img = np.round(np.clip(resize(load_image(path), size), 0, 1) * 255).astype(np.uint8)
            images.append(img.transpose(2, 0, 1) if img.ndim == 3 else img[None])  # [C, S, S]
            labels.append(classes.index(d.name))
    if not images:
        raise MedaugError(f"{root}: no images found in its class folders")
    found = max(img.shape[0] for img in images)
    if channels is not None and found != channels:
        kinds = {1: "gray", 3: "colour"}
        raise MedaugError(f"{root}: the images are {kinds[found]} but the real data is {kinds[channels]}; "
                          "use samples of a generator trained on this data")
    images = [np.repeat(img, found, 0) if img.shape[0] != found else img for img in images]
    return np.stack(images), np.asarray(labels, np.int64), list(classes)


def write_image_folder(images: np.ndarray, labels: np.ndarray, classes: list[str], root: str | Path) -> Path:
    """Write uint8 [N, S, S] or [N, C, S, S] images as ``root/<class>/<class>_00000.png`` (gray or RGB PNGs)
    into the claimed folder ``root`` (written to a temp folder, then moved in, replacing only what medaug
    wrote there)."""
    from PIL import Image

    from ..io_utils import output_folder, staged

    root = output_folder(root, "samples")
    with staged(root, "samples.json") as tmp:
        counts = {c: 0 for c in classes}
        for img, lab in zip(images, labels):
            name = classes[int(lab)]
            (tmp / name).mkdir(parents=True, exist_ok=True)
            img = img.transpose(1, 2, 0) if img.ndim == 3 else img  # [S, S, C]
            Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img).save(tmp / name / f"{name}_{counts[name]:05d}.png")
            counts[name] += 1
    return root


# ----------------------------------------------------------------------------------------------
# feature extractors


class Extractor:
    """images uint8 [N, C, S, S] (or gray [N, S, S]) -> features float64 [N, D]; ``name`` goes next to every number."""

    def __init__(self, name: str, fn, size: int | None, device: torch.device):
        self.name, self.fn, self.size, self.device = name, fn, size, device

    @torch.no_grad()
    def features(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).to(self.device)
            x = (x.unsqueeze(1) if x.dim() == 3 else x).float() / 255
            if self.size and x.shape[-1] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            out.append(self.fn(x).flatten(1).double().cpu())
        return torch.cat(out).numpy()


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MedaugError("extractor: the classifier has no nn.Linear layer to take penultimate features from")
    return linears[-1]


def load_run_classifier(run: Path, ckpt_file: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The classifier of a medaug run folder (its ``best.pt`` weights, eval mode) and the run's train config."""
    from ..config import load_toml
    from ..models.classifiers import create_classifier

    from ..io_utils import load_torch

    cfg = load_toml(run / "config.toml").get("train", {})
    if not isinstance(cfg, dict):
        raise MedaugError(f"{run / 'config.toml'}: no [train] table; pass a run folder medaug wrote")
    name = cfg.get("model", "tiny")
    fix = "the file is truncated or not a medaug run's best.pt: train the run again or pass another run"
    ckpt = load_torch(ckpt_file, device, "classifier checkpoint", fix)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise MedaugError(f"{ckpt_file}: not a medaug classifier checkpoint (no 'model' state dict); {fix}")
    try:
        model = create_classifier(name, cfg.get("in_channels", 1), run_num_classes(run, ckpt, name)).to(device)
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise MedaugError(f"{ckpt_file}: does not fit the run's classifier {name!r} of config.toml "
                          f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}); {fix}") from None
    return model.eval(), cfg


def run_num_classes(run: Path, ckpt: dict, model: str) -> int:
    """The class count of a run's classifier: stored in its best.pt; for files written before it was
    stored, the classes of the run's metrics.json, or else the output size of the registered head layer."""
    from ..models.classifiers import classifier_info

    if "num_classes" in ckpt:
        return int(ckpt["num_classes"])
    try:
        classes = json.loads((run / "metrics.json").read_text()).get("classes")
    except (OSError, ValueError, AttributeError):  # no metrics.json yet (a run in progress), or not medaug's
        classes = None
    if isinstance(classes, list) and classes:
        return len(classes)
    head = f"{classifier_info(model).head}.weight"
    if head not in ckpt["model"]:
        raise MedaugError(f"{run}: best.pt has no {head!r} for model {model!r} (config.toml); train the run again")
    return int(ckpt["model"][head].shape[0])


def load_extractor(path: str | Path, device: torch.device | str = "cpu") -> Extractor:
    """A medaug run folder (best.pt + config.toml) or its best.pt, or a TorchScript feature network."""
    from ..device import resolve_device

    device = resolve_device(device) if isinstance(device, str) else device
    path = Path(path)
    run = path if path.is_dir() else path.parent
    ckpt_file = path / "best.pt" if path.is_dir() else path
    if not ckpt_file.is_file():
        raise MedaugError(f"--extractor {path}: not found; give a medaug run folder (with best.pt) or a TorchScript file")
    if not (run / "config.toml").is_file():
        try:
            net = torch.jit.load(str(ckpt_file), map_location=device).eval()
        except Exception as exc:  # noqa: BLE001 - any load failure is a user error here
            raise MedaugError(f"--extractor {path}: neither a medaug run (no config.toml beside it) nor TorchScript ({exc})") from None
        return Extractor(f"torchscript:{ckpt_file.name}", lambda x: net(x.expand(-1, 3, -1, -1)), None, device)
    model, cfg = load_run_classifier(run, ckpt_file, device)
    feats: dict[str, torch.Tensor] = {}
    _last_linear(model).register_forward_hook(lambda m, inp, out: feats.__setitem__("x", inp[0]))
    in_ch = cfg.get("in_channels", 1)

    def fn(x: torch.Tensor) -> torch.Tensor:
        model(normalize(x, in_ch))
        return feats["x"]

    return Extractor(f"medaug-{cfg.get('model', 'tiny')}:{run.name}", fn, cfg.get("size"), device)


def run_classifier(run: str | Path, device: torch.device) -> Extractor:
    """The class probabilities float [N, K] of a medaug run's classifier as an :class:`Extractor` (images uint8 [N, C, S, S])."""
    run = Path(run)
    model, cfg = load_run_classifier(run, run / "best.pt", device)
    in_ch = cfg.get("in_channels", 1)
    return Extractor(f"medaug-{cfg.get('model', 'tiny')}:{run.name}", lambda x: model(normalize(x, in_ch)).softmax(1),
                     cfg.get("size"), device)


# ----------------------------------------------------------------------------------------------
# conditional agreement: does a sample show the class it was drawn for?

#: balanced agreement below chance (1/K) + this margin: the generator is taken to ignore its label
NEAR_CHANCE_MARGIN = 0.1


def conditional_agreement(pred: np.ndarray, drawn: np.ndarray, classes: list[str]) -> dict:
    """Share of samples a real-trained classifier assigns to the class they were drawn for.

    ``pred``, ``drawn``: int [N] predicted and requested class indices. ``overall``: over all
    samples; ``balanced``: the mean of the per-class shares (1/K in expectation for a generator
    that ignores its label, whatever the classifier's bias); ``confusion[i][j]``: samples drawn as
    class i and assigned to class j. ``label_ignored``: balanced < 1/K + NEAR_CHANCE_MARGIN.
    """
    K = len(classes)
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (drawn, pred), 1)
    present = confusion.sum(1) > 0
    per_class = {c: float(confusion[i, i] / confusion[i].sum()) for i, c in enumerate(classes) if present[i]}
    balanced = float(np.mean(list(per_class.values())))
    chance = 1.0 / K
    return {"overall": float((pred == drawn).mean()), "balanced": balanced, "per_class": per_class, "chance": chance,
            "confusion": confusion.tolist(), "label_ignored": bool(balanced < chance + NEAR_CHANCE_MARGIN)}


def agreement_warning(agreement: dict) -> str:
    """The one-line warning for a generator whose samples do not carry their label ('' if they do)."""
    if not agreement["label_ignored"]:
        return ""
    return (f"WARNING: conditional agreement {agreement['balanced']:.1%} (balanced) is near chance ({agreement['chance']:.0%}): "
            "the generator ignores its class label; its samples are not class-specific augmentation")


# ----------------------------------------------------------------------------------------------
# metrics on features


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features float [N, D] and [M, D]."""
    from scipy import linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if caught or not np.isfinite(covmean).all():  # (near-)singular product: offset the diagonals (the pytorch-fid fix)
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), 0.0))


def kid(real: np.ndarray, fake: np.ndarray, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel, mean and std over random subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise MedaugError("kid: needs at least 2 real and 2 synthetic images")
    d = real.shape[1]
    vals = []
    for _ in range(n_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / m**2
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = torch.cdist(torch.from_numpy(x), torch.from_numpy(x))
    return d.kthvalue(k + 1, dim=1).values.numpy()  # +1: the point itself is at distance 0


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) with k-NN balls."""
    k = min(k, len(real) - 1, len(fake) - 1)
    d = torch.cdist(torch.from_numpy(fake), torch.from_numpy(real)).numpy()  # [M, N]
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    precision = (d <= r_real[None, :]).any(1).mean()
    recall = (d.T <= r_fake[None, :]).any(1).mean()
    return float(precision), float(recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with k-NN balls around the reals."""
    k = min(k, len(real) - 1)
    r_real = _kth_radius(real, k)
    inside = torch.cdist(torch.from_numpy(real), torch.from_numpy(fake)).numpy() <= r_real[:, None]  # [N, M]
    density = inside.sum() / (k * fake.shape[0])
    coverage = inside.any(1).mean()
    return float(density), float(coverage)


def feature_metrics(real: np.ndarray, fake: np.ndarray, kid_subsets: int = 100, seed: int = 0) -> dict:
    kid_mean, kid_std = kid(real, fake, kid_subsets, seed=seed)
    p, r = precision_recall(real, fake)
    dens, cov = density_coverage(real, fake)
    return {"fid": fid(real, fake), "kid": kid_mean, "kid_std": kid_std, "precision": p, "recall": r,
            "density": dens, "coverage": cov, "n_real": len(real), "n_fake": len(fake)}


# ----------------------------------------------------------------------------------------------
# memorisation


def nearest_real(queries: np.ndarray, reals: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest real image and the pixel RMS distance (images in [0, 1]) for each query."""
    r = torch.from_numpy(reals.reshape(len(reals), -1)).float() / 255
    idx, dist = [], []
    for i in range(0, len(queries), batch):
        q = torch.from_numpy(queries[i : i + batch].reshape(len(queries[i : i + batch]), -1)).float() / 255
        d = torch.cdist(q, r)
        v, j = d.min(1)
        idx.append(j)
        dist.append(v / math.sqrt(r.shape[1]))
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()


def memorisation(fake: np.ndarray, real_train: np.ndarray, real_test: np.ndarray | None, out: Path, n_show: int = 8) -> dict:
    """Nearest-neighbour check; writes memorisation.png (closest pairs) and nn_distances.png (histograms)."""
    from ..figures import plt, save_figure, show as imshow

    idx, dist = nearest_real(fake, real_train)
    ref = nearest_real(real_test, real_train)[1] if real_test is not None and len(real_test) else None
    show = np.argsort(dist)[:n_show]  # the most suspicious: closest to a training image
    fig, axes = plt.subplots(2, len(show), figsize=(1.4 * len(show), 3.0), squeeze=False)
    for col, i in enumerate(show):
        imshow(axes[0, col], fake[i])
        axes[0, col].set_title(f"d={dist[i]:.3f}", fontsize=7)
        imshow(axes[1, col], real_train[idx[i]])
        for ax in axes[:, col]:
            ax.axis("off")
    axes[0, 0].text(-0.1, 0.5, "synthetic", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    axes[1, 0].text(-0.1, 0.5, "nearest real", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle("closest synthetic images and their nearest real training image (pixel RMS)", fontsize=8)
    save_figure(fig, out / "memorisation.png")
    fig, ax = plt.subplots(figsize=(4.5, 3))
    bins = np.linspace(0, max(dist.max(), ref.max() if ref is not None else 0) * 1.05 + 1e-6, 30)
    ax.hist(dist, bins=bins, alpha=0.6, density=True, label="synthetic -> nearest train")
    if ref is not None:
        ax.hist(ref, bins=bins, alpha=0.6, density=True, label="real test -> nearest train")
    ax.set_xlabel("pixel RMS distance")
    ax.legend(fontsize=7)
    save_figure(fig, out / "nn_distances.png")
    result = {"nn_dist_median": float(np.median(dist)), "nn_dist_min": float(dist.min())}
    if ref is not None:
        thr = float(np.quantile(ref, 0.05))
        result.update(ref_nn_dist_median=float(np.median(ref)), ref_nn_dist_p05=thr,
                      frac_closer_than_ref_p05=float((dist < thr).mean()))
    return result


# ----------------------------------------------------------------------------------------------
# figures


def image_grid(rows: np.ndarray, path: Path, row_names: list[str] | None = None, title: str = "") -> None:
    """uint8 images [R, C, H, W] or [R, C, 3, H, W] (colour) as a grid, one named row each (contact sheets, previews)."""
    from ..figures import plt, save_figure, show

    R, C = rows.shape[:2]
    fig, axes = plt.subplots(R, C, figsize=(0.9 * C + 0.8, 0.9 * R + 0.3), squeeze=False)
    for r in range(R):
        for c in range(C):
            show(axes[r, c], rows[r, c])
            axes[r, c].axis("off")
        if row_names:
            axes[r, 0].text(-0.1, 0.5, row_names[r], transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    save_figure(fig, path)


def contact_sheet(real: np.ndarray, fake: np.ndarray, path: Path, title: str = "", fake_wrong: np.ndarray | None = None,
                  cols: int = 6) -> None:
    """Real images uint8 [n, H, W] or [n, C, H, W] (left) beside synthetic ones (right), ``cols`` per side.

    ``fake_wrong``: bool [m]; those synthetic tiles get a red frame (the real-trained classifier
    assigns them to another class).
    """
    from ..figures import plt, save_figure, show

    rows = max(1, math.ceil(max(len(real), len(fake)) / cols))
    fig, axes = plt.subplots(rows, 2 * cols + 1, figsize=(0.75 * (2 * cols + 1), 0.75 * rows + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * cols + [0.3] + [1] * cols})
    for r in range(rows):
        for c in range(2 * cols + 1):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            i = r * cols + (c if c < cols else c - cols - 1)
            images = real if c < cols else fake if c > cols else None
            if images is None or i >= len(images):
                continue
            show(ax, images[i])
            if c > cols and fake_wrong is not None and fake_wrong[i]:
                for side in ax.spines.values():
                    side.set_visible(True)
                    side.set_color("red")
                    side.set_linewidth(2)
    axes[0, cols // 2].set_title("real (training split)", fontsize=8, loc="left")
    axes[0, cols + 1 + cols // 2].set_title("synthetic", fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=8)
    save_figure(fig, path)
