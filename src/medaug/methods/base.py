"""The method interface: what differs between augmentation methods, and nothing else.

The training loop (``medaug.train``) never branches on a method's name. A method owns how a
batch becomes training inputs, any extra network (policy, segmenter) with its optimizer, and its
own losses. Images reach a method as float [B, C, H, W] in [0, 1] on the training device, C = 1
(gray) or 3 (colour) as the data has it (``ctx.channels``; ``ctx.normalize`` maps them to the
classifier's ``in_channels``); masks are [B, 1, H, W] and broadcast over the channels; labels are
int64 [B]. ``ctx`` (:class:`medaug.context.Context`) gives the classifier, its optimizer step, the
loss, the device and the config. A method never branches on C: networks of its own that see the
image take ``ctx.channels`` input channels.

Options are a dataclass per method (``Options``), filled from TOML/CLI with unknown keys rejected.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..device import unwrap
from ..config import options_from
from ..registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from ..context import Context


#: Log key of the fraction of pixels a learned mask keeps in the images the classifier trains on
#: (mean over the batch). The training loop watches it for collapse (all-empty or all-full masks).
KEPT_FRACTION = "kept_fraction"


class Method:
    """Base class: plain supervised training, no augmentation."""

    name: ClassVar[str] = "base"
    #: Two-stage methods start from the best checkpoint of a trained baseline run (``builds_on``: ``none``).
    needs_baseline: ClassVar[bool] = False
    #: Default epochs of stage 2 (the classifier fine-tuned without the method) when the config says -1.
    finetune_epochs: ClassVar[int] = 0
    #: under budget equal with finetune_epochs -1: the fine-tuning stage's share of the budget (0 = the fixed count)
    finetune_fraction: ClassVar[float] = 0.0
    #: A baseline two-stage methods can start from (``none``; ``classical`` for methods stacked on it): under
    #: ``budget = "equal"`` its runs also save ``branch.pt``, the best checkpoint of their first ``baseline_epochs``
    #: epochs (``medaug.train``).
    is_baseline: ClassVar[bool] = False
    #: The values of the option ``preset``, each filling in the options left unset ('' or None); () = no presets.
    presets: ClassVar[tuple[str, ...]] = ()

    @dataclasses.dataclass
    class Options:
        pass

    @classmethod
    def builds_on(cls, options: dict | None) -> str:
        """The one-stage method under this one with ``options``: the run a two-stage method starts from, and the
        method of its own fine-tuning stage (pgnm's stage 2). ``none``, or ``classical`` for a method stacked on
        classical augmentation (apga and pgnm with ``classical = true``)."""
        return "none"

    def __init__(self, **options: Any):
        self.opts = options_from(self.Options, options, f"method {self.name!r} (-o / [methods.{self.name}])", noun="option")

    def setup(self, ctx: "Context") -> None:
        """Build extra networks and optimizers (called once, before resuming)."""

    def train_step(self, ctx: "Context", x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """All updates for one batch. x float [B, C, H, W] in [0, 1]; y int64 [B]. Returns detached logs."""
        loss = ctx.loss(ctx.logits(x), y)
        ctx.step(loss)
        return {"loss": loss.detach()}

    def epoch_end(self, ctx: "Context") -> None:
        """Called after every training epoch (learning-rate schedules of the method's own networks)."""

    def predict(self, ctx: "Context", x: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] at evaluation time (test-time augmentation lives here)."""
        return ctx.logits(x)

    def test_time_rule(self) -> str:
        """What :meth:`predict` does beyond the classifier's logits, in words ('' = nothing: the plain classifier).
        ``medaug predict`` and ``medaug export`` use it to say what they apply."""
        return ""

    #: Whether :meth:`predict` with its test-time rule is a fixed function of the image that ``medaug export``
    #: can trace (False: the export is the plain classifier, and says so).
    exportable_rule: ClassVar[bool] = True

    def setup_predict(self, ctx: "Context") -> None:
        """Build what :meth:`predict` needs before :meth:`load_state_dict` (a trained run's best.pt) fills it in;
        called only when :meth:`test_time_rule` is not ''. Default: :meth:`setup`."""
        self.setup(ctx)

    def masks(self, ctx: "Context", x: torch.Tensor) -> torch.Tensor | None:
        """Keep-masks float {0, 1} [B, 1, H, W] (1 = pixel kept / judged useful), or None."""
        return None

    def saliency(self, ctx: "Context", x: torch.Tensor) -> torch.Tensor | None:
        """Soft importance maps float [B, 1, H, W] (higher = more useful) behind the masks, or None."""
        return None

    def state_dict(self) -> dict:
        """Extra state to checkpoint (policy weights, optimizers, baselines)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


METHODS: Registry[Method] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: register a Method subclass under ``cls.name``."""
    METHODS.register(cls.name)(cls)
    return cls


def create_method(name: str, options: dict | None = None) -> Method:
    return METHODS.create(name, **(options or {}))


def resolved_options(name: str, options: dict) -> dict:
    """Every option of method ``name`` as it would run with ``options`` (defaults and presets filled in)."""
    return dataclasses.asdict(create_method(name, options).opts)


def policy_state(policy: "nn.Module", optimizer: torch.optim.Optimizer, **extra: Any) -> dict:
    """A method's checkpoint of its policy network: the bare network's weights (DDP unwrapped) under
    ``'policy'``, its optimizer's under ``'policy_opt'``, and ``extra`` (schedules, baselines, EMAs)."""
    return {"policy": unwrap(policy).state_dict(), "policy_opt": optimizer.state_dict(), **extra}


def load_policy_state(policy: "nn.Module", optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of :func:`policy_state` for the network and its optimizer (the method restores ``extra``)."""
    unwrap(policy).load_state_dict(state["policy"])
    optimizer.load_state_dict(state["policy_opt"])


def concat_step(ctx: "Context", x: torch.Tensor, y: torch.Tensor, x_aug: torch.Tensor,
                targets_aug: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One classifier update on originals and augmented copies together (the 1:1 mix).

    x, x_aug float [B, C, H, W]; y int64 [B]. The mean loss over the 2B images equals the average
    of the two halves' losses, so this is the paper's 1:1 ratio in one forward/backward.
    ``targets_aug``: soft targets float [B, K] of the augmented half (mixup, cutmix; rows sum to 1),
    else its labels are ``y``; cross-entropy with a soft target t is -sum_k t_k log p_k.
    """
    logits = ctx.logits(torch.cat([x, x_aug]))
    if targets_aug is None:
        loss = ctx.loss(logits, torch.cat([y, y]))
    else:
        onehot = torch.nn.functional.one_hot(y, ctx.num_classes).to(targets_aug.dtype)
        loss = ctx.loss(logits, torch.cat([onehot, targets_aug]))
    ctx.step(loss)
    return {"loss": loss.detach()}
