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

Options (each changes one equation; ``preset="code"`` sets the authors' code's choices):
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
- ``policy``, ``policy_width``, ``policy_size`` (0 = image size; e.g. 64/112 with the mask upsampled),
  ``policy_lr`` (Adam, paper 1e-4), ``policy_weights`` (local file; the paper used Carvana weights).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..device import autocast
from ..models.batch_stats import eval_mode, normalise_with, record_batch_stats
from ..models.policies import PixelPolicy, create_policy
from .base import Method, register

PRESETS = {
    "paper": dict(action="threshold", reward="batch", baseline_update="after", loss_weights="paper", adv_eval=False),
    "code": dict(action="threshold", reward="batch", baseline_update="before", loss_weights="code", adv_eval=True),
}


def policy_loss(p: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor, lambda_zeros: float,
                lambda_ones: float = 0.0, weights: str = "paper") -> torch.Tensor:
    """REINFORCE loss of a pixel policy (paper eq. 7, or the authors' code's weighting).

    p float [B, 1, h, w] probabilities; action {0,1} same shape; advantage scalar [] or per-image [B].
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
    return (adv * nll + lambda_zeros * zeros + lambda_ones * ones).mean()


@register
class APGA(Method):
    name = "apga"
    needs_baseline = True

    @dataclasses.dataclass
    class Options:
        preset: str = "paper"  #: 'paper' | 'code' (sets action, reward, baseline_update, loss_weights, adv_eval)
        action: str = ""  #: threshold | bernoulli ('' = from preset)
        reward: str = ""  #: batch | sample
        baseline_update: str = ""  #: after | before
        loss_weights: str = ""  #: paper | code
        adv_eval: bool | None = None  #: compute L_adv in eval mode (code) or train mode (paper)
        ema_decay: float = 0.5
        lambda_zeros: float = 0.1
        lambda_ones: float = 0.0
        policy: str = "ternaus"
        policy_width: int = 16  #: 64 = the original TernausNet
        policy_size: int = 0  #: policy input side (0 = image side)
        policy_lr: float = 1e-4
        policy_weights: str = ""
        tta: bool = False
        step: str = "sequential"  #: sequential (Algorithm 1) | fused (one pass; see module docstring)
        action_grid: int = 0  #: act on a coarse G x G grid of cells (P average-pooled); 0 = per pixel
        init_useful: float = 0.0  #: start P near this value by setting the last layer's bias (0 = leave as is)

        def __post_init__(self):
            if self.preset not in PRESETS:
                raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
            for key, value in PRESETS[self.preset].items():
                if getattr(self, key) in ("", None):
                    setattr(self, key, value)
            allowed = dict(action=("threshold", "bernoulli"), reward=("batch", "sample"),
                           baseline_update=("after", "before"), loss_weights=("paper", "code"),
                           step=("sequential", "fused"))
            for key, values in allowed.items():
                if getattr(self, key) not in values:
                    raise ValueError(f"{key} must be one of {', '.join(values)}")

    def setup(self, ctx) -> None:
        o = self.opts
        net = create_policy(o.policy, 1, o.policy_width, o.policy_weights)
        if o.init_useful:
            last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.constant_(last.bias, math.log(o.init_useful / (1 - o.init_useful)))
        self.policy = ctx.place(PixelPolicy(net, o.policy_size, image_size=ctx.cfg.size))
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=o.policy_lr)
        self.baseline = torch.zeros((), device=ctx.device)  # EMA of the reward, b

    def policy_probs(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """P float [B, 1, h, w]: at the policy's resolution, or G x G cells with ``action_grid``."""
        with autocast(ctx.device, ctx.cfg.precision):
            p = self.policy(x)
        return F.adaptive_avg_pool2d(p, self.opts.action_grid) if self.opts.action_grid else p

    def act(self, p: torch.Tensor) -> torch.Tensor:
        """The useful-pixel mask a (float {0,1}, policy resolution)."""
        if self.opts.action == "bernoulli":
            return torch.bernoulli(p.detach())
        return (p.detach() > 0.5).to(p.dtype)

    def reward_and_advantage(self, ctx, loss_adv: torch.Tensor, loss_orig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 3-4: per-image reward r [B] and the advantage (scalar or [B]); updates the EMA b.

        Under torchrun the batch reward and b are means over every process's images, so every
        process takes the same policy step.
        """
        o = self.opts
        r = loss_adv - loss_orig  # per image
        batch_mean = ctx.all_mean(r.mean())
        reward = batch_mean if o.reward == "batch" else r
        new_b = o.ema_decay * self.baseline + (1 - o.ema_decay) * batch_mean
        advantage = reward - (new_b if o.baseline_update == "before" else self.baseline)
        self.baseline = new_b
        return r, advantage

    def train_step(self, ctx, x, y):
        return self.fused_step(ctx, x, y) if self.opts.step == "fused" else self.sequential_step(ctx, x, y)

    def fused_step(self, ctx, x, y):
        """One policy forward, one classifier forward/backward on [x ; aided x], one backward for both."""
        o = self.opts
        b, (h, w) = x.shape[0], x.shape[-2:]
        self.policy.train()
        p = self.policy_probs(ctx, x)
        a = self.act(p)
        aid = PixelPolicy.upsample((p.detach() > 0.5).to(x.dtype), h, w)
        x_adv = x * (1 - PixelPolicy.upsample(a, h, w))
        with (nullcontext() if o.adv_eval else record_batch_stats(ctx.model)) as stats:
            per_image = F.cross_entropy(ctx.logits(torch.cat([x, x * aid])), torch.cat([y, y]), reduction="none")
        # L_adv without gradient: in eval mode (code), or (paper, training mode) with the batch
        # statistics of [x ; aided x], so L_orig and L_adv are the same function and erasing nothing
        # gives R = 0, while the adversarial images leave the classifier's update untouched
        with torch.no_grad(), (eval_mode(ctx.model) if o.adv_eval else normalise_with(stats)):
            loss_adv = F.cross_entropy(ctx.logits(x_adv, ctx.unwrap(ctx.model)), y, reduction="none")
        loss_orig, loss_aid = per_image[:b], per_image[b:]
        with torch.no_grad():
            r, advantage = self.reward_and_advantage(ctx, loss_adv, loss_orig.detach())
        lp = policy_loss(p, a, advantage, o.lambda_zeros, o.lambda_ones, o.loss_weights)
        loss = per_image.mean()
        ctx.step(loss + lp, ctx.optimizer, self.policy_opt)  # disjoint parameters: one backward serves both
        return {"loss": loss_orig.mean().detach(), "loss_aided": loss_aid.mean().detach(), "loss_adv": loss_adv.mean(),
                "reward": r.mean(), "baseline": self.baseline.clone(), "policy_loss": lp.detach(),
                "useful_fraction": a.mean()}

    def sequential_step(self, ctx, x, y):
        """Algorithm 1 as written, pass by pass."""
        o = self.opts
        h, w = x.shape[-2:]
        # 1. classifier step on the originals
        logits = ctx.logits(x)
        loss_orig = F.cross_entropy(logits, y, reduction="none")
        ctx.step(loss_orig.mean())
        # 2-3. adversarial image and reward
        self.policy.train()
        p = self.policy_probs(ctx, x)
        a = self.act(p)
        x_adv = x * (1 - PixelPolicy.upsample(a, h, w))
        with torch.no_grad(), (eval_mode(ctx.model) if o.adv_eval else nullcontext()):
            loss_adv = F.cross_entropy(ctx.logits(x_adv), y, reduction="none")
        with torch.no_grad():
            r, advantage = self.reward_and_advantage(ctx, loss_adv, loss_orig.detach())  # 3-4. reward, EMA baseline
        # 5-6. policy step
        lp = policy_loss(p, a, advantage, o.lambda_zeros, o.lambda_ones, o.loss_weights)
        ctx.step(lp, self.policy_opt)
        # 7. classifier step on aided images (fresh policy output, after its update)
        with torch.no_grad():
            keep = PixelPolicy.upsample((self.policy_probs(ctx, x) > 0.5).to(x.dtype), h, w)
        loss_aid = F.cross_entropy(ctx.logits(x * keep), y)
        ctx.step(loss_aid)
        return {"loss": loss_orig.mean().detach(), "loss_aided": loss_aid.detach(), "loss_adv": loss_adv.mean(),
                "reward": r.mean(), "baseline": self.baseline.clone(), "policy_loss": lp.detach(),
                "useful_fraction": a.mean()}

    def keep_mask(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """Aiding mask (M_p(x) > 0.5) at image resolution, float {0,1} [B, 1, H, W]."""
        self.policy.eval()
        with torch.no_grad():
            return PixelPolicy.upsample((self.policy_probs(ctx, x) > 0.5).to(x.dtype), *x.shape[-2:])

    def predict(self, ctx, x):
        if not self.opts.tta:
            return ctx.logits(x)
        probs = (torch.softmax(ctx.logits(x), 1) + torch.softmax(ctx.logits(x * self.keep_mask(ctx, x)), 1)) / 2
        return probs.clamp_min(1e-12).log()

    def masks(self, ctx, x):
        return self.keep_mask(ctx, x)

    def saliency(self, ctx, x):
        """The policy's P, upsampled (nearest) to the image: float [B, 1, H, W]."""
        self.policy.eval()
        with torch.no_grad():
            return PixelPolicy.upsample(self.policy_probs(ctx, x), *x.shape[-2:])

    def state_dict(self) -> dict:
        return {"policy": getattr(self.policy, "module", self.policy).state_dict(), "policy_opt": self.policy_opt.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        if state:
            getattr(self.policy, "module", self.policy).load_state_dict(state["policy"])
            self.policy_opt.load_state_dict(state["policy_opt"])
            self.baseline = state["baseline"].to(self.baseline.device)
