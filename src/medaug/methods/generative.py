"""``generative``: mixes synthetic images (from ``medaug gen sample``) into the classifier's training.

Option ``samples=DIR``: an ImageFolder of generated images (``DIR/<class>/*.png``, class names as in
the real data), loaded at setup and resized to the run's size. Every real batch (x, y) gets
``ratio * B`` synthetic images whose labels are drawn from y itself (ratio 1: exactly one
synthetic image of the same class per real image), so the real:synthetic ratio is ``1:ratio``
*within every class* and the class balance of the real data is kept. One update on
``[x; x_syn]`` (as ``classical`` does with its augmented copies).

``classical=true`` stacks classical augmentation on top: each image of the mixed batch (real or
synthetic) is replaced by its ``classical`` augmentation with probability ``classical_p``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import NonNegFloat, Prob
from ..errors import MedaugError
from .base import Method, register
from .classical import Classical, mix_in


@register
class Generative(Method):
    name = "generative"

    @dataclasses.dataclass
    class Options:
        samples: str = ""  #: ImageFolder of synthetic images (`medaug gen sample --out DIR`)
        ratio: NonNegFloat = 1.0  #: synthetic images per real image, per class
        classical: bool = False  #: also apply classical augmentation (to real and synthetic images)
        classical_p: Prob = 0.5  #: probability per image of the classical augmentation when stacked

    def setup(self, ctx) -> None:
        from ..generative.quality import read_image_folder

        if not self.opts.samples:
            raise MedaugError("method 'generative': give -o samples=DIR (a folder written by `medaug gen sample`)")
        classes = ctx.extras.get("classes")  # None in a plan check (medaug.bench.prepare_method): the folder's own classes
        images, labels, classes = read_image_folder(self.opts.samples, ctx.cfg.size, None if classes is None else list(classes),
                                                    channels=ctx.channels)
        missing = [c for i, c in enumerate(classes) if not (labels == i).any()]
        if missing and self.opts.ratio > 0:
            raise MedaugError(f"method 'generative': {self.opts.samples} has no synthetic images of class(es) {', '.join(missing)}")
        order = labels.argsort(kind="stable")
        self.pool = torch.from_numpy(images[order]).to(ctx.device)  # uint8 [M, C, S, S], grouped by class
        counts = torch.bincount(torch.from_numpy(labels), minlength=ctx.num_classes)
        self.counts = counts.to(ctx.device)
        self.offsets = (torch.cumsum(counts, 0) - counts).to(ctx.device)
        self.gen = torch.Generator().manual_seed(ctx.cfg.seed * 7919 + 17)
        self.classical = None
        if self.opts.classical:
            self.classical = Classical()
            self.classical.setup(ctx)

    def synthetic_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Labels of the synthetic images for a real batch y: floor(ratio) copies of y, plus a random part for the rest."""
        whole, frac = int(math.floor(self.opts.ratio)), self.opts.ratio - math.floor(self.opts.ratio)
        parts = [y.repeat(whole)] if whole else []
        extra = int(round(frac * len(y)))
        if extra:
            pick = torch.randperm(len(y), generator=self.gen)[:extra].to(y.device)
            parts.append(y[pick])
        return torch.cat(parts) if parts else y[:0]

    def draw(self, labels: torch.Tensor) -> torch.Tensor:
        """Synthetic images float [n, C, S, S] in [0, 1], one of class labels[i] each (uniform within the class)."""
        u = torch.rand(len(labels), generator=self.gen).to(labels.device)
        idx = self.offsets[labels] + (u * self.counts[labels]).long().clamp_max(self.counts[labels] - 1)
        return self.pool[idx].float().div_(255.0)

    def train_step(self, ctx, x, y):
        y_syn = self.synthetic_labels(y)
        xb, yb = torch.cat([x, self.draw(y_syn)]), torch.cat([y, y_syn])
        if self.classical is not None:
            xb = mix_in(xb, self.classical.apply, self.opts.classical_p, self.gen)
        loss = ctx.loss(ctx.logits(xb), yb)
        ctx.step(loss)
        return {"loss": loss.detach(), "synthetic_fraction": torch.tensor(len(y_syn) / len(yb))}

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.gen.set_state(state["rng"])
