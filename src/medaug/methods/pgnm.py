"""``pgnm``: Policy Gradient-Driven Noise Mask (Yavuz, arXiv, 2024; seed 003), stage 1.

A very light policy network maps each image to Beta(alpha, beta) parameters on a coarse G x G
grid; a noise mask m ~ Beta is sampled, upsampled (nearest) to the image, Gaussian-blurred and
multiplies the normalised image (in [0, 1] units: x' = 0.5 + (x - 0.5) * m). The classifier
trains on x'; the policy is trained by REINFORCE with the classifier's cross-entropy as the
(cooperative) cost, so masks that keep the loss low become more likely. The result is the
"heated" classifier; stage 2 (``TrainConfig.finetune_epochs``, default 10 for this method)
fine-tunes it without the policy, and inference never uses the policy.

As in the authors' code, the per-image log-parameters are blended with global ones,
``log a = 0.9 g_a + 0.1 f_a(x)``, the global ``g`` an EMA (0.99) of the batch mean of ``f(x)``,
initialised uniform in [0, 1); validation (stage-1 model selection) noises images with a mask
sampled from the global Beta only (fixed seed, so every epoch sees the same masks).

Objective (``objective``):
- 'paper' (default, REINFORCE as the paper describes it): classifier loss CE(M(x'), y);
  policy loss mean_i(log pi(m_i | x_i) * (R_i - b)) with R the detached cross-entropy,
  log pi averaged over the grid cells (the joint log-probability / G^2: same direction, a step
  size that does not grow with the grid). ``reward``: 'batch' (authors: one R per batch) |
  'sample' (R_i per image); ``baseline``: 'none' (authors) | 'ema' (b = EMA of R, decay
  ``baseline_decay``: variance reduction the authors did not use).
- 'code' (the authors' train_one_epoch): one loss for both networks,
  mean_i(logsumexp_cells(log pi(m_i | x_i))) * CE(M(x'), y), the cross-entropy *not* detached,
  so the classifier's gradient is scaled by the log-sum-exp.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from ..config import PosFloat, PosInt, Prob, Range
from ..device import autocast, fixed_rng
from .base import Method, load_policy_state, policy_state, register
from .classical import Stacked, stacked_on

EPS = 1e-4  # samples are clamped into [EPS, 1 - EPS] so log-probabilities stay finite
VAL_SEED = 1234  # the validation masks' seed


class BetaPolicy(nn.Module):
    """Image float [B, C, H, W] (network input, the classifier's C) -> per-image log Beta parameters [B, 2, G, G].

    Three stride-2 conv blocks (``width`` channels) and a 1 x 1 head at 1/8 of the image,
    bilinearly resized to the G x G grid: ~4k parameters at width 16, a few percent of the
    tiny classifier's compute and far less of a ResNet's.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, grid: int = 64):
        super().__init__()
        layers, c = [], in_channels
        for w in (width // 2, width, width):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 2, 1)
        nn.init.zeros_(self.head.weight)  # start from the global parameters alone
        nn.init.zeros_(self.head.bias)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return F.interpolate(out, size=(self.grid, self.grid), mode="bilinear", align_corners=False)


def mask_geometry(grid: int, kernel: int, sigma: float, size: int, scale: bool) -> tuple[int, int, float]:
    """(grid, odd blur kernel, blur sigma) for ``size``-pixel images; the authors' values are for 224 px.

    Scaled by size / 224 so the noise has the same structure relative to the image at any size
    (at 64 px: grid 18, kernel 5, sigma 1.71); the grid never exceeds the image.
    """
    if scale:
        r = size / 224
        grid, sigma = max(1, round(grid * r)), sigma * r
        kernel = max(3, 2 * (round(kernel * r) // 2) + 1)
    return min(grid, size), kernel, sigma


def reinforce_loss(log_prob: torch.Tensor, cost: torch.Tensor, baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """REINFORCE for minimising ``cost``: mean_i(log_prob_i * (cost_i - baseline)).

    log_prob [B] (differentiable), cost [B] or scalar (detached). Descending this loss makes
    actions whose cost is below the baseline more likely and those above less likely.
    """
    return (log_prob * (cost.detach() - baseline)).mean()


@register
class PGNM(Method):
    name = "pgnm"
    finetune_epochs = 10  # stage 2 (the heated model fine-tuned without the policy), METHODS.md; budget paper
    finetune_fraction = 2 / 3  # budget equal: stage 2 takes 2/3 of the epochs at the run's lr (docs/pgnm.md, measured)
    builds_on = staticmethod(stacked_on)  # classical = true: stage 2 is a classical stage, not a plain one

    @dataclasses.dataclass
    class Options:
        grid: PosInt = 64  #: Beta parameters on a grid x grid lattice at 224 px (authors 64)
        kernel: PosInt = 13  #: Gaussian blur kernel (odd) at 224 px, authors 13
        sigma: PosFloat = 6.0  #: Gaussian blur sigma in pixels at 224 px, authors 6
        scale_to_image: bool = True  #: scale grid, kernel and sigma by image size / 224 (False: use as given)
        blend: Prob = 0.9  #: weight of the global parameters (authors 0.9)
        global_decay: Annotated[float, Range(ge=0, lt=1)] = 0.99  #: EMA decay of the global parameters (authors 0.99)
        objective: Literal["paper", "code"] = "paper"  #: see the module docstring
        reward: Literal["batch", "sample"] = "batch"  #: batch (authors) | sample
        baseline: Literal["none", "ema"] = "none"  #: none (authors) | ema
        baseline_decay: Annotated[float, Range(ge=0, lt=1)] = 0.9  #: decay of the reward's EMA baseline (baseline=ema)
        val_noise: Literal["global", "none"] = "global"  #: global (authors: validation images noised from the global Beta) | none
        policy_width: PosInt = 16
        policy_optimizer: Literal["sgd", "adam"] = "sgd"  #: sgd (authors, momentum 0.9) | adam
        policy_lr: PosFloat = 0.01  #: authors 0.01, cosine decay over the epochs
        classical: bool = False  #: stacked on classical augmentation: each image is first replaced by its classical augmentation with probability classical_p, and the fine-tuning stage trains as `classical`
        classical_p: Prob = 0.5  #: with classical = true: probability per image of the classical augmentation (heated stage)

        def __post_init__(self):
            if self.kernel % 2 == 0:
                raise ValueError(f"kernel={self.kernel}: an odd number >= 1")

    def setup(self, ctx) -> None:
        o = self.opts
        self.grid, self.kernel, self.sigma = mask_geometry(o.grid, o.kernel, o.sigma, ctx.cfg.size, o.scale_to_image)
        self.policy = ctx.place(BetaPolicy(ctx.in_channels, o.policy_width, self.grid))
        params = self.policy.parameters()
        self.policy_opt = (torch.optim.SGD(params, lr=o.policy_lr, momentum=0.9) if o.policy_optimizer == "sgd"
                           else torch.optim.Adam(params, lr=o.policy_lr))
        self.policy_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.policy_opt, T_max=ctx.cfg.epochs)
        gen = torch.Generator().manual_seed(ctx.cfg.seed)
        self.global_log = torch.rand(1, 2, self.grid, self.grid, generator=gen).to(ctx.device)  # authors: U[0, 1)
        self.cost_ema = torch.zeros((), device=ctx.device)
        self.cost_seen = torch.zeros((), device=ctx.device)
        self.stacked = Stacked(ctx, o.classical_p) if o.classical else None

    # ------------------------------------------------------------------------------------------
    def log_params(self, ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(blended log parameters [B, 2, G, G], per-image head output [B, 2, G, G]) for images in [0, 1]."""
        with autocast(ctx.device, ctx.cfg.precision):
            own = self.policy(ctx.normalize(x)).float()
        return self.opts.blend * self.global_log + (1 - self.opts.blend) * own, own

    @staticmethod
    def beta(log_params: torch.Tensor) -> torch.distributions.Beta:
        p = log_params.clamp(-10, 10).exp()  # exp() as in the authors' code; clamped against overflow
        return torch.distributions.Beta(p[:, :1], p[:, 1:])

    def noise_image(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Grid mask m [B, 1, G, G] -> noised images [B, C, H, W] (one mask over all channels of x [B, C, H, W]):
        upsample, blur, multiply the normalised image."""
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m, size=x.shape[-2:], mode="nearest")
        return 0.5 + (x - 0.5) * self.blur(m)

    def blur(self, m: torch.Tensor) -> torch.Tensor:
        """Gaussian blur [B, 1, H, W] (replicate border): two 1-D convolutions with a cached kornia kernel."""
        k = self.kernel
        g = getattr(self, "_gauss", None)
        if g is None or g.device != m.device or g.dtype != m.dtype:
            g = self._gauss = kornia.filters.get_gaussian_kernel1d(k, self.sigma).to(m).view(1, 1, 1, k)
        m = F.pad(m, (k // 2,) * 4, mode="replicate")
        return F.conv2d(F.conv2d(m, g), g.transpose(-1, -2))

    def train_step(self, ctx, x, y):
        o = self.opts
        if self.stacked is not None:
            x = self.stacked(x)
        self.policy.train()
        blended, own = self.log_params(ctx, x)
        dist = self.beta(blended)
        m = dist.sample().clamp(EPS, 1 - EPS)
        log_prob = dist.log_prob(m).flatten(1)  # [B, G*G]
        logits = ctx.logits(self.noise_image(x, m))
        ce = ctx.loss(logits, y, reduction="none")  # [B]
        if o.objective == "code":
            loss = torch.logsumexp(log_prob, 1).mean() * ce.mean()
            logs = {"loss": ce.mean().detach(), "policy_loss": loss.detach()}
        else:
            cost = ce.detach() if o.reward == "sample" else ce.detach().mean()
            base = 0.0
            if o.baseline == "ema":  # mean over processes so every rank uses the same baseline
                base = torch.where(self.cost_seen > 0, self.cost_ema, ctx.all_mean(cost.mean()))
                self.cost_ema = o.baseline_decay * base + (1 - o.baseline_decay) * ctx.all_mean(cost.mean())
                self.cost_seen = self.cost_seen + 1
            policy_loss = reinforce_loss(log_prob.mean(1), cost, base)
            loss = ce.mean() + policy_loss
            logs = {"loss": ce.mean().detach(), "policy_loss": policy_loss.detach()}
        ctx.step(loss, ctx.optimizer, self.policy_opt)  # one backward into both networks
        batch_mean = ctx.all_mean(own.detach().mean(0, keepdim=True))
        self.global_log = o.global_decay * self.global_log + (1 - o.global_decay) * batch_mean
        logs["mask_mean"] = m.detach().mean()
        return logs

    def epoch_end(self, ctx) -> None:
        self.policy_sched.step()

    def global_mask(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """A mask [B, 1, G, G] sampled from the global Beta only (fixed seed: the same every epoch)."""
        with fixed_rng(ctx.device, VAL_SEED):
            m = self.beta(self.global_log.expand(len(x), -1, -1, -1)).sample()
        return m.clamp(EPS, 1 - EPS)

    exportable_rule = False  # the rule samples Beta noise (seeded per call): not a fixed function of one image

    def test_time_rule(self) -> str:
        return ("val_noise=global: each image noised with a mask sampled from the global Beta (seeded)"
                if self.opts.val_noise != "none" else "")

    def predict(self, ctx, x):
        if self.opts.val_noise == "none":
            return ctx.logits(x)
        return ctx.logits(self.noise_image(x, self.global_mask(ctx, x)))

    def saliency(self, ctx, x):
        """Noise masks [B, 1, H, W] sampled (fixed seed) from each image's own Beta, upsampled and blurred."""
        self.policy.eval()
        with torch.no_grad(), fixed_rng(ctx.device, VAL_SEED):
            m = self.beta(self.log_params(ctx, x)[0]).sample().clamp(EPS, 1 - EPS)
        white = torch.ones_like(x[:, :1])  # noise_image(1, m) = 0.5 + 0.5 m; invert to get m at image size
        return (self.noise_image(white, m) - 0.5) * 2

    def state_dict(self) -> dict:
        stacked = self.stacked.state_dict() if self.stacked is not None else {}
        return policy_state(self.policy, self.policy_opt, policy_sched=self.policy_sched.state_dict(),
                            global_log=self.global_log, cost_ema=self.cost_ema, cost_seen=self.cost_seen, **stacked)

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        load_policy_state(self.policy, self.policy_opt, state)
        self.policy_sched.load_state_dict(state["policy_sched"])
        self.global_log = state["global_log"].to(self.global_log.device)
        self.cost_ema, self.cost_seen = state["cost_ema"].to(self.cost_ema.device), state["cost_seen"].to(self.cost_seen.device)
        if self.stacked is not None:
            self.stacked.load_state_dict(state)
