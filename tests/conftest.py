"""Shared fixtures: a tiny synthetic dataset (written once per session) and an isolated cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MEDAUG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Binary synthetic radiographs in the MURA layout: 96 train / 48 test images at 32 px."""
    from medaug.data.synth import generate

    root = tmp_path_factory.mktemp("data") / "synth"
    generate(root, n_train=96, n_test=48, size=32, seed=0, progress=False)
    return root


@pytest.fixture
def tiny_cfg(tiny_data):
    from medaug.config import TrainConfig

    def make(**kw):
        values = dict(data=str(tiny_data), size=32, epochs=2, batch_size=16, model="tiny", progress=False)
        values.update(kw)
        return TrainConfig(**values)

    return make


os.environ.setdefault("OMP_NUM_THREADS", "2")
