"""``end2end``: segmenter and classifier trained jointly through the classification loss.

The paper's baseline: masks from the segmenter are discretised in the forward pass and the
classification loss is back-propagated through them (straight-through estimator:
m = 1[P > 0.5] + P - stop_grad(P)), with regularisers toward all-zeros and all-ones masks:

    L = CE(M_c([x ; m * x]), [y ; y]) + lambda_zeros BCE(P, 0) + lambda_ones BCE(P, 1)

Originals and masked images are mixed 1:1 in one update of both networks. The paper reports
this as unstable (collapsing to all-one or all-zero masks); it is here to reproduce that.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..config import NonNegFloat, NonNegInt, PosFloat, PosInt
from ..device import autocast
from ..models.policies import PixelPolicy, create_policy
from .base import KEPT_FRACTION, Method, load_policy_state, policy_state, register


@register
class EndToEnd(Method):
    name = "end2end"
    needs_baseline = True

    @dataclasses.dataclass
    class Options:
        lambda_zeros: NonNegFloat = 0.01  #: weight of BCE(P, 0)
        lambda_ones: NonNegFloat = 0.01  #: weight of BCE(P, 1)
        policy: str = "ternaus"
        policy_width: PosInt = 16
        policy_size: NonNegInt = 0  #: policy input side (0 = image side)
        policy_lr: PosFloat = 1e-4
        policy_weights: str = ""

    def setup(self, ctx) -> None:
        o = self.opts
        net = create_policy(o.policy, ctx.channels, o.policy_width, o.policy_weights)  # sees the image's C channels
        self.policy = ctx.place(PixelPolicy(net, o.policy_size, ctx.channels))
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=o.policy_lr)

    def soft_hard_mask(self, ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P at policy resolution, straight-through keep-mask [B, 1, H, W] at image resolution)."""
        with autocast(ctx.device, ctx.cfg.precision):
            p = self.policy(x)
        hard = (p > 0.5).float()
        m = hard + p - p.detach()  # forward: hard mask; backward: identity into P
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m, size=x.shape[-2:], mode="nearest")
        return p, m

    def train_step(self, ctx, x, y):
        o = self.opts
        self.policy.train()
        p, m = self.soft_hard_mask(ctx, x)
        ce = ctx.loss(ctx.logits(torch.cat([x, m * x])), torch.cat([y, y]))
        pc = p.clamp(1e-6, 1 - 1e-6)
        reg = o.lambda_zeros * F.binary_cross_entropy(pc, torch.zeros_like(pc)) + o.lambda_ones * F.binary_cross_entropy(pc, torch.ones_like(pc))
        ctx.step(ce + reg, ctx.optimizer, self.policy_opt)  # one backward into both networks
        return {"loss": ce.detach(), "mask_reg": reg.detach(), KEPT_FRACTION: (p.detach() > 0.5).float().mean()}

    def masks(self, ctx, x):
        self.policy.eval()
        with torch.no_grad():
            return self.soft_hard_mask(ctx, x)[1]

    def saliency(self, ctx, x):
        self.policy.eval()
        with torch.no_grad():
            p = self.soft_hard_mask(ctx, x)[0]
        return F.interpolate(p, size=x.shape[-2:], mode="nearest")

    def state_dict(self) -> dict:
        return policy_state(self.policy, self.policy_opt)

    def load_state_dict(self, state: dict) -> None:
        if state:
            load_policy_state(self.policy, self.policy_opt, state)
