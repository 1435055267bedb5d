"""Class-conditional diffusion on MONAI's ``DiffusionModelUNet``: DDPM training, DDIM sampling with
classifier-free guidance.

- Network: ``monai.networks.nets.DiffusionModelUNet`` with ``num_class_embeds = K + 1``; index K
  is the *null* class used for the unconditional branch.
- Training (Ho et al. 2020, "simple" loss): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
  (``DDPMScheduler.add_noise``), ``L = || eps - eps_theta(x_t, t, c) ||^2``; with probability
  ``p_uncond`` the label is replaced by the null class (label dropout, Ho & Salimans 2022).
- Sampling: DDIM (Song et al. 2021, eq. 12; ``DDIMScheduler``) with classifier-free guidance
  ``eps = eps_theta(x_t, t, null) + w (eps_theta(x_t, t, c) - eps_theta(x_t, t, null))``,
  both branches in one batched forward (one forward when w = 1). Default eta = 1: every step
  adds fresh noise of the DDPM posterior's variance, which washes out the errors of a network
  trained for a CPU budget; the deterministic ODE path (eta = 0) carries them to the end, and
  after 1000 steps on PneumoniaMNIST about half its samples stay noise-textured. The initial
  noise comes from a CPU ``torch.Generator`` seeded with ``seed`` (the step noise from one seeded
  on the device), so a seed gives the same images on a device.
- The sampled network is an EMA of the trained one (same ramp-up as the GAN's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F

from ..config import NonNegFloat, PosFloat, PosInt, Prob, Range
from .gan import ema_beta, ema_update


class Diffusion:
    """DiffusionModelUNet + optimiser + schedulers; images in and out as float [-1, 1] / [0, 1]."""

    default_steps = 1000  #: ``gen train``'s default --steps: about 6 minutes of one CPU thread at 32 px

    @dataclass
    class Options:
        channels: list[PosInt] = field(default_factory=lambda: [16, 32, 64])  #: UNet channels per level (0.18 GFLOP per 32-px image)
        attention_levels: list[bool] = field(default_factory=lambda: [False, False, False])  #: attention per level (the middle block always has it)
        num_res_blocks: PosInt = 1
        num_head_channels: PosInt = 32  #: channels per attention head (divides the channels of attention levels)
        norm_num_groups: PosInt = 8  #: GroupNorm groups (divides every level's channels)
        train_timesteps: Annotated[int, Range(ge=1, le=100_000)] = 1000  #: T of the noise schedule (DDPM: 1000)
        schedule: str = "cosine"  #: MONAI noise schedule (linear_beta | scaled_linear_beta | cosine)
        lr: PosFloat = 5e-4
        p_uncond: Annotated[float, Range(ge=0, lt=1)] = 0.1  #: label dropout probability (the null class trains the unconditional model)
        guidance: NonNegFloat = 3.0  #: classifier-free guidance weight w (1 = plain conditional, one forward per step)
        ddim_steps: PosInt = 25  #: DDIM sampling steps (at most train_timesteps)
        eta: Prob = 1.0  #: DDIM eta (0 = deterministic ODE; 1 = DDPM-like stochastic steps, which correct an undertrained network's errors)
        ema_kimg: PosFloat = 5.0
        balanced: bool = False  #: class-balanced training batches (the trainer's sampling; see generative/train.py)

        def __post_init__(self):
            if not self.channels or len(self.channels) != len(self.attention_levels):
                raise ValueError("channels and attention_levels need the same length, at least 1 (one per UNet level)")
            if self.ddim_steps > self.train_timesteps:
                raise ValueError(f"ddim_steps {self.ddim_steps} must be <= train_timesteps {self.train_timesteps}")

    def __init__(self, num_classes: int, size: int, batch_size: int, device: torch.device, options: dict | None = None,
                 channels: int = 1):
        from monai.networks.nets import DiffusionModelUNet
        from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

        o = self.opts = self.Options(**(options or {}))
        levels = len(o.channels)
        if size % 2 ** (levels - 1):
            from ..errors import MedaugError

            raise MedaugError(f"diffusion: --size {size} must be divisible by {2 ** (levels - 1)} for {levels} UNet levels")
        self.device, self.size, self.num_classes, self.null = device, size, num_classes, num_classes
        self.channels = channels  #: image channels in and out: 1 gray, 3 colour
        try:
            import einops  # noqa: F401  (MONAI's attention blocks, always used in the UNet's middle block, need it)
        except ImportError:
            from ..errors import MedaugError

            raise MedaugError("diffusion: MONAI's DiffusionModelUNet needs the einops package: pip install einops") from None
        self.net = DiffusionModelUNet(
            spatial_dims=2, in_channels=channels, out_channels=channels, channels=tuple(o.channels),
            attention_levels=tuple(o.attention_levels), num_res_blocks=o.num_res_blocks,
            num_head_channels=o.num_head_channels, norm_num_groups=o.norm_num_groups, num_class_embeds=num_classes + 1,
        ).to(device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, weight_decay=0.0)
        self.ddpm = DDPMScheduler(num_train_timesteps=o.train_timesteps, schedule=o.schedule)
        self.ddim = DDIMScheduler(num_train_timesteps=o.train_timesteps, schedule=o.schedule, clip_sample=True)
        self.nimg, self.steps, self.batch_size = 0, 0, batch_size

    def train_step(self, x0: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """One DDPM step on x0 float [B, C, S, S] in [-1, 1], labels int64 [B]."""
        self.net.train()
        B = x0.shape[0]
        t = torch.randint(0, self.opts.train_timesteps, (B,), device=self.device)
        noise = torch.randn_like(x0)
        xt = self.ddpm.add_noise(x0, noise, t)  # q(x_t | x_0)
        drop = torch.rand(B, device=self.device) < self.opts.p_uncond
        c_in = torch.where(drop, torch.full_like(c, self.null), c)  # label dropout -> null class
        loss = F.mse_loss(self.net(xt, t, class_labels=c_in), noise)  # L_simple
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.nimg += B
        self.steps += 1
        ema_update(self.ema, self.net, ema_beta(B, self.nimg, self.opts.ema_kimg))
        return {"loss": loss.detach()}

    def status(self) -> str:
        return f"cfg w {self.opts.guidance:g}"

    def extra_logs(self) -> dict:
        return {}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, seed: int, batch: int = 64, guidance: float | None = None,
               steps: int | None = None) -> torch.Tensor:
        """DDIM + classifier-free guidance: images float [N, C, S, S] in [0, 1] for labels int64 [N]."""
        w = self.opts.guidance if guidance is None else guidance
        gen = torch.Generator().manual_seed(seed)
        x_all = torch.randn(len(labels), self.channels, self.size, self.size, generator=gen)
        out = []
        for i in range(0, len(labels), batch):
            x = x_all[i : i + batch].to(self.device)
            c = labels[i : i + batch].to(self.device)
            guided = w != 1
            c2 = torch.cat([c, torch.full_like(c, self.null)]) if guided else c
            self.ddim.set_timesteps(steps or self.opts.ddim_steps, device=self.device)
            step_gen = torch.Generator(device=self.device).manual_seed(seed + 1 + i) if self.opts.eta > 0 else None
            for t in self.ddim.timesteps:
                tt = torch.full((len(c2),), int(t), device=self.device, dtype=torch.long)
                if guided:
                    eps_c, eps_u = self.ema(torch.cat([x, x]), tt, class_labels=c2).chunk(2)
                    eps = eps_u + w * (eps_c - eps_u)  # classifier-free guidance
                else:
                    eps = self.ema(x, tt, class_labels=c2)
                x, _ = self.ddim.step(eps, int(t), x, eta=self.opts.eta, generator=step_gen)
            out.append(((x + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.channels, self.size, self.size)

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "nimg": self.nimg, "steps": self.steps}

    def load_state_dict(self, state: dict, inference_only: bool = False) -> None:
        self.ema.load_state_dict(state["ema"])
        if inference_only:
            return
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.nimg, self.steps = int(state["nimg"]), int(state["steps"])
