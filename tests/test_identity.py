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


def test_config_toml_records_method_options_as_they_ran(tmp_path):
    """A run's config.toml holds every option resolved, so a later change of a default cannot reuse it silently."""
    import tomllib

    from medaug.data.synth import generate
    from medaug.train import fit

    data = generate(tmp_path / "d", n_train=48, n_test=24, size=32, seed=0, progress=False)
    cfg = TrainConfig(data=str(data), method="cutout", size=32, epochs=1, batch_size=16, progress=False,
                      cache=str(tmp_path / "cache"))
    fit(cfg, tmp_path / "run")
    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())["train"]["method_options"]
    assert saved == {"variant": "apga", "area_min": 0.0, "area_max": 1.0, "size_fraction": 0.5}
    older_default = {**TrainConfig(**{**cfg.to_dict(), "method_options": saved}).to_dict()}
    older_default["method_options"] = {**saved, "variant": "devries"}  # as if the default had been devries then
    with pytest.raises(MedaugError, match="method_options"):
        check_identity(tmp_path, run_identity(older_default, "fp"), run_identity(cfg, "fp"), "a finished run")


def test_a_baseline_counts_as_the_path_from_the_run_folder(tmp_path):
    """run_identity(..., out): the baseline relative to the run folder, so moved folders still match; an identity
    an older medaug stored with the absolute path compares equal while nothing has moved."""
    from medaug.train import stored_identity

    out = tmp_path / "exp" / "gradcam" / "seed-0"
    cfg = TrainConfig(data=str(tmp_path), method="gradcam", baseline=str(tmp_path / "exp" / "none" / "seed-0"))
    now = run_identity(cfg, "fp", out)
    assert now["baseline"] == "../../none/seed-0"
    assert stored_identity(out, run_identity(cfg, "fp")) == now  # older medaug: absolute
    assert stored_identity(tmp_path / "moved" / "gradcam" / "seed-0", now) == now  # moved with its baseline
    other = TrainConfig(**{**cfg.to_dict(), "baseline": str(tmp_path / "exp" / "none" / "seed-1")})
    with pytest.raises(MedaugError, match="baseline: '../../none/seed-0' there, '../../none/seed-1' now"):
        check_identity(out, now, run_identity(other, "fp", out), "a finished run")
