"""``apga``: Adversarial Policy Gradient Augmentation (Cheng, Iriondo et al., 2020), Algorithm 1.

A segmentation network M_p is a pixel policy: P = M_p(x) is the probability that a pixel is
*useful*. Its action is the useful-pixel mask ``a`` (threshold ``P > 0.5`` as in the paper, or
sampled ``a ~ Bernoulli(P)``). Per batch (x, y), starting from a trained ``none`` classifier M_c:

1. L_orig = CE(M_c(x), y); one step on theta_c.
2. Adversarial image x_adv = (1 - a) * x: erase what the policy calls useful
   (the paper's A_adv = (P < 0.5) is 1 - a).
3. L_adv = CE(M_c(x_adv), y);  reward  R = L_adv - L_orig                        (paper eq. 6)
4. b = EMA of R (decay 0.5); advantage R - b.
5. L_pg = BCE(P, a) * (R - b) + lambda_zeros * BCE(P, 0)                         (paper eq. 7)
   BCE(P, a) = -log pi(a | x) per pixel, so this is REINFORCE with a baseline; the zeros
   term stops the policy from calling every pixel useful (erasing everything).
6. One step on theta_p with L_pg.
7. Aiding mask a_aid = (M_p(x) > 0.5); one step on theta_c with CE(M_c(a_aid * x), y).
Originals (step 1) and aided images (step 7) are used 1:1.

Presets: ``paper`` (the steps above), ``code`` (the authors' code's choices) and ``learn`` (the
default, built so the policy keeps learning on real images; docs/apga.md derives it): under the
paper's rule "nothing useful" is absorbing (a = 0 -> x_adv = x -> R = 0 -> advantage -> 0, and
only lambda_zeros BCE(P, 0) acts, pushing P further down), so ``learn`` starts the policy from the
baseline's GradCAM (``prior_steps``), samples a ~ Bernoulli(P) with per-image rewards, replaces the
zeros term by a kept-area term lambda_area (mean P - t)^2 whose fixed point is the prior's area,
keeps each image's top mean(P) fraction of pixels as the aiding mask (``aid_rule``), uses an aided
image unmasked when its mask keeps < ``min_keep`` of it, and runs the fused step with an 8-wide
policy at 32 px (``policy_size = 32``; docs/apga.md measures the image side against it).

Options (each changes one equation; a preset fills those left unset):
- ``action``: 'threshold' (paper, code) | 'bernoulli' (a ~ Bernoulli(P): a real stochastic policy,
  so BCE(P, a) is an unbiased log-likelihood gradient; with a threshold the action is a function
  of P and only the advantage's sign steers it).
- ``reward``: 'batch' (paper, code: one scalar R per batch) | 'sample' (R_i per image, step 5 uses
  mean_i BCE_i(P, a) * (R_i - b)).
- ``baseline_update``: 'after' (paper: advantage R_t - b_{t-1}, then b_t = d b_{t-1} + (1-d) R_t) |
  'before' (code: update b first, advantage R_t - b_t).
- ``loss_weights``: 'paper' (eq. 7) | 'code': L_pg = 100 (R - b) BCE(P, a) + 0.1 |R - b| BCE(P, 0)
  + 0.01 |R - b| BCE(P, 1).
- ``adv_eval``: False (paper: L_adv in training mode) | True (code: eval mode).
- ``tta``: test-time augmentation, mean softmax of the original and the aided image.
- ``step``: 'sequential' (Algorithm 1 as written: three classifier passes, two classifier updates,
  two policy passes) | 'fused' (the fast schedule, see ``fused_step``): one policy forward, one
  classifier forward/backward on [x ; a_aid * x] with the aiding mask taken from the same
  (pre-update) policy output, L_adv from the pre-update classifier in a gradient-free pass that
  normalises with the BatchNorm statistics of [x ; a_aid * x] (so L_orig and L_adv are the same
  function, and the adversarial images do not touch the classifier's update), one backward for
  both networks, no host synchronisation. It changes Algorithm 1 in exactly those places.
- ``action_grid``: act on G x G cells (P average-pooled over each cell) instead of pixels: far
  fewer actions per image, so one scalar reward assigns credit better (not in the paper).
- ``init_useful``: initial P (last-layer bias); a low value makes the first adversarial masks sparse.
- ``lambda_area``, ``target_area``: step 5 adds lambda_area * (mean_j P_ij - t)^2 per image (t = the
  prior's mean GradCAM when ``target_area`` is 0).
- ``min_keep``: step 7 uses x_i unmasked when its aiding mask keeps less than this fraction.
- ``aid_rule``: step 7's aiding mask: 'threshold' (paper, code: a_aid = 1[P > 0.5]) | 'area' (learn:
  keep each image's round(mean_j P_ij * N) pixels of highest P, so the kept fraction is the policy's
  mean P and the mask follows the policy's ranking of the pixels, not an absolute level of P).
- ``prior_steps``: before training, fit P to the baseline's normalised GradCAM maps (BCE).
- ``policy``, ``policy_width``, ``policy_size`` (0 = image size; e.g. 64/112 with the mask upsampled),
  ``policy_lr`` (Adam, paper 1e-4), ``policy_weights`` (local file; the paper used Carvana weights).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F

from ..config import NonNegFloat, NonNegInt, PosFloat, PosInt, Prob, Range
from ..device import autocast
from ..errors import MedaugError
from ..models.batch_stats import eval_mode, normalise_with, record_batch_stats
from ..models.policies import PixelPolicy, create_policy
from .base import KEPT_FRACTION, Method, load_policy_state, policy_state, register
from .classical import Stacked, stacked_on
from .gradcam import cam_layer, grad_cam

LEARN_LAMBDA_AREA, LEARN_TARGET_AREA, LEARN_POLICY_LR, LEARN_GRID = 1.0, 0.0, 1e-4, 0
LEARN_SAMPLES, LEARN_FILL = 1, "zero"

_PAPER = dict(action="threshold", reward="batch", baseline_update="after", loss_weights="paper", adv_eval=False,
              samples=1, fill="zero", lambda_zeros=0.1, lambda_area=0.0, target_area=0.0, min_keep=0.0, prior_steps=0, aid_rule="threshold",
              step="sequential", policy_width=16, policy_size=0, policy_lr=1e-4, action_grid=0)
PRESETS = {
    "learn": dict(action="bernoulli", reward="sample", baseline_update="after", loss_weights="paper", adv_eval=False,
                  samples=LEARN_SAMPLES, fill=LEARN_FILL,
                  lambda_zeros=0.0, lambda_area=LEARN_LAMBDA_AREA, target_area=LEARN_TARGET_AREA, min_keep=0.05, aid_rule="area",
                  prior_steps=100, step="fused", policy_width=8, policy_size=32, policy_lr=LEARN_POLICY_LR,
                  action_grid=LEARN_GRID),
    "paper": _PAPER,
    "code": {**_PAPER, "baseline_update": "before", "loss_weights": "code", "adv_eval": True},
}


def policy_loss(p: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor, lambda_zeros: float,
                lambda_ones: float = 0.0, weights: str = "paper", lambda_area: float = 0.0,
                target_area: float = 0.0) -> torch.Tensor:
    """REINFORCE loss of a pixel policy (paper eq. 7, or the authors' code's weighting).

    p float [B, 1, h, w] probabilities; action {0,1} same shape; advantage scalar [] or per-image [B].
    ``lambda_area`` > 0 adds lambda_area * (mean_pixels P_i - target_area)^2 per image (the kept-area term).
    """
    eps = 1e-6
    p = p.clamp(eps, 1 - eps)
    nll = F.binary_cross_entropy(p, action, reduction="none").flatten(1).mean(1)  # -log pi(a|x) / pixels, [B]
    zeros = F.binary_cross_entropy(p, torch.zeros_like(p), reduction="none").flatten(1).mean(1)
    ones = F.binary_cross_entropy(p, torch.ones_like(p), reduction="none").flatten(1).mean(1)
    adv = advantage.expand_as(nll) if advantage.dim() == 0 else advantage
    if weights == "code":
        a = adv.abs()
        return (100 * adv * nll + 0.1 * a * zeros + 0.01 * a * ones).mean()
    loss = adv * nll + lambda_zeros * zeros + lambda_ones * ones
    if lambda_area:
        loss = loss + lambda_area * (p.flatten(1).mean(1) - target_area) ** 2
    return loss.mean()


def top_area_mask(p: torch.Tensor) -> torch.Tensor:
    """Per image, 1 on the round(mean P * N) pixels of highest P (at least one), else 0.

    p float [B, 1, h, w] -> float {0, 1} [B, 1, h, w]; ties at the cut-off are kept.
    """
    flat = p.detach().flatten(1)
    k = (flat.mean(1) * flat.shape[1]).round().clamp(1, flat.shape[1]).long()
    cut = flat.sort(1, descending=True).values.gather(1, (k - 1).unsqueeze(1))
    return (flat >= cut).to(p.dtype).view_as(p)


def guard_blank(keep: torch.Tensor, min_keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep-masks with every mask keeping less than ``min_keep`` of its image replaced by all ones,
    kept fraction per image [B] before the guard). keep float {0,1} [B, 1, H, W]."""
    kept = keep.flatten(1).mean(1)
    if min_keep <= 0:
        return keep, kept
    blank = (kept < min_keep).view(-1, 1, 1, 1)
    return torch.where(blank, torch.ones_like(keep), keep), kept


def blur(x: torch.Tensor) -> torch.Tensor:
    """A heavy Gaussian blur of x float [N, C, H, W] (sigma = side / 16, reflected borders): fine detail gone,
    brightness kept."""
    from kornia.filters import gaussian_blur2d

    sigma = max(1.0, x.shape[-1] / 16)
    k = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


FILLS = {"zero": torch.zeros_like, "mean": lambda x: x.mean((-2, -1), keepdim=True).expand_as(x), "blur": blur}


def erase(x: torch.Tensor, a: torch.Tensor, fill: str = "zero") -> torch.Tensor:
    """Step 2's adversarial image: x_adv = (1 - a) x + a f(x), the pixels with a = 1 replaced by 0 ('zero', the
    paper), the image's mean ('mean') or its blur ('blur'). x float [N, C, H, W]; a float {0, 1} [N, 1, H, W]."""
    if fill == "zero":
        return x * (1 - a)  # the paper's expression, bit for bit
    return x * (1 - a) + FILLS[fill](x) * a


@register
class APGA(Method):
    name = "apga"
    needs_baseline = True
    presets = tuple(PRESETS)
    builds_on = staticmethod(stacked_on)

    @dataclasses.dataclass
    class Options:
        preset: str = "learn"  #: "learn" (default: keeps learning on real data) | "paper" (Algorithm 1) | "code" (authors' code)
        action: str = ""  #: threshold | bernoulli ('' or None = from the preset, here and below)
        reward: str = ""  #: batch | sample
        baseline_update: str = ""  #: after | before
        loss_weights: str = ""  #: paper | code
        adv_eval: bool | None = None  #: compute L_adv in eval mode (code) or train mode (paper)
        samples: PosInt | None = None  #: K masks sampled per image; K > 1: per-image leave-one-out baseline instead of the EMA (bernoulli, sample)
        fill: str = ""  #: what the pixels erased in x_adv become: zero (paper) | mean (the image's mean) | blur (a Gaussian blur of the image)
        ema_decay: Annotated[float, Range(ge=0, lt=1)] = 0.5  #: decay of the reward's EMA baseline b
        lambda_zeros: NonNegFloat | None = None  #: weight of BCE(P, 0) (paper 0.1)
        lambda_ones: NonNegFloat = 0.0
        lambda_area: NonNegFloat | None = None  #: weight of the kept-area term (mean P - target_area)^2 (0 = off)
        target_area: Prob | None = None  #: the mean P the kept-area term pulls towards (0 = the prior's mean GradCAM)
        min_keep: Annotated[float, Range(ge=0, lt=1)] | None = None  #: an aided mask keeping less than this fraction of its image is replaced by all ones
        prior_steps: NonNegInt | None = None  #: steps of BCE(P, GradCAM of the baseline) before training (0 = off)
        aid_rule: str = ""  #: threshold (a_aid = 1[P > 0.5]) | area (the top mean(P) fraction of pixels by P)
        policy: str = "ternaus"
        policy_width: PosInt | None = None  #: 64 = the original TernausNet
        policy_size: NonNegInt | None = None  #: policy input side (0 = image side; rounded up to the network's multiple)
        policy_lr: PosFloat | None = None
        policy_weights: str = ""
        tta: bool = False
        step: str = ""  #: sequential (Algorithm 1) | fused (one pass; see module docstring)
        action_grid: NonNegInt | None = None  #: act on a coarse G x G grid of cells (P average-pooled); 0 = per pixel
        init_useful: Annotated[float, Range(gt=0, lt=1, also=(0,))] = 0.0  #: start P near this value by setting the last layer's bias (0 = leave as is)
        classical: bool = False  #: stacked on classical augmentation: start from the `classical` run, and each image of a batch is first replaced by its classical augmentation with probability classical_p
        classical_p: Prob = 0.5  #: with classical = true: probability per image of the classical augmentation

        def __post_init__(self):
            if self.preset not in PRESETS:
                raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
            for key, value in PRESETS[self.preset].items():
                if getattr(self, key) in ("", None):
                    setattr(self, key, value)
            allowed = dict(action=("threshold", "bernoulli"), reward=("batch", "sample"),
                           baseline_update=("after", "before"), loss_weights=("paper", "code"),
                           step=("sequential", "fused"), aid_rule=("threshold", "area"), fill=tuple(FILLS))
            for key, values in allowed.items():
                if getattr(self, key) not in values:
                    raise ValueError(f"{key} must be one of {', '.join(values)}")
            if self.samples > 1 and (self.action, self.reward) != ("bernoulli", "sample"):
                raise ValueError(f"samples {self.samples}: > 1 only with action=bernoulli and reward=sample")

    def test_time_rule(self) -> str:
        return ("tta: the mean of the softmax of the image and of the image with the policy's mask applied "
                "(pixels it judges not useful set to 0)") if self.opts.tta else ""

    def setup_predict(self, ctx) -> None:
        """The policy network only (its weights, optimizer and reward baseline come from best.pt); no GradCAM prior."""
        o = self.opts
        self.policy = ctx.place(PixelPolicy(create_policy(o.policy, 1, o.policy_width, ""), o.policy_size))
        self.prior, self.target_area = {}, o.target_area
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=o.policy_lr)
        self.baseline = torch.zeros((), device=ctx.device)
        self.stacked = None

    def setup(self, ctx) -> None:
        o = self.opts
        net = create_policy(o.policy, ctx.channels, o.policy_width, o.policy_weights)  # sees the image's C channels
        if o.init_useful:
            last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.constant_(last.bias, math.log(o.init_useful / (1 - o.init_useful)))
        self.policy = ctx.place(PixelPolicy(net, o.policy_size, ctx.channels))
        self.prior = {}
        if o.prior_steps:
            self.fit_prior(ctx)
        # the kept-area term's target: as set, or (0) the mean of the prior's GradCAM maps
        self.target_area = o.target_area or self.prior.get("cam_area", 0.0)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=o.policy_lr)
        self.baseline = torch.zeros((), device=ctx.device)  # EMA of the reward, b
        self.stacked = Stacked(ctx, o.classical_p) if o.classical else None

    def fit_prior(self, ctx, max_images: int = 2048) -> None:
        """Initialise the policy on the baseline's GradCAM: ``prior_steps`` Adam steps (lr 1e-3; at most 10
        passes over the images) of BCE(P, cam) on batches of (at most ``max_images``) training images, cam = the normalised GradCAM
        of the classifier as set up (the trained ``none`` baseline) at the policy's resolution.
        Stands in for the paper's Carvana-pretrained TernausNet: the first masks are not random."""
        images = ctx.extras.get("train_images")
        if images is None or len(images) == 0:
            raise MedaugError("method apga: prior_steps needs the training images (Context.extras['train_images']); "
                              "set the option prior_steps=0")
        model = ctx.unwrap(ctx.model)
        layer = cam_layer(model, ctx.cfg.model, "", "apga",
                          "set the option prior_steps=0 (the prior needs a registered classifier's GradCAM layer)")
        gen = torch.Generator().manual_seed(ctx.cfg.seed)
        pick = torch.randperm(len(images), generator=gen)[:max_images].numpy()
        images = images[np.sort(pick)]
        side = ctx.unwrap(self.policy).side(images.shape[-1])
        cams = []
        with eval_mode(model):
            for i in range(0, len(images), ctx.cfg.eval_batch_size):
                x = ctx.inputs(images[i : i + ctx.cfg.eval_batch_size])
                cam = grad_cam(model, layer, ctx.normalize(x))
                cams.append(F.interpolate(cam, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1))
        cams = torch.cat(cams)
        opt = torch.optim.Adam(self.policy.parameters(), lr=1e-3)
        self.policy.train()
        batch = min(ctx.cfg.batch_size, len(images))
        for _ in range(min(self.opts.prior_steps, 10 * math.ceil(len(images) / batch))):  # at most 10 passes
            idx = torch.randint(len(images), (batch,), generator=gen)
            with autocast(ctx.device, ctx.cfg.precision):
                p = self.policy(ctx.inputs(images[idx.numpy()]))
            loss = F.binary_cross_entropy(p.float().clamp(1e-6, 1 - 1e-6), cams[idx.to(cams.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.prior = {"bce": float(loss.detach()), "cam_area": float(cams.mean()), "cam_kept": float((cams > 0.5).float().mean())}

    def policy_probs(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """P float [B, 1, h, w]: at the policy's resolution, or G x G cells with ``action_grid``."""
        with autocast(ctx.device, ctx.cfg.precision):
            p = self.policy(x)
        return F.adaptive_avg_pool2d(p, self.opts.action_grid) if self.opts.action_grid else p

    def aiding(self, p: torch.Tensor) -> torch.Tensor:
        """Step 7's aiding mask a_aid from P (policy resolution), float {0, 1}, by ``aid_rule``."""
        return top_area_mask(p) if self.opts.aid_rule == "area" else (p.detach() > 0.5).to(p.dtype)

    def aided_keep(self, p: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 7's keep-masks for images x [B, C, H, W] from P, after the ``min_keep`` guard, float {0, 1}
        [B, 1, H, W], and the kept fraction per image [B] before the guard."""
        return guard_blank(PixelPolicy.upsample(self.aiding(p).to(x.dtype), *x.shape[-2:]), self.opts.min_keep)

    def act(self, p: torch.Tensor) -> torch.Tensor:
        """The useful-pixel mask a (float {0,1}, policy resolution)."""
        if self.opts.action == "bernoulli":
            return torch.bernoulli(p.detach())
        return (p.detach() > 0.5).to(p.dtype)

    def per_sample(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` [B, ...] repeated for the K = ``samples`` masks drawn per image: [K B, ...] (sample-major)."""
        return t if self.opts.samples == 1 else t.repeat(self.opts.samples, *[1] * (t.dim() - 1))

    def reward_and_advantage(self, ctx, loss_adv: torch.Tensor, loss_orig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 3-4: per-image reward r [K B] and the advantage (scalar or [K B]); updates the EMA b.

        With K = ``samples`` > 1 masks per image the advantage of each is its reward minus the mean
        reward of the image's other K - 1 masks (leave-one-out), in place of R - b. Under torchrun the
        batch reward and b are means over every process's images, so every process takes the same
        policy step.
        """
        o = self.opts
        r = loss_adv - loss_orig  # per image (and sample)
        batch_mean = ctx.all_mean(r.mean())
        reward = batch_mean if o.reward == "batch" else r
        new_b = o.ema_decay * self.baseline + (1 - o.ema_decay) * batch_mean
        advantage = reward - (new_b if o.baseline_update == "before" else self.baseline)
        if o.samples > 1:
            rk = r.view(o.samples, -1)  # [K, B]
            advantage = (rk - (rk.sum(0, keepdim=True) - rk) / (o.samples - 1)).flatten()
        self.baseline = new_b
        return r, advantage

    def train_step(self, ctx, x, y):
        if self.stacked is not None:
            x = self.stacked(x)
        return self.fused_step(ctx, x, y) if self.opts.step == "fused" else self.sequential_step(ctx, x, y)

    def fused_step(self, ctx, x, y):
        """One policy forward, one classifier forward/backward on [x ; aided x], one backward for both."""
        o = self.opts
        b, (h, w) = x.shape[0], x.shape[-2:]
        self.policy.train()
        p = self.policy_probs(ctx, x)
        a = self.act(self.per_sample(p))
        aid, kept = self.aided_keep(p, x)
        x_adv = erase(self.per_sample(x), PixelPolicy.upsample(a, h, w), o.fill)
        with (nullcontext() if o.adv_eval else record_batch_stats(ctx.model)) as stats:
            per_image = ctx.loss(ctx.logits(torch.cat([x, x * aid])), torch.cat([y, y]), reduction="none")
        # L_adv without gradient: in eval mode (code), or (paper, training mode) with the batch
        # statistics of [x ; aided x], so L_orig and L_adv are the same function and erasing nothing
        # gives R = 0, while the adversarial images leave the classifier's update untouched
        with torch.no_grad(), (eval_mode(ctx.model) if o.adv_eval else normalise_with(stats)):
            loss_adv = ctx.loss(ctx.logits(x_adv, ctx.unwrap(ctx.model)), self.per_sample(y), reduction="none")
        loss_orig, loss_aid = per_image[:b], per_image[b:]
        with torch.no_grad():
            r, advantage = self.reward_and_advantage(ctx, loss_adv, self.per_sample(loss_orig.detach()))
        lp = policy_loss(self.per_sample(p), a, advantage, o.lambda_zeros, o.lambda_ones, o.loss_weights, o.lambda_area, self.target_area)
        loss = per_image.mean()
        ctx.step(loss + lp, ctx.optimizer, self.policy_opt)  # disjoint parameters: one backward serves both
        return {"loss": loss_orig.mean().detach(), "loss_aided": loss_aid.mean().detach(), "loss_adv": loss_adv.mean(),
                "reward": r.mean(), "baseline": self.baseline.clone(), "policy_loss": lp.detach(),
                "useful_fraction": a.mean(), KEPT_FRACTION: kept.mean(), "guarded": (kept < o.min_keep).float().mean()}

    def sequential_step(self, ctx, x, y):
        """Algorithm 1 as written, pass by pass."""
        o = self.opts
        h, w = x.shape[-2:]
        # 1. classifier step on the originals
        logits = ctx.logits(x)
        loss_orig = ctx.loss(logits, y, reduction="none")
        ctx.step(loss_orig.mean())
        # 2-3. adversarial image and reward
        self.policy.train()
        p = self.policy_probs(ctx, x)
        a = self.act(self.per_sample(p))
        x_adv = erase(self.per_sample(x), PixelPolicy.upsample(a, h, w), o.fill)
        with torch.no_grad(), (eval_mode(ctx.model) if o.adv_eval else nullcontext()):
            loss_adv = ctx.loss(ctx.logits(x_adv), self.per_sample(y), reduction="none")
        with torch.no_grad():  # 3-4. reward, baseline
            r, advantage = self.reward_and_advantage(ctx, loss_adv, self.per_sample(loss_orig.detach()))
        # 5-6. policy step
        lp = policy_loss(self.per_sample(p), a, advantage, o.lambda_zeros, o.lambda_ones, o.loss_weights, o.lambda_area, self.target_area)
        ctx.step(lp, self.policy_opt)
        # 7. classifier step on aided images (fresh policy output, after its update)
        with torch.no_grad():
            keep, kept = self.aided_keep(self.policy_probs(ctx, x), x)
        loss_aid = ctx.loss(ctx.logits(x * keep), y)
        ctx.step(loss_aid)
        return {"loss": loss_orig.mean().detach(), "loss_aided": loss_aid.detach(), "loss_adv": loss_adv.mean(),
                "reward": r.mean(), "baseline": self.baseline.clone(), "policy_loss": lp.detach(),
                "useful_fraction": a.mean(), KEPT_FRACTION: kept.mean(), "guarded": (kept < o.min_keep).float().mean()}

    def keep_mask(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """Aiding mask (``aid_rule``) at image resolution, float {0,1} [B, 1, H, W]."""
        self.policy.eval()
        with torch.no_grad():
            return PixelPolicy.upsample(self.aiding(self.policy_probs(ctx, x)).to(x.dtype), *x.shape[-2:])

    def predict(self, ctx, x):
        if not self.opts.tta:
            return ctx.logits(x)
        keep = guard_blank(self.keep_mask(ctx, x), self.opts.min_keep)[0]
        probs = (torch.softmax(ctx.logits(x), 1) + torch.softmax(ctx.logits(x * keep), 1)) / 2
        return probs.clamp_min(1e-12).log()

    def masks(self, ctx, x):
        return self.keep_mask(ctx, x)

    def saliency(self, ctx, x):
        """The policy's P, upsampled (nearest) to the image: float [B, 1, H, W]."""
        self.policy.eval()
        with torch.no_grad():
            return PixelPolicy.upsample(self.policy_probs(ctx, x), *x.shape[-2:])

    def state_dict(self) -> dict:
        stacked = self.stacked.state_dict() if self.stacked is not None else {}
        return policy_state(self.policy, self.policy_opt, baseline=self.baseline, **stacked)

    def load_state_dict(self, state: dict) -> None:
        if state:
            load_policy_state(self.policy, self.policy_opt, state)
            self.baseline = state["baseline"].to(self.baseline.device)
            if self.stacked is not None:
                self.stacked.load_state_dict(state)
