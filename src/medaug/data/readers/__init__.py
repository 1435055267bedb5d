"""Readers beyond MURA, one file each; importing this package registers them."""

from . import csvlist, imagefolder  # noqa: F401
from . import covid, hipcsv, medmnist, radimagenet  # noqa: F401
