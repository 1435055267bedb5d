"""`medaug bench --device cpu` produces well-formed output (speed targets are read from the benchmark, not asserted)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medaug.cli import app


def test_bench_cpu_writes_well_formed_json(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--device", "cpu", "--methods", "none,cutout,apga,pgnm", "--size", "32",
                                   "--batch", "4", "--steps", "1", "--windows", "2", "--warmup", "1",
                                   "--policy-width", "4", "--policy-size", "32", "-o", "apga.step=fused", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["device"].startswith("cpu") and report["size"] == 32 and report["batch"] == 4
    rows = {r["method"]: r for r in report["methods"]}
    assert list(rows) == ["none", "cutout", "apga", "pgnm"]
    for r in rows.values():
        assert r["images_per_s"] > 0 and len(r["windows"]) == 2 and r["peak_mem_mb"] is None
        assert abs(r["step_ms"] - 1000 * 4 / r["images_per_s"]) < 1e-6
    assert rows["none"]["vs_none"] == 1.0 and rows["cutout"]["vs_cutout"] == 1.0
    assert abs(rows["apga"]["vs_cutout"] - rows["apga"]["images_per_s"] / rows["cutout"]["images_per_s"]) < 1e-12
    assert "x cutout" in res.output
    # images trained on per source image, counted: none and pgnm 1, the 1:1 mixes (cutout, APGA's
    # original + aided halves; its adversarial pass has no gradient) 2
    assert {m: r["trained_per_source"] for m, r in rows.items()} == {"none": 1, "cutout": 2, "apga": 2, "pgnm": 1}
    want = 2 * rows["cutout"]["images_per_s"] / rows["none"]["images_per_s"]
    assert abs(rows["cutout"]["trained_vs_none"] - want) < 1e-12


def test_bench_unknown_method_is_a_clear_error():
    from test_cli import assert_clean_error, medaug

    assert_clean_error(medaug("bench", "--device", "cpu", "--methods", "none,mixupp"), "unknown method 'mixupp'")
