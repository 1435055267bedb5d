"""Augmentation methods, one file each, behind the interface in ``base.py``.

Importing this package registers every method in ``METHODS``.
"""

from .base import METHODS, Method, create_method, resolved_options  # noqa: F401
from . import apga, autoaugment, classical, cutout, end2end, generative, gradcam, mix, none, pgnm  # noqa: F401,E401  (registration)
