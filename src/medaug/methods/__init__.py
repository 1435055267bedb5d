"""Augmentation methods, one file each, behind the interface in ``base.py``.

Importing this package registers every method in ``METHODS``. ``create``, ``context`` and
``available`` (:mod:`medaug.methods.api`) use a method in one's own training loop (docs/api.md).
"""

from .base import METHODS, Method, create_method, resolved_options  # noqa: F401
from . import apga, autoaugment, classical, cutout, end2end, generative, gradcam, mix, none, pgnm  # noqa: F401,E401  (registration)
from .api import available, context, create  # noqa: F401,E402  (the public API, docs/api.md)
