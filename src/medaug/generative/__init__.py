"""Generative augmentation: class-conditional GAN and diffusion models, their quality metrics, and
the dataset-size study. ``medaug gen ...`` and ``medaug study size`` are in ``commands.py``.

The models share one small interface (``train_step(x, c) -> logs``, ``sample(labels, seed)``,
``state_dict``/``load_state_dict``, ``status()``), so ``train.py`` is one trainer for both.
"""

from __future__ import annotations

MODELS = {"gan": "medaug.generative.gan:GAN", "diffusion": "medaug.generative.diffusion:Diffusion"}


def model_class(name: str):
    """The model class behind ``--model NAME`` (imported lazily: MONAI only when diffusion is used)."""
    import importlib

    from ..errors import MedaugError

    if name not in MODELS:
        raise MedaugError(f"--model {name!r}: choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)
