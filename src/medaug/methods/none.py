"""``none``: the baseline, plain supervised training on the original images."""

from .base import Method, register


@register
class NoAugmentation(Method):
    name = "none"
    is_baseline = True
