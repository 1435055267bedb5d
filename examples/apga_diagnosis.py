"""What APGA's reward and prior can see on a dataset with ROI masks (docs/apga.md, "Why the shortcut
target is missed"). Needs a trained `none` run on the same data.

    python examples/apga_diagnosis.py probe --data synth-shortcut --baseline runs/.../none/shot-all/seed-0
    python examples/apga_diagnosis.py prior --data synth-shortcut --baseline ... -o policy_size=0
    python examples/apga_diagnosis.py policy --data synth-shortcut --run runs/.../apga/shot-all/seed-0

probe: on the split's positive images (those with a finding), how much the baseline's loss rises when
  the finding (its ROI, dilated by 1 px) is erased, against the same mask shifted to a random place:
  APGA's reward R = L_adv - L_orig can only point at the finding if the first exceeds the second.
prior: the APGA policy right after its GradCAM prior (no REINFORCE step yet), scored against the ROIs
  like a finished run (saliency AUROC, pointing, mask IoU); -o sets APGA options.
policy: the same scores for the policy a finished APGA run selected (its best.pt), on --split
  (a run's metrics.json has them on the test split only; choose between settings on valid).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

import medaug.methods as mm
from medaug.config import TrainConfig, parse_options
from medaug.methods.apga import FILLS, erase
from medaug.models.classifiers import create_classifier
from medaug.train import load_checkpoint, load_data, model_state, read_toml, split_mask_metrics


def probe(ctx, split, seed: int) -> None:
    """Loss rise when the finding is erased vs the same-area mask shifted; one line per fill."""
    positive = split.rois.reshape(len(split.rois), -1).any(1)
    x = ctx.inputs(split.images[positive])  # [P, 1, H, W] in [0, 1]
    y = torch.from_numpy(split.labels[positive]).to(ctx.device)
    rng = np.random.default_rng(seed)
    rois = np.stack([binary_dilation(r, iterations=1) for r in split.rois[positive]])
    shifted = np.stack([np.roll(r, tuple(rng.integers(-20, 20, 2)), (0, 1)) for r in rois])

    def loss(images):  # per-image cross-entropy [P]
        with torch.no_grad():
            return ctx.loss(ctx.logits(images), y, reduction="none").cpu().numpy()

    base = loss(x)
    print(f"{int(positive.sum())} positive images, baseline accuracy on them "
          f"{(ctx.logits(x).argmax(1) == y).float().mean().item():.3f}, finding area {rois.mean():.4f}")
    for fill in FILLS:
        rise = {name: loss(erase(x, torch.from_numpy(m).float()[:, None].to(ctx.device), fill)) - base
                for name, m in (("finding", rois), ("shifted", shifted))}
        print(f"fill {fill}: loss rise erasing the finding {rise['finding'].mean():+.3f} +- {rise['finding'].std():.3f}, "
              f"the shifted mask {rise['shifted'].mean():+.3f} +- {rise['shifted'].std():.3f}")


def score(method, ctx, split, label: str) -> None:
    """Print the policy's saliency AUROC, pointing and mask IoU against the split's ROIs."""
    r = split_mask_metrics(method, ctx, split)
    print(f"{label}: saliency AUROC {r['saliency_auroc']:.3f} pointing {r['pointing']:.3f} mask IoU {r['mask_iou']:.3f}")


def prior(ctx, split, options: dict) -> None:
    """Saliency of the APGA policy after its GradCAM prior only."""
    method = mm.create("apga", **options)
    method.setup(ctx)
    score(method, ctx, split, f"prior {options}")


def trained_policy(ctx, split, run: Path) -> None:
    """Saliency of the policy in a finished APGA run's best.pt (built with the run's options)."""
    options = {**read_toml(run / "config.toml")["train"]["method_options"], "prior_steps": 0}
    method = mm.create("apga", **options)
    method.setup(ctx)
    method.load_state_dict(load_checkpoint(run / "best.pt")["method"])
    score(method, ctx, split, f"policy {run}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["probe", "prior", "policy"])
    parser.add_argument("--data", required=True, help="dataset folder with ROI masks")
    parser.add_argument("--baseline", help="a finished `none` run on that data (probe, prior)")
    parser.add_argument("--run", type=Path, help="a finished `apga` run on that data (policy)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", dest="options", action="append", default=[], help="APGA option key=value (prior)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = load_data(TrainConfig(data=args.data, size=args.size, model=args.model, seed=args.seed, progress=False))
    split = getattr(data, args.split)
    if split.rois is None:
        raise SystemExit(f"error: {args.data} has no ROI masks; the diagnosis needs them (the synthetic data has)")
    weights, flag = (args.run, "--run") if args.what == "policy" else (args.baseline, "--baseline")
    if weights is None:
        raise SystemExit(f"error: {args.what} needs {flag}")
    model = create_classifier(args.model, 1, len(data.classes))
    model.load_state_dict(model_state(weights))
    ctx = mm.context(model, torch.optim.Adam(model.parameters(), 1e-3), num_classes=len(data.classes), size=args.size,
                     epochs=1, classifier=args.model, train_images=data.train.images, seed=args.seed)
    ctx.extras["train_labels"] = data.train.labels
    if args.what == "probe":
        model.eval()
        probe(ctx, split, args.seed)
    elif args.what == "prior":
        prior(ctx, split, parse_options(args.options))
    else:
        trained_policy(ctx, split, args.run)


if __name__ == "__main__":
    main()
