"""The HTML report in a real browser (headless Chromium): tables and figures render, and no request
leaves the page. Skipped, with the install command, where Chromium is missing.

Requests are read from Chromium's NetLog (``--log-net-log``): every URL request the *page* starts
(browser-internal ones, e.g. update checks, have the initiator "not an origin"). A canary page with
two external resources checks that this detection works on the installed Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found: install it (Debian: `apt-get install -y chromium`; `make test` tries as root) to run the browser test",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars"]


def chromium(tmp: Path, url: str, *extra: str, name: str = "c") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run Chromium on ``url``; returns the process and the http(s)/ws(s) URLs the page requested."""
    netlog = tmp / f"{name}-netlog.json"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / (name + '-profile')}", f"--log-net-log={netlog}", *extra, url],
                          capture_output=True, text=True, timeout=120)
    return proc, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in log["events"]:
        p = e.get("params", {})
        if e["type"] == start and p.get("initiator") != "not an origin" and re.match(r"(https?|wss?|ftp)://", p.get("url", "")):
            urls.append(p["url"])
    return urls


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    from medaug.config import TrainConfig
    from medaug.data.synth import generate
    from medaug.experiments import ExperimentConfig, make_plan, run_plan
    from medaug.report import write_report

    base = tmp_path_factory.mktemp("browser")
    data = generate(base / "synth", n_train=96, n_test=48, size=32, seed=0, progress=False)
    exp = ExperimentConfig(name="b", out=str(base / "runs"), data=[str(data)], methods=["none", "cutout"], seeds=[0, 1], shots=[0, 16])
    plan = make_plan(exp, TrainConfig(size=32, epochs=2, batch_size=16, progress=False, cache=str(base / "cache")))
    run_plan(plan)
    return write_report(plan.root, base / "report", html=True) / "report.html"


def test_netlog_detects_requests(tmp_path):
    """Positive control: a page that does load external resources is caught."""
    page = tmp_path / "canary.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/canary.png">'
                    '<link rel="stylesheet" href="https://example.invalid/x.css"></body></html>')
    _, urls = chromium(tmp_path, page.as_uri(), "--dump-dom", name="canary")
    assert "http://127.0.0.1:9/canary.png" in urls and "https://example.invalid/x.css" in urls, urls


def test_report_renders_offline(report_html, tmp_path):
    # a copy with one extra inline script that records, after load, whether every image decoded
    probe = tmp_path / "probe.html"
    check = ("<script>window.addEventListener('load',function(){var i=Array.from(document.images);"
             "document.body.setAttribute('data-images',i.length+' '+i.filter(function(x){return x.complete&&x.naturalWidth>0}).length)})</script>")
    probe.write_text(report_html.read_text().replace("</body>", check + "</body>"))
    proc, urls = chromium(tmp_path, probe.as_uri(), "--dump-dom", "--virtual-time-budget=5000", name="dom")
    assert urls == [], f"the report made requests: {urls}"
    dom = proc.stdout
    assert dom.count('class="main"') >= 5 and 'class="tests"' in dom and 'class="provenance"' in dom
    assert len(re.findall(r'data-run="', dom)) == 8  # 2 methods x 2 seeds x 2 shots
    total, decoded = map(int, re.search(r'data-images="(\d+) (\d+)"', dom).groups())
    assert total >= 8 + 2 and decoded == total, (total, decoded)
    assert "test auroc vs training-set size" in report_html.read_text() or "training-set size" in dom

    shot = tmp_path / "report.png"
    proc, urls = chromium(tmp_path, report_html.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400", name="shot")
    assert urls == [] and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1280) and pixels.std() > 10  # not a blank page
    if os.environ.get("MEDAUG_SCREENSHOT_DIR"):  # keep it for a human to look at
        shutil.copy(shot, Path(os.environ["MEDAUG_SCREENSHOT_DIR"]) / "report.png")


def test_report_prints_to_pdf(report_html, tmp_path):
    pdf = tmp_path / "report.pdf"
    proc, urls = chromium(tmp_path, report_html.as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer", name="pdf")
    assert urls == [] and pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", proc.stderr[-2000:]
