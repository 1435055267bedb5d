"""Class-conditional StyleGAN2-style GAN with adaptive discriminator augmentation, for 1-channel images.

Written from scratch in plain PyTorch (CPU and CUDA; no custom CUDA ops), after
Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2) and
Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (ADA).

Generator ``G(z, c)``:
    mapping   w = MLP([norm(z); norm(embed(c))])            (2nd-moment normalised, lr_mul 0.01)
    synthesis const 4x4 -> [up, modconv 3x3, modconv 3x3] per octave -> size, skip connections
              through 1x1 "toGray" layers (StyleGAN2 config E/F "skip" generator)
    modconv   w'_ijk = s_i * w_ijk;  w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)   (StyleGAN2 eq. 1, 3)
    noise     per-pixel Gaussian noise with a learned per-layer strength
Discriminator ``D(x, c)`` (StyleGAN2 "resnet" D): fromGray 1x1, residual blocks with average-pool
    downsampling, minibatch standard deviation at 4x4, and projection conditioning
    (Miyato & Koyama 2018): ``D(x, c) = <phi(x), embed(c)> / sqrt(cmap_dim)``.
Every weight uses the equalised learning rate (He-scaled at run time, N(0, 1) storage).

Losses (StyleGAN2-ADA ``loss.py``): non-saturating logistic, ``L_G = softplus(-D(G(z)))``,
``L_D = softplus(D(G(z))) + softplus(-D(x)) + (gamma/2) ||grad_x D(x)||^2`` with lazy R1
(every ``r1_every`` steps, scaled by ``r1_every``).

ADA (Karras et al. 2020, sec. 2-3): every augmentation is applied to reals *and* fakes, each with
probability p, and p is steered by the overfitting heuristic ``r_t = E[sign(D_train)]``: every
``ada_interval`` steps, ``p += sign(r_t - target) * (images seen) / (ada_kimg * 1000)``.
The pipeline ("bgc": blit, geometric, color) composes one 3x3 matrix per image (x-flip,
90-degree rotations, integer translation, isotropic scale, rotation, anisotropic scale,
fractional translation), warps once with ``grid_sample`` (reflection padding; differentiable,
the same op kornia's warps use), then brightness and contrast. ``augment="diffaugment"``
uses DiffAugment (Zhao et al. 2020: translation, cutout, brightness, contrast, always on) instead.

G's weights are averaged (EMA, half-life ``ema_kimg`` thousand images with StyleGAN2-ADA's ramp-up);
samples come from the EMA generator.

Labels on unbalanced data (presets; ``preset="paper"`` is StyleGAN2-ADA's paper and code):
- ``balanced`` (default True; paper: False): the trainer draws class-balanced batches, so G and D
  see every class equally often; in the paper's code G's labels follow the data's class frequencies,
  and a minority class gets that share of the updates (on PneumoniaMNIST, 26% normal: after 500
  steps its per-class FID was 15.4 against 0.33 for pneumonia).
- truncation ``w' = center + psi (w - center)`` toward ``truncation_center``: ``class``, each class's
  mean w (the mapping of 4,096 fixed latents per class; class-conditional truncation as in
  StyleGAN-XL, Sauer et al. 2022), or ``global``, the running w_avg of the authors' code, tracked
  over the training batches' class mix (with unbalanced labels near the majority's mean): toward
  it every class drifts to one point and the label washes out. Defaults: balanced, psi 1 (off), class.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import NonNegInt, PosFloat, PosInt, Prob, Range

SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------
# equalised-learning-rate layers


class EqLinear(nn.Module):
    """y = x W^T * (lr_mul / sqrt(fan_in)) + b * lr_mul; optional leaky ReLU with gain sqrt(2)."""

    def __init__(self, cin: int, cout: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul)) if bias else None
        self.wgain, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.wgain, None if self.bias is None else self.bias * self.lr_mul)
        return F.leaky_relu(y, 0.2) * SQRT2 if self.act else y


class EqConv2d(nn.Module):
    """Equalised-lr conv (stride 1, same padding); ``down``: 2x average pool after the conv."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True, act: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.wgain, self.act, self.down, self.pad = 1 / math.sqrt(cin * k * k), act, down, k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.wgain, self.bias, padding=self.pad)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.act else x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------
# generator


class MappingNetwork(nn.Module):
    """(z [B, z_dim], c int64 [B]) -> w [B, w_dim]; tracks the running mean of w for truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int = 2, lr_mul: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.embed = EqLinear(num_classes, w_dim)
        dims = [z_dim + w_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqLinear(dims[i], dims[i + 1], lr_mul=lr_mul, act=True) for i in range(layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor, psi: float = 1.0, track: bool = False,
                centers: torch.Tensor | None = None) -> torch.Tensor:
        """Truncation ``w' = center + psi (w - center)``: center = the running w_avg over all classes, or
        with ``centers`` float [K, w_dim] each sample's own class centre (class-conditional truncation)."""
        y = normalize_2nd_moment(self.embed(F.one_hot(c, self.num_classes).to(z.dtype)))
        w = self.net(torch.cat([normalize_2nd_moment(z), y], dim=1))
        if track:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.995))
        if psi == 1:
            return w
        return (self.w_avg if centers is None else centers[c]).lerp(w, psi)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv with weight demodulation (StyleGAN2 eq. 1 and 3).

    x float [B, Cin, H, W], w [B, w_dim] -> [B, Cout, H', W'] (H' = 2H when ``up``: bilinear, then conv).
    """

    def __init__(self, cin: int, cout: int, k: int, w_dim: int, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.affine = EqLinear(w_dim, cin, bias_init=1.0)  # s_i, initialised to 1
        self.wgain, self.demodulate, self.up, self.pad = 1 / math.sqrt(cin * k * k), demodulate, up, k // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # StyleGAN2's non-fused form, equal to a per-sample conv with w'' but one shared conv:
        # conv(x * s, w) * d,  d_j = 1 / sqrt(sum_ik (s_i w_ijk)^2 + eps)
        s = self.affine(w)  # [B, Cin]
        weight = self.weight * self.wgain
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * s[:, :, None, None], weight, padding=self.pad)
        if self.demodulate:  # eq. 3
            d = (s.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [B, Cout]
            x = x * d[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """modconv -> + noise * strength -> + bias -> leaky ReLU * sqrt(2)."""

    def __init__(self, cin: int, cout: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class ToGray(nn.Module):
    """1x1 modulated conv without demodulation to the image's ``channels`` (StyleGAN2's tRGB; one channel for gray images)."""

    def __init__(self, cin: int, w_dim: int, channels: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    return max(8, min(channel_base // res, channel_max))


def check_size(size: int) -> None:
    if size < 8 or size & (size - 1):
        from ..errors import MedaugError

        raise MedaugError(f"gan: --size must be a power of two >= 8 (e.g. 32, 64, 128, 256); got {size}")


class Generator(nn.Module):
    """G(z [B, z_dim], c int64 [B]) -> images float [B, channels, size, size], roughly in [-1, 1]."""

    def __init__(self, num_classes: int, size: int, z_dim: int = 128, w_dim: int = 128, map_layers: int = 2,
                 channel_base: int = 2048, channel_max: int = 128, channels: int = 1):
        super().__init__()
        check_size(size)
        self.z_dim, self.size, self.num_classes = z_dim, size, num_classes
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, map_layers)
        ch = lambda r: channels_at(r, channel_base, channel_max)  # noqa: E731
        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        self.conv4 = SynthesisLayer(ch(4), ch(4), w_dim, 4)
        self.gray4 = ToGray(ch(4), w_dim, channels)  # "gray": the names of gray checkpoints, kept for colour too
        self.blocks = nn.ModuleList()
        res = 8
        while res <= size:
            self.blocks.append(nn.ModuleDict(dict(
                conv0=SynthesisLayer(ch(res // 2), ch(res), w_dim, res, up=True),
                conv1=SynthesisLayer(ch(res), ch(res), w_dim, res),
                gray=ToGray(ch(res), w_dim, channels),
            )))
            res *= 2

    def forward(self, z: torch.Tensor, c: torch.Tensor, psi: float = 1.0, noise_mode: str = "random",
                centers: torch.Tensor | None = None) -> torch.Tensor:
        w = self.mapping(z, c, psi=psi, track=self.training, centers=centers)
        x = self.conv4(self.const[None].expand(z.shape[0], -1, -1, -1), w, noise_mode)
        img = self.gray4(x, w)
        for blk in self.blocks:  # "skip" architecture: upsampled image + this octave's toGray
            x = blk["conv1"](blk["conv0"](x, w, noise_mode), w, noise_mode)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + blk["gray"](x, w)
        return img


# ----------------------------------------------------------------------------------------------
# discriminator


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean (over features) std over groups of images as one extra channel (ProGAN/StyleGAN2)."""
    B, C, H, W = x.shape
    G = max(g for g in range(1, min(group, B) + 1) if B % g == 0)
    y = x.reshape(G, -1, C, H, W)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/G]
    y = y.reshape(-1, 1, 1, 1).repeat(G, 1, H, W)
    return torch.cat([x, y], dim=1)


class DBlock(nn.Module):
    """Residual D block: conv 3x3, conv 3x3 + 2x pool, 1x1 pooled skip; sum scaled by sqrt(1/2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqConv2d(cin, cin, 3)
        self.conv1 = EqConv2d(cin, cout, 3, down=True)
        self.skip = EqConv2d(cin, cout, 1, bias=False, act=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """D(x float [B, channels, S, S], c int64 [B]) -> logits float [B] (projection conditioning)."""

    def __init__(self, num_classes: int, size: int, channel_base: int = 2048, channel_max: int = 128, cmap_dim: int = 128,
                 channels: int = 1):
        super().__init__()
        check_size(size)
        ch = lambda r: channels_at(r, channel_base, channel_max)  # noqa: E731
        self.num_classes, self.cmap_dim = num_classes, cmap_dim
        self.from_gray = EqConv2d(channels, ch(size), 1)
        blocks, res = [], size
        while res > 4:
            blocks.append(DBlock(ch(res), ch(res // 2)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        self.conv = EqConv2d(ch(4) + 1, ch(4), 3)
        self.fc = EqLinear(ch(4) * 16, ch(4), act=True)
        self.out = EqLinear(ch(4), cmap_dim)
        self.embed = EqLinear(num_classes, cmap_dim)  # the class's projection vector

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_gray(x))
        x = self.conv(minibatch_std(x))
        phi = self.out(self.fc(x.flatten(1)))
        cmap = self.embed(F.one_hot(c, self.num_classes).to(phi.dtype))
        return (phi * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)


# ----------------------------------------------------------------------------------------------
# augmentation: ADA pipeline, its controller, and DiffAugment


def _mats(B: int, device) -> torch.Tensor:
    return torch.eye(3, device=device).repeat(B, 1, 1)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _mats(len(tx), tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _mats(len(sx), sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    m = _mats(len(theta), theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def ada_augment(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """StyleGAN2-ADA's "bgc" pipeline on images float [B, C, H, W] in [-1, 1]; differentiable in x.

    Each transform is applied per image with probability p (the two rotations with
    1 - sqrt(1 - p) each); geometric ones compose one matrix in normalised coordinates and warp
    once with reflection padding. At p = 0 the input is returned unchanged.
    """
    if p <= 0:
        return x
    B, dev = x.shape[0], x.device
    g = dict(generator=generator, device=dev)

    def on(prob: float = p) -> torch.Tensor:
        return (torch.rand(B, **g) < prob).float()

    M = _mats(B, dev)
    i = torch.floor(torch.rand(B, **g) * 2) * on()  # x-flip
    M = M @ _scale(1 - 2 * i, torch.ones_like(i))
    i = torch.floor(torch.rand(B, **g) * 4) * on()  # 90-degree rotations
    M = M @ _rotate(-math.pi / 2 * i)
    W = x.shape[-1]
    t = torch.round((torch.rand(B, 2, **g) * 2 - 1) * 0.125 * W) * 2 / W * on()[:, None]  # integer translation
    M = M @ _translate(t[:, 0], t[:, 1])
    s = torch.exp2(torch.randn(B, **g) * 0.2 * on())  # isotropic scale
    M = M @ _scale(s, s)
    p_rot = 1 - math.sqrt(max(0.0, 1 - p))
    M = M @ _rotate((torch.rand(B, **g) * 2 - 1) * math.pi * on(p_rot))  # pre-rotation
    s = torch.exp2(torch.randn(B, **g) * 0.2 * on())  # anisotropic scale
    M = M @ _scale(s, 1 / s)
    M = M @ _rotate((torch.rand(B, **g) * 2 - 1) * math.pi * on(p_rot))  # post-rotation
    t = torch.randn(B, 2, **g) * 0.125 * 2 * on()[:, None]  # fractional translation (std 1/8 of the side)
    M = M @ _translate(t[:, 0], t[:, 1])
    grid = F.affine_grid(M[:, :2].to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = x + (torch.randn(B, 1, 1, 1, **g) * 0.2 * on()[:, None, None, None]).to(x.dtype)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = torch.exp2(torch.randn(B, 1, 1, 1, **g) * 0.5 * on()[:, None, None, None]).to(x.dtype)  # contrast
    return (x - mean) * c + mean


def diff_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment "color,translation,cutout" (Zhao et al. 2020) for images float [B, C, H, W] in [-1, 1]; the
    colour part is brightness and contrast (no saturation: it is the identity on gray images)."""
    B, _, H, W = x.shape
    g = dict(generator=generator, device=x.device)
    x = x + (torch.rand(B, 1, 1, 1, **g) - 0.5)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (torch.rand(B, 1, 1, 1, **g) + 0.5) + mean  # contrast
    shift = (torch.randint(-(H // 8), H // 8 + 1, (B, 2), **g).float() * 2 / H)  # translation, 1/8 of the side
    grid = F.affine_grid(_translate(shift[:, 0], shift[:, 1])[:, :2].to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    cy, cx = (torch.randint(0, H, (B,), **g), torch.randint(0, W, (B,), **g))  # cutout, half the side
    yy, xx = torch.arange(H, device=x.device)[None, :, None], torch.arange(W, device=x.device)[None, None, :]
    keep = ((yy - cy[:, None, None]).abs() >= H // 4) | ((xx - cx[:, None, None]).abs() >= W // 4)
    return x * keep[:, None].to(x.dtype)


class AdaController:
    """The ADA overfitting heuristic: r_t = E[sign(D(real))]; p moves toward keeping r_t at ``target``.

    Call :meth:`accumulate` with D's logits on (augmented) reals after every D step; every
    ``interval`` calls to :meth:`step`, p += sign(r_t - target) * n_images / (kimg * 1000), clamped to [0, 1].
    """

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 10.0, p: float = 0.0):
        self.target, self.interval, self.kimg, self.p = target, interval, kimg, p
        self.rt = float("nan")
        self._sum, self._n, self._steps = 0.0, 0, 0

    def accumulate(self, real_logits: torch.Tensor) -> None:
        self._sum = self._sum + torch.sign(real_logits.detach()).sum()  # stays on the device until step
        self._n += real_logits.numel()

    def step(self) -> None:
        self._steps += 1
        if self._steps % self.interval or not self._n:
            return
        self.rt = float(self._sum) / self._n  # one host sync per interval
        adjust = np.sign(self.rt - self.target) * self._n / (self.kimg * 1000)
        self.p = float(min(max(self.p + adjust, 0.0), 1.0))
        self._sum, self._n = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "rt": self.rt, "steps": self._steps, "sum": float(self._sum), "n": self._n}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.rt, self._steps = float(state["p"]), float(state["rt"]), int(state["steps"])
        self._sum, self._n = float(state.get("sum", 0.0)), int(state.get("n", 0))


# ----------------------------------------------------------------------------------------------
# the trainable model behind `medaug gen train --model gan`

#: option values each preset fills in (fields left unset); "paper": StyleGAN2-ADA's paper and code agree here
PRESETS = {
    "balanced": dict(balanced=True, truncation=1.0, truncation_center="class"),
    "paper": dict(balanced=False, truncation=1.0, truncation_center="global"),
}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1 - beta)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def ema_beta(batch: int, nimg: int, ema_kimg: float, rampup: float = 0.05) -> float:
    """StyleGAN2-ADA: half-life of ema_kimg thousand images, ramped up to cur_nimg * rampup early on."""
    ema_nimg = ema_kimg * 1000
    if rampup:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


class GAN:
    """Generator + discriminator + optimisers + ADA state; images in and out as float [-1, 1]."""

    default_steps = 500  #: ``gen train``'s default --steps: about 7 minutes on one CPU thread at 32 px

    @dataclass
    class Options:
        z_dim: PosInt = 128
        w_dim: PosInt = 128
        map_layers: PosInt = 2  #: mapping depth (StyleGAN2-ADA uses 2 for small data, 8 in StyleGAN2)
        channel_base: PosInt = 1024  #: channels at resolution r: min(channel_base / r, channel_max); small for CPU,
        channel_max: PosInt = 64  #: raise both on a GPU (StyleGAN2 at 256 px: 16384 and 512)
        lr: PosFloat = 0.0025
        beta1: Annotated[float, Range(ge=0, lt=1)] = 0.0
        beta2: Annotated[float, Range(ge=0, lt=1)] = 0.99
        r1_gamma: Annotated[float, Range(ge=0, also=(-1,))] = -1.0  #: R1 weight; -1 = StyleGAN2-ADA's heuristic 0.0002 * size^2 / batch
        r1_every: PosInt = 4  #: lazy R1 interval
        augment: str = "ada"  #: ada | diffaugment | none
        ada_target: Prob = 0.6  #: the r_t = E[sign(D(real))] that ADA steers p to keep
        ada_interval: NonNegInt = 4  #: steps between updates of p (0 = p fixed at ada_p)
        ada_kimg: PosFloat = 10.0  #: images (thousands) for p to move by 1 (the paper: 500, for runs of 10^4 kimg)
        ada_p: Prob = 0.0  #: initial / fixed (augment=ada with ada_interval=0 freezes it) probability
        ema_kimg: Annotated[float, Range(gt=0, also=(-1,))] = -1.0  #: G EMA half-life in kimg; -1 = batch * 10 / 32 (StyleGAN2-ADA)
        preset: str = "balanced"  #: "balanced" (default) | "paper" (StyleGAN2-ADA paper and code); fills the fields left unset below
        balanced: bool | None = None  #: class-balanced batches (the trainer draws each class equally often); paper: as in the data
        truncation: Prob | None = None  #: psi when sampling (1 = off, both presets; e.g. 0.8 for more typical images)
        truncation_center: str = ""  #: class (each class's mean w; StyleGAN-XL) | global (the running w_avg; StyleGAN2-ADA code)

        def __post_init__(self):
            if self.preset not in PRESETS:
                raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
            for key, value in PRESETS[self.preset].items():
                if getattr(self, key) in ("", None):
                    setattr(self, key, value)
            if self.augment not in ("ada", "diffaugment", "none"):
                raise ValueError(f"augment must be ada, diffaugment or none, not {self.augment!r}")
            if self.truncation_center not in ("class", "global"):
                raise ValueError(f"truncation_center must be class or global, not {self.truncation_center!r}")

    def __init__(self, num_classes: int, size: int, batch_size: int, device: torch.device, options: dict | None = None,
                 channels: int = 1):
        o = self.opts = self.Options(**(options or {}))
        self.device, self.batch_size, self.size, self.num_classes = device, batch_size, size, num_classes
        self.channels = channels  #: image channels in and out: 1 gray, 3 colour
        arch = dict(channel_base=o.channel_base, channel_max=o.channel_max, channels=channels)
        self.G = Generator(num_classes, size, o.z_dim, o.w_dim, o.map_layers, **arch).to(device)
        self.D = Discriminator(num_classes, size, **arch).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=1e-8)
        self.r1_gamma = o.r1_gamma if o.r1_gamma >= 0 else 0.0002 * size**2 / batch_size
        self.ema_kimg = o.ema_kimg if o.ema_kimg > 0 else batch_size * 10 / 32
        self.ada = AdaController(o.ada_target, max(o.ada_interval, 1), o.ada_kimg, o.ada_p)
        self.nimg = 0
        self.steps = 0

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.opts.augment == "ada":
            return ada_augment(x, self.ada.p)
        if self.opts.augment == "diffaugment":
            return diff_augment(x)
        return x

    def train_step(self, real: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """One G step and one D step on reals float [B, C, S, S] in [-1, 1], labels int64 [B]."""
        B = real.shape[0]
        # G: non-saturating loss softplus(-D(aug(G(z, c)), c)); the classes come from the data batch
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        z = torch.randn(B, self.opts.z_dim, device=self.device)
        loss_G = F.softplus(-self.D(self.augment(self.G(z, c)), c)).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()

        # D: softplus(D(fake)) + softplus(-D(real)) [+ lazy R1 on the reals, gradient w.r.t. the un-augmented image]
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(torch.randn(B, self.opts.z_dim, device=self.device), c)
        do_r1 = self.r1_gamma > 0 and self.steps % self.opts.r1_every == 0
        real_in = real.detach().requires_grad_(do_r1)
        d_fake = self.D(self.augment(fake), c)
        d_real = self.D(self.augment(real_in), c)
        loss_D = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        logs = {"loss_G": loss_G.detach(), "loss_D": loss_D.detach()}
        if do_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            loss_D = loss_D + r1 * (self.r1_gamma / 2) * self.opts.r1_every
            logs["r1"] = r1.detach()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()

        if self.opts.augment == "ada" and self.opts.ada_interval > 0:
            self.ada.accumulate(d_real)
            self.ada.step()
        self.nimg += B
        self.steps += 1
        ema_update(self.G_ema, self.G, ema_beta(B, self.nimg, self.ema_kimg))
        logs["d_real_sign"] = torch.sign(d_real.detach()).mean()
        return logs

    def status(self) -> str:
        return f"p {self.ada.p:.3f}" + (f" rt {self.ada.rt:.2f}" if math.isfinite(self.ada.rt) else "") if self.opts.augment == "ada" else self.opts.augment

    def extra_logs(self) -> dict:
        return {"ada_p": self.ada.p, "ada_rt": self.ada.rt} if self.opts.augment == "ada" else {}

    @torch.no_grad()
    def class_centers(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Each class's mean w under the EMA mapping, float [K, w_dim] (n latents per class, fixed seed)."""
        z = torch.randn(n, self.opts.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        m = self.G_ema.mapping
        return torch.stack([m(z, torch.full((n,), k, device=self.device)).mean(0) for k in range(self.num_classes)])

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, seed: int, batch: int = 64) -> torch.Tensor:
        """EMA-generator images float [N, C, S, S] in [0, 1] for int64 labels [N]; same seed, same images."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(len(labels), self.opts.z_dim, generator=gen)
        psi = self.opts.truncation
        centers = self.class_centers() if psi != 1 and self.opts.truncation_center == "class" else None
        out = []
        for i in range(0, len(labels), batch):
            x = self.G_ema(z[i : i + batch].to(self.device), labels[i : i + batch].to(self.device),
                           psi=psi, noise_mode="const", centers=centers)
            out.append(((x + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.channels, self.size, self.size)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "ada": self.ada.state_dict(),
                "nimg": self.nimg, "steps": self.steps}

    def load_state_dict(self, state: dict, inference_only: bool = False) -> None:
        self.G_ema.load_state_dict(state["G_ema"])
        if inference_only:
            return
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.ada.load_state_dict(state["ada"])
        self.nimg, self.steps = int(state["nimg"]), int(state["steps"])
