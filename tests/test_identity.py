"""A run folder's identity: what counts as the same configuration (medaug.train.run_identity)."""

from __future__ import annotations

import pytest

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.train import check_identity, run_identity


def test_a_field_added_later_counts_as_its_default_in_older_folders(tmp_path):
    now = TrainConfig(data=str(tmp_path), method="cutout")
    older = now.to_dict()
    del older["lr_gamma"], older["milestones"]  # a config.toml written before these fields existed
    check_identity(tmp_path, run_identity(older, "fp"), run_identity(now, "fp"), "a finished run")
    older["lr"] = 0.5
    with pytest.raises(MedaugError, match="lr: 0.5 there, 0.001 now"):
        check_identity(tmp_path, run_identity(older, "fp"), run_identity(now, "fp"), "a finished run")


def test_method_options_compare_with_their_defaults_filled_in(tmp_path):
    implicit = TrainConfig(data=str(tmp_path), method="cutout")
    explicit = TrainConfig(data=str(tmp_path), method="cutout", method_options={"variant": "apga"})
    other = TrainConfig(data=str(tmp_path), method="cutout", method_options={"variant": "devries"})
    assert run_identity(implicit, "fp") == run_identity(explicit, "fp")
    with pytest.raises(MedaugError, match="method_options"):
        check_identity(tmp_path, run_identity(implicit, "fp"), run_identity(other, "fp"), "a finished run")
