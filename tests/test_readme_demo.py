"""The README's demo table is what `medaug demo` prints today (issue 32: it had drifted).

Runs the demo at its defaults in a subprocess (a fresh process, so no earlier test's torch settings
leak in; 2 threads, as `make demo` runs on the 2-core reference machine) and compares every cell of
its console table with the README's copy under "Start here".
"""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of a Rich console table: method -> its cells (the `│`-separated columns after the name)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.strip().startswith("│") and len(cells) > 2:
            rows[cells[0]] = cells[1:]
    return rows


def readme_demo_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- demo-table -->\n(.*?)<!-- /demo-table -->", readme, re.S)
    assert match, "README.md: the demo table block (<!-- demo-table --> ... <!-- /demo-table -->) is missing"
    return match.group(1)


def test_readme_demo_table_is_what_the_demo_prints(tmp_path):
    expected = table_rows(readme_demo_block())
    assert {"none", "apga"} <= set(expected), expected
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "2", "MEDAUG_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "medaug", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert table_rows(done.stdout) == expected, done.stdout
