"""No file of the user's is ever at risk (docs/reliability.md, tables 6-8; issue 28 items 1-3):

- the marker (.medaug-output.json) cannot be turned against the user: a malformed one is refused, a valid
  one deletes only files inside the folder whose bytes match their recorded fingerprint;
- every output path is checked before any work (names, aliases, data, cache, files in the way);
- faults of the machine (full or read-only disk, permissions) are one line, exit 2, nothing half-written.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medaug.errors import MedaugError, machine_fault
from medaug.io_utils import MARKER, clear, output_folder, provable, remove_output
from cli_helper import cli

TINY_GAN = dict(channel_base=256, channel_max=32, z_dim=16, w_dim=16, map_layers=1)
TRAIN = ("--size", 32, "--epochs", 1, "--batch-size", 16, "--model", "tiny")




def one_line_error(code, err, *needles):
    """Exit 2 and one error line (after any note lines and a plan's progress lines) holding every needle."""
    assert code == 2, err
    err = re.sub(r"^(\[\d+/\d+\] .*?(?=\[\d+/\d+\] |error:|note:))+", "", err, flags=re.S)  # medaug run: a line per run
    assert err.count("error:") == 1 and (err.startswith("error:") or err.startswith("note:")), err
    assert "Traceback" not in err and "unexpected" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (symlinks not followed) with its bytes."""
    out = {}
    for root, dirs, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            out[str(path.relative_to(folder))] = b"<link>" if path.is_symlink() else path.read_bytes()
    return out


def sha(path: Path) -> dict:
    data = Path(path).read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_data):
    """Built once: a finished run, a finished experiment (none, cutout), a generator, a prepared cache."""
    from medaug.config import TrainConfig
    from medaug.data.cache import build_cache
    from medaug.data.index import read_index
    from medaug.experiments import ExperimentConfig, make_plan, run_plan
    from medaug.generative.train import GenConfig, train_generator
    from medaug.train import fit

    root = tmp_path_factory.mktemp("made")
    old = os.environ.get("MEDAUG_CACHE")
    os.environ["MEDAUG_CACHE"] = str(root / "cache-root")
    cfg = TrainConfig(data=str(tiny_data), size=32, epochs=1, batch_size=16, model="tiny", progress=False)
    fit(cfg, root / "run")
    exp = ExperimentConfig(name="e", out=str(root / "runs"), data=[str(tiny_data)], methods=["none", "cutout"], seeds=[0])
    run_plan(make_plan(exp, cfg))
    train_generator(GenConfig(data=str(tiny_data), size=16, steps=2, batch_size=8, progress=False, options=TINY_GAN), root / "gen")
    build_cache(read_index(tiny_data), 32, root / "cache", progress=False)
    yield root, cfg
    if old is None:
        os.environ.pop("MEDAUG_CACHE", None)
    else:
        os.environ["MEDAUG_CACHE"] = old


# ---------------------------------------------------------------------------------------------
# 1. the marker cannot be turned against the user


def _attacks(victim: Path, fp: dict) -> dict:
    """Markers a hostile or careless user could leave (each refused: the folder's and the victim's files stay);
    ``fp``: the true fingerprint of ``victim/precious.txt``, so only the path checks protect it."""
    precious = victim / "precious.txt"
    return {
        "entries a string": {"kind": "run", "entries": "notes"},
        "entry ../victim": {"kind": "run", "entries": ["../victim"]},
        "entry absolute": {"kind": "run", "entries": [str(victim)]},
        "entry empty": {"kind": "run", "entries": [""]},
        "entry dot": {"kind": "run", "entries": ["."]},
        "entry a number": {"kind": "run", "entries": [3]},
        "entry nested path (old format)": {"kind": "run", "entries": ["a/b"]},
        "record ../": {"kind": "run", "format": 2, "entries": [{"path": "../victim/precious.txt", **fp}]},
        "record a/../..": {"kind": "run", "format": 2, "entries": [{"path": "a/../../victim/precious.txt", **fp}]},
        "record absolute": {"kind": "run", "format": 2, "entries": [{"path": str(precious), **fp}]},
        "record empty": {"kind": "run", "format": 2, "entries": [{"path": "", **fp}]},
        "record the marker": {"kind": "run", "format": 2, "entries": [{"path": MARKER, **fp}]},
        "record size a string": {"kind": "run", "format": 2, "entries": [{"path": "notes", "sha256": fp["sha256"], "size": "4"}]},
        "record sha256 a number": {"kind": "run", "format": 2, "entries": [{"path": "notes", "sha256": 5, "size": 4}]},
        "record folder: 1": {"kind": "run", "format": 2, "entries": [{"path": "n", "folder": 1}]},
        "record extra key": {"kind": "run", "format": 2, "entries": [{"path": "n", "folder": True, "rm": "-rf"}]},
        "string entry in format 2": {"kind": "run", "format": 2, "entries": ["notes"]},
        "entries missing": {"kind": "run"},
        "marker a list": ["notes"],
        "unknown kind": {"kind": "../x", "entries": []},
        "unknown format": {"kind": "run", "format": 9, "entries": []},
        "not JSON": "{entries: notes",
    }


ATTACK_IDS = list(_attacks(Path("victim"), {"sha256": "0" * 64, "size": 1}))


@pytest.mark.parametrize("case", ATTACK_IDS)
def test_a_malformed_marker_is_refused_and_deletes_nothing(tmp_path, case):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("my thesis")
    user = tmp_path / "user"
    user.mkdir()
    for name in ("n", "o", "notes", "config.toml"):
        (user / name).write_text(f"mine: {name}")
    marker = _attacks(victim, sha(victim / "precious.txt"))[case]
    (user / MARKER).write_text(marker if isinstance(marker, str) else json.dumps(marker))
    before = files(tmp_path)
    for act in (lambda: output_folder(user, "run", overwrite=True), lambda: clear(user)):
        with pytest.raises(MedaugError, match="not a valid medaug marker") as err:
            act()
        assert str(user / MARKER) in str(err.value) and "\n" not in str(err.value)
    remove_output(user)  # undoing a failed claim never raises, never acts on it
    assert files(tmp_path) == before


def test_a_malformed_nested_marker_is_refused_before_anything_is_deleted(tmp_path):
    """--overwrite reads every nested marker first: a malformed one stops it before the first deletion."""
    out = output_folder(tmp_path / "exp", "experiment")
    (out / "result.txt").write_text("medaug's")
    (out / "run").mkdir()
    (out / "run" / MARKER).write_text(json.dumps({"kind": "run", "entries": ["../../victim"]}))
    (out / MARKER).write_text(json.dumps({"kind": "experiment", "format": 2, "entries": [
        {"path": "result.txt", **sha(out / "result.txt")}, {"path": "run", "folder": True}]}))
    before = files(tmp_path)
    with pytest.raises(MedaugError, match=r"run/\.medaug-output\.json: not a valid medaug marker"):
        output_folder(out, "experiment", overwrite=True)
    assert files(tmp_path) == before


def test_a_malformed_marker_is_one_line_in_the_cli(tmp_path, tiny_data, capsys):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes").write_text("mine")
    (user / MARKER).write_text(json.dumps({"kind": "run", "entries": "notes"}))
    before = files(tmp_path)
    code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", user, "--overwrite")
    one_line_error(code, err, str(user / MARKER), "not a valid medaug marker", "entries is str, not a list")
    assert files(tmp_path) == before


def test_a_valid_marker_never_reaches_through_a_symlink(tmp_path, capfd):
    """Records with the right fingerprints of files outside, reached through symlinks: kept, and named."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("my thesis")
    (victim / MARKER).write_text(json.dumps({"kind": "run", "format": 2, "entries": [{"path": "precious.txt",
                                                                                       **sha(victim / "precious.txt")}]}))
    user = tmp_path / "user"
    user.mkdir()
    (user / "link").symlink_to(victim, target_is_directory=True)
    (user / "file-link").symlink_to(victim / "precious.txt")
    fp = sha(victim / "precious.txt")
    (user / MARKER).write_text(json.dumps({"kind": "run", "format": 2, "entries": [
        {"path": "link/precious.txt", **fp}, {"path": "file-link", **fp}, {"path": "link", "folder": True}]}))
    before = files(tmp_path)
    output_folder(user, "run", overwrite=True)
    after = files(tmp_path)
    after.pop(f"user/{MARKER}")
    before.pop(f"user/{MARKER}")
    assert after == before
    assert "reached through a symlink" in capfd.readouterr().err


def test_a_copied_marker_never_deletes_the_users_files(made, tmp_path, tiny_data, capsys):
    """A real run's marker copied into a user's folder: --overwrite deletes none of the user's files (their bytes do
    not match the fingerprints), and training refuses to replace the user's config.toml."""
    root, _ = made
    user = tmp_path / "user"
    (user / "class0").mkdir(parents=True)
    shutil.copy(root / "run" / MARKER, user)
    for name in ("config.toml", "best.pt", "log.jsonl", "class0/a.png"):
        (user / name).write_text(f"the user's {name}")
    before = files(user)
    code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", user, "--overwrite")
    one_line_error(code, err, str(user / "config.toml"), "cannot prove it wrote it")
    assert "config.toml (changed since medaug wrote it)" in err  # the note: the recorded names it kept
    assert {k: v for k, v in files(user).items() if k != MARKER} == {k: v for k, v in before.items() if k != MARKER}
    for name in ("checkpoint.pt", "metrics.json"):  # the user's results under medaug's names: not taken as a run's
        (user / name).write_text(f"the user's {name}")
    before = files(user)
    code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", user, "--overwrite")
    one_line_error(code, err, "--overwrite left metrics.json, checkpoint.pt")
    assert {k: v for k, v in files(user).items() if k != MARKER} == {k: v for k, v in before.items() if k != MARKER}
    # the same with gen sample: a samples marker copied beside the user's images
    samples = tmp_path / "samples"
    (samples / "a").mkdir(parents=True)
    (samples / "a" / "a_00000.png").write_bytes(b"the user's image")
    (samples / "samples.json").write_text("{}")
    (samples / MARKER).write_text(json.dumps({"kind": "samples", "format": 2, "entries": [
        {"path": "a/a_00000.png", **sha(root / "run" / "best.pt")}, {"path": "samples.json", **sha(root / "run" / "log.jsonl")}]}))
    before = files(samples)
    code, _, err = cli(capsys, "gen", "sample", "--model", root / "gen", "--per-class", 2, "--device", "cpu",
                       "--out", samples, "--overwrite")
    one_line_error(code, err, "cannot prove it wrote")
    assert {k: v for k, v in files(samples).items() if k != MARKER} == {k: v for k, v in before.items() if k != MARKER}


def test_overwrite_deletes_only_what_medaug_wrote(made, tmp_path, tiny_cfg, capfd):
    """A real run: --overwrite deletes medaug's files (matching fingerprints), keeps a file the user changed
    (named in the note) and every file the user added, anywhere in the folder."""
    from medaug.train import fit

    root, _ = made
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "log.jsonl").write_text("edited by the user\n")
    (run / "notes.txt").write_text("mine")
    (run / "sub").mkdir()
    (run / "sub" / "plot.png").write_bytes(b"mine")
    output_folder(run, "run", overwrite=True)
    assert sorted(files(run)) == sorted([MARKER, "log.jsonl", "notes.txt", "sub/plot.png"])
    assert "log.jsonl (changed since medaug wrote it)" in capfd.readouterr().err
    # the user's changed log.jsonl is theirs now: training refuses to replace it, before any training
    with pytest.raises(MedaugError, match="log.jsonl: exists and medaug cannot prove it wrote it"):
        fit(tiny_cfg(epochs=1), run)
    (run / "log.jsonl").unlink()
    fit(tiny_cfg(epochs=1), run)
    assert (run / "notes.txt").read_text() == "mine" and (run / "sub" / "plot.png").read_bytes() == b"mine"


def test_overwrite_clears_a_staged_run_and_its_nested_folders(tmp_path, tiny_cfg):
    """A run with a fine-tuning stage: heated/ (a run folder of its own) and last/ (no marker) are cleared by the
    run's marker; the user's files in them stay, with heated/'s marker (it is still medaug's folder)."""
    from medaug.train import fit

    run = tmp_path / "run"
    fit(tiny_cfg(epochs=3, finetune_epochs=2, average_last=2), run)
    assert (run / "heated" / MARKER).is_file() and len(list((run / "last").glob("epoch-*.pt"))) == 2
    (run / "heated" / "mine.txt").write_text("mine")
    (run / "last" / "mine.txt").write_text("mine")
    output_folder(run, "run", overwrite=True)
    assert sorted(files(run)) == sorted([MARKER, f"heated/{MARKER}", "heated/mine.txt", "last/mine.txt"])
    os.remove(run / "heated" / "mine.txt")
    os.remove(run / "last" / "mine.txt")
    fit(tiny_cfg(epochs=3, finetune_epochs=2, average_last=2), run)
    output_folder(run, "run", overwrite=True)
    assert sorted(files(run)) == [MARKER]  # every file it wrote, and the folders they were in


def test_folders_without_a_marker_are_adopted_only_when_all_is_medaugs(made, tmp_path, tiny_cfg, capsys, tiny_data):
    """A run folder of a medaug from before markers is adopted (its finished run reused) only when every file
    is medaug's layout; its files (and an older marker's entries) are never deleted or replaced."""
    from medaug.train import fit

    root, _ = made
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    metrics.pop("identity")  # an older medaug's metrics.json
    old = tmp_path / "old"
    shutil.copytree(root / "run", old)
    (old / MARKER).unlink()
    for newer in ("branch.pt", "model_card.md"):  # files medaug did not write before markers existed
        (old / newer).unlink(missing_ok=True)
    (old / "metrics.json").write_text(json.dumps(metrics))
    with_notes = tmp_path / "with-notes"
    shutil.copytree(old, with_notes)
    (with_notes / "analysis.txt").write_text("mine")
    before = files(with_notes)
    code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", with_notes, "--overwrite")
    one_line_error(code, err, str(with_notes), "holds files medaug did not write (analysis.txt)")
    assert files(with_notes) == before
    # all medaug's layout: adopted, the finished run reused, nothing deleted by --overwrite
    old_marker = tmp_path / "old-marker"
    shutil.copytree(old, old_marker)
    (old_marker / MARKER).write_text(json.dumps({"kind": "run", "entries": sorted(files(old))}))  # an older medaug's
    for folder in (old, old_marker):
        assert fit(tiny_cfg(epochs=1), folder)["test"] == metrics["test"]
        before = files(folder)
        code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", folder, "--overwrite")
        one_line_error(code, err, "--overwrite left metrics.json, checkpoint.pt", "delete them yourself")
        assert "an older medaug's, no fingerprint" in err
        assert {k: v for k, v in files(folder).items() if k != MARKER} == {k: v for k, v in before.items() if k != MARKER}


def test_run_overwrite_keeps_user_files_in_the_experiment(made, tmp_path, tiny_data):
    from medaug.experiments import ExperimentConfig, make_plan, run_plan

    root, cfg = made
    shutil.copytree(root / "runs", tmp_path / "runs")
    exp = tmp_path / "runs" / "e"
    mine = [exp / "notes.txt", exp / tiny_data.name / "notes.txt", exp / tiny_data.name / "none" / "notes.txt",
            exp / tiny_data.name / "none" / "shot-all" / "notes.txt", exp / tiny_data.name / "cutout" / "shot-all" / "seed-0" / "mine.txt"]
    for path in mine:
        path.write_text(f"mine: {path.name}")
    run = exp / tiny_data.name / "none" / "shot-all" / "seed-0"
    old = (run / "metrics.json").stat().st_ino
    plan = make_plan(ExperimentConfig(name="e", out=str(tmp_path / "runs"), data=[str(tiny_data)],
                                      methods=["none", "cutout"], seeds=[0]), cfg)
    run_plan(plan, overwrite=True)
    assert all(path.read_text() == f"mine: {path.name}" for path in mine)
    assert (run / "metrics.json").stat().st_ino != old  # trained again


def test_a_report_folder_that_is_not_medaugs_is_refused(made, tmp_path, capsys):
    root, _ = made
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    report = runs / "e" / "report"
    report.mkdir()
    (report / "report.md").write_text("my own report")
    code, _, err = cli(capsys, "report", runs / "e")
    one_line_error(code, err, str(report), "holds files medaug did not write (report.md)")
    assert (report / "report.md").read_text() == "my own report"
    # medaug's own report: refreshed, a file the user added stays, a report.md the user edited is not replaced
    shutil.rmtree(report)
    assert cli(capsys, "report", runs / "e")[0] == 0
    (report / "notes.md").write_text("mine")
    assert cli(capsys, "report", runs / "e")[0] == 0
    assert (report / "notes.md").read_text() == "mine" and "# medaug report" in (report / "report.md").read_text()
    (report / "report.md").write_text("edited")
    before = files(report)
    code, _, err = cli(capsys, "report", runs / "e")
    one_line_error(code, err, str(report / "report.md"), "cannot prove it wrote it")
    assert files(report) == before  # nothing replaced: checked before any file moved


@pytest.mark.parametrize("command", ["bench --json", "data check --fix-list"])
def test_explicit_output_files_are_replaced_only_with_overwrite(tmp_path, tiny_data, capsys, command):
    target = tmp_path / "out.txt"
    target.write_text("mine")
    args = (("bench", "--steps", 1, "--windows", 1, "--warmup", 0, "--batch", 2, "--methods", "none", "--device", "cpu",
             "--json", target) if command.startswith("bench") else ("data", "check", tiny_data, "--fix-list", target))
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, command.split()[-1], str(target), "--overwrite to replace it")
    assert target.read_text() == "mine"
    code, _, err = cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert target.read_text() != "mine"


# ---------------------------------------------------------------------------------------------
# 2. a finished run is read without a write; its identity is what medaug stored, not config.toml


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@pytest.fixture
def fault():
    """``fault(root, errno, after=0)``: every write below ``root`` (opening for writing, mkdir, rename) fails with
    ``errno`` after ``after`` succeeded, as on a full (ENOSPC) or read-only (EROFS) disk or without permission
    (EACCES); ``fault.undo()`` mends the disk. Tests run as root, where chmod does not stop writes, so the write
    primitives are patched."""
    monkeypatch = pytest.MonkeyPatch()

    def install(root: Path, err: int, after: int = 0) -> None:
        top, seen = os.path.abspath(root), [0]
        real = {"open": builtins.open, "os_open": os.open, "mkdir": os.mkdir, "replace": os.replace, "rename": os.rename}

        def hit(path) -> bool:
            if isinstance(path, int):
                return False
            full = os.path.abspath(os.fsdecode(path))
            if full != top and not full.startswith(top + os.sep):
                return False
            seen[0] += 1
            return seen[0] > after

        def boom(path):
            raise OSError(err, os.strerror(err), os.fsdecode(path))

        def fake_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and hit(file):
                boom(file)
            return real["open"](file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if flags & WRITE_FLAGS and kwargs.get("dir_fd") is None and hit(path):
                boom(path)
            return real["os_open"](path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if kwargs.get("dir_fd") is None and hit(path):
                boom(path)
            return real["mkdir"](path, *args, **kwargs)

        def fake_replace(src, dst, *args, **kwargs):
            if kwargs.get("dst_dir_fd") is None and hit(dst):
                boom(dst)
            return real["replace"](src, dst, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        monkeypatch.setattr(os, "replace", fake_replace)
        monkeypatch.setattr(os, "rename", fake_replace)

    install.undo = monkeypatch.undo
    yield install
    monkeypatch.undo()


def read_only(folder: Path, fault) -> None:
    """Make ``folder`` read-only: chmod when not root (a real fault), else the patched primitives (EROFS)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    else:
        fault(folder, errno.EROFS)


def test_a_finished_run_is_read_without_a_write(made, tmp_path, tiny_data, fault, capsys):
    """On a read-only disk a finished run is reused and a finished experiment skipped and reported elsewhere;
    only the report into the read-only folder fails, as one line."""
    from medaug.experiments import ExperimentConfig, make_plan, run_plan
    from medaug.train import fit

    root, cfg = made
    shutil.copytree(root / "run", tmp_path / "ro" / "run")
    shutil.copytree(root / "runs", tmp_path / "ro" / "runs")
    expected = json.loads((root / "run" / "metrics.json").read_text())
    (tmp_path / "plan.toml").write_text(f'[experiment]\nname = "e"\nout = "{tmp_path / "ro" / "runs"}"\n'
                                        f'data = ["{tiny_data}"]\nmethods = ["none", "cutout"]\nseeds = [0]\n'
                                        '[train]\nsize = 32\nepochs = 1\nbatch_size = 16\nmodel = "tiny"\n')
    before = files(tmp_path / "ro")
    try:
        read_only(tmp_path / "ro", fault)
        assert fit(cfg, tmp_path / "ro" / "run") == expected
        plan = make_plan(ExperimentConfig(name="e", out=str(tmp_path / "ro" / "runs"), data=[str(tiny_data)],
                                          methods=["none", "cutout"], seeds=[0]), cfg)
        assert len(run_plan(plan)) == 2
        code, out, err = cli(capsys, "report", tmp_path / "ro" / "runs" / "e", "--out", tmp_path / "elsewhere")
        assert code == 0 and (tmp_path / "elsewhere" / "report.md").is_file(), err
        code, _, err = cli(capsys, "run", tmp_path / "plan.toml")  # the runs are skipped; the report cannot be written
        one_line_error(code, err, str(tmp_path / "ro" / "runs" / "e" / "report"), "read-only" if os.geteuid() == 0 else "ermission")
    finally:
        for path in [tmp_path / "ro", *(tmp_path / "ro").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert files(tmp_path / "ro") == before


def test_a_finished_run_is_checked_against_what_medaug_stored(made, tmp_path, tiny_cfg):
    """config.toml edited by hand does not make a finished run another configuration's, nor this one's."""
    from medaug.experiments import check_finished
    from medaug.train import fit

    root, cfg = made
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    expected = json.loads((run / "metrics.json").read_text())
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("lr = 0.001", "lr = 0.01"))
    with pytest.raises(MedaugError, match=r"finished run of another configuration \(lr: 0.001 there, 0.01 now"):
        fit(tiny_cfg(epochs=1, lr=0.01), run)
    with pytest.raises(MedaugError, match=r"lr: 0.001 there, 0.01 now"):
        check_finished([(run, tiny_cfg(epochs=1, lr=0.01), False)])  # medaug run: before any training
    assert fit(tiny_cfg(epochs=1), run) == expected  # the configuration it was trained with
    # a metrics.json without the stored identity (an older medaug's): config.toml must be the one medaug wrote
    del expected["identity"]
    (run / "metrics.json").write_text(json.dumps(expected))
    with pytest.raises(MedaugError, match="config.toml: changed since medaug wrote it"):
        fit(tiny_cfg(epochs=1, lr=0.01), run)


# ---------------------------------------------------------------------------------------------
# 3. every output path is checked before any work


def path_cases(tmp: Path, data: Path, made_root: Path) -> dict:
    """name: (args, env, needles); ``tmp`` holds a file ``afile``, an ImageFolder dataset ``folders`` and a
    medaug report folder ``report``."""
    base = (f'[experiment]\nname = "e"\nout = "{tmp / "out"}"\ndata = ["{data}"]\nmethods = ["none"]\nseeds = [0]\n'
            '[train]\nsize = 32\nepochs = 1\n')

    def plan(name, text):
        if tmp.is_dir():  # (not when only the case names are listed)
            (tmp / f"{name}.toml").write_text(text)
        return ("run", tmp / f"{name}.toml")

    train = ("train", "--data", data, *TRAIN)
    folders = tmp / "folders"
    return {
        "experiment name ../../escape": (plan("p1", base.replace('"e"', '"../../escape"')), {}, ["name '../../escape'", "plain folder name"]),
        "experiment name absolute": (plan("p2", base.replace('"e"', f'"{tmp / "abs"}"')), {}, ["plain folder name"]),
        "experiment name with a separator": (plan("p3", base.replace('"e"', '"a/b"')), {}, ["name 'a/b'"]),
        "method alias ../m": (plan("p4", base.replace('["none"]', '["none", "../m"]') + '[methods."../m"]\nmethod = "cutout"\n'),
                              {}, ["method '../m'", "plain folder name"]),
        "method alias BASE+FLAG with a separator": (plan("p5", base.replace('["none"]', '["none", "cutout+../x"]')), {},
                                                    ["method 'cutout+../x'"]),
        "experiment out a file": (plan("p6", base.replace(f'"{tmp / "out"}"', f'"{tmp / "afile"}"')), {},
                                  ["[experiment] out/name", "afile is a file"]),
        "gen sample into the generator's data": (("gen", "sample", "--model", made_root / "gen", "--per-class", 2, "--device", "cpu",
                                                  "--out", data / "MURA-v1.1" / "new"), {}, ["overlaps the input"]),
        "gen sample into another dataset": (("gen", "sample", "--model", made_root / "gen", "--per-class", 2, "--device", "cpu",
                                             "--out", folders / "train" / "newclass"), {},
                                            ["lies inside what looks like a dataset", "negative, positive"]),
        "MEDAUG_CACHE inside the dataset": (("train", "--data", folders, *TRAIN, "--out", tmp / "r"),
                                            {"MEDAUG_CACHE": str(folders / "train" / "cache")}, ["MEDAUG_CACHE", "lies inside the dataset"]),
        "MEDAUG_CACHE a file": ((*train, "--out", tmp / "r"), {"MEDAUG_CACHE": str(tmp / "afile")}, ["MEDAUG_CACHE", "is a file"]),
        "--cache a file": ((*train, "--cache", tmp / "afile", "--out", tmp / "r"), {}, ["--cache", "is a file"]),
        "--cache inside the dataset": ((*train, "--cache", data / "c", "--out", tmp / "r"), {}, ["--cache", "overlaps the input"]),
        "--out below a file": ((*train, "--out", tmp / "afile" / "r"), {}, ["afile is a file, not a folder"]),
        "--out a 300-character name": ((*train, "--out", tmp / ("x" * 300)), {}, ["300 bytes", "choose a shorter name"]),
        "--out inside a prepared cache": (("train", "--data", made_root / "cache", *TRAIN, "--out", made_root / "cache" / "r"), {},
                                          ["overlaps the input"]),
        "a 300-character method alias": (plan("p7", base.replace('["none"]', f'["none", "{"m" * 300}"]')
                                              + f'[methods.{"m" * 300}]\nmethod = "cutout"\n'), {}, ["300 bytes"]),
        "--out inside medaug's report folder": ((*train, "--out", tmp / "report" / "r"), {},
                                                ["inside medaug's report folder"]),
        "data prepare --out inside a cache": (("data", "prepare", data, "--size", 32, "--out", made_root / "cache" / "c2"), {},
                                              ["inside medaug's cache folder"]),
        "transfer backbone name ../x": (("transfer", "--backbone", f"../x={made_root / 'run'}", "--data", data, "--shots", 2,
                                         "--out", tmp / "t"), {}, ["the name '../x'"]),
        "bench --json below a file": (("bench", "--methods", "none", "--json", tmp / "afile" / "b.json"), {}, ["afile is a file"]),
        "data synth --out below a file": (("data", "synth", "--out", tmp / "afile" / "d"), {}, ["afile is a file"]),
    }


PATH_CASES = list(path_cases(Path("t"), Path("d"), Path("m")))


@pytest.mark.parametrize("case", PATH_CASES)
def test_output_paths_are_checked_before_any_work(made, tmp_path, tiny_data, capsys, monkeypatch, case):
    from medaug.data.synth import generate

    generate(tmp_path / "folders", n_train=8, n_test=4, size=32, layout="folders", progress=False)
    (tmp_path / "afile").write_text("x")
    output_folder(tmp_path / "report", "report")
    args, env, needles = path_cases(tmp_path, tiny_data, made[0])[case]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before, data_before, made_before = files(tmp_path), files(tiny_data), files(made[0])
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, *needles)
    assert files(tmp_path) == before and files(tiny_data) == data_before  # nothing written, anywhere
    assert {k: v for k, v in files(made[0]).items() if not k.startswith("cache-root")} == \
        {k: v for k, v in made_before.items() if not k.startswith("cache-root")}


# ---------------------------------------------------------------------------------------------
# 4. faults of the machine: one line naming the path, exit 2, nothing half-written


def fault_commands(disk: Path, data: Path, made_root: Path) -> dict:
    """name: (args, writes): ``writes`` is about half the writes the command makes below ``disk`` (where a fault
    half-way hits: e.g. train between its first checkpoint's files, data prepare while decoding into its
    temporary folder, gen sample while saving images)."""
    gan = [x for k, v in TINY_GAN.items() for x in ("-o", f"{k}={v}")]
    return {
        "train": (("train", "--data", data, *TRAIN, "--out", disk / "run"), 13),
        "data prepare": (("data", "prepare", data, "--size", 32, "--out", disk / "cache"), 10),
        "report": (("report", made_root / "runs" / "e", "--out", disk / "report"), 12),
        "gen sample": (("gen", "sample", "--model", made_root / "gen", "--per-class", 2, "--device", "cpu", "--out", disk / "s"), 16),
        "data synth": (("data", "synth", "--out", disk / "syn", "--n-train", 8, "--n-test", 4, "--size", 32), 32),
        "gen train": (("gen", "train", "--data", data, "--size", 16, "--steps", 2, "--batch-size", 8, "--device", "cpu", *gan,
                       "--out", disk / "g"), 11),
        "bench --json": (("bench", "--steps", 1, "--windows", 1, "--warmup", 0, "--batch", 2, "--methods", "none",
                          "--device", "cpu", "--json", disk / "b.json"), 1),
        "data check --fix-list": (("data", "check", data, "--fix-list", disk / "fix.txt"), 1),
    }


FAULTS = {"ENOSPC at the first write": (errno.ENOSPC, 0, "disk is full"),
          "ENOSPC half-way": (errno.ENOSPC, None, "disk is full"),
          "EROFS": (errno.EROFS, 0, "read-only"),
          "EACCES": (errno.EACCES, 0, "permissions")}


@pytest.mark.parametrize("fault_name", list(FAULTS))
@pytest.mark.parametrize("command", list(fault_commands(Path("d"), Path("d"), Path("m"))))
def test_machine_faults_are_one_line_and_leave_nothing(made, tmp_path, tiny_data, fault, capsys, command, fault_name):
    disk = tmp_path / "disk"
    disk.mkdir()
    args, half = fault_commands(disk, tiny_data, made[0])[command]
    err_no, after, fix = FAULTS[fault_name]
    fault(disk, err_no, half if after is None else after)
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, str(disk), errno.errorcode[err_no], fix)
    assert not [p for p in tmp_path.rglob("*") if ".medaug-tmp" in p.name or ".tmp-" in p.name]  # no temporary file
    left = [disk / name for name in files(disk) if Path(name).name != MARKER]
    if left:  # nothing half-written: what is left is complete and medaug's (a run to resume), and it resumes
        assert all(provable(path) for path in left), left
        fault.undo()
        code, _, err = cli(capsys, *args)
        assert code == 0, err
    else:
        assert files(disk) == {}, err


def test_a_full_automatic_cache_is_one_line(made, tmp_path, tiny_data, fault, capsys, monkeypatch):
    monkeypatch.setenv("MEDAUG_CACHE", str(tmp_path / "disk" / "cache"))
    fault(tmp_path / "disk", errno.ENOSPC)
    code, _, err = cli(capsys, "train", "--data", tiny_data, *TRAIN, "--out", tmp_path / "run")
    one_line_error(code, err, str(tmp_path / "disk"), "ENOSPC", "disk is full")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["data prepare", "train"])
def test_a_real_file_size_limit_is_one_line(made, tmp_path, tiny_data, command):
    """A real fault: RLIMIT_FSIZE makes the kernel fail large writes (EFBIG), as a full disk does (ENOSPC)."""
    import resource

    root, _ = made
    limit = 60_000 if command == "data prepare" else 300_000  # the cache's images.npy / the run's checkpoint.pt is larger
    args = (("data", "prepare", tiny_data, "--size", 32, "--out", tmp_path / "out") if command == "data prepare" else
            ("train", "--data", root / "cache", *TRAIN, "--out", tmp_path / "out"))

    def limit_writes():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {**os.environ, "MEDAUG_CACHE": str(root / "cache-root")}
    proc = subprocess.run([sys.executable, "-m", "medaug", *map(str, args)], capture_output=True, text=True, env=env,
                          preexec_fn=limit_writes)
    err = " ".join(proc.stderr.split())
    one_line_error(proc.returncode, err, str(tmp_path / "out"), "EFBIG", "write to another disk")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EEXIST",
                                  "ENAMETOOLONG", "EFBIG"])
def test_every_machine_fault_has_a_fix(name):
    code = getattr(errno, name)
    line = machine_fault(OSError(code, os.strerror(code), "/some/path"))
    assert line.startswith("/some/path: ") and f"({name}); " in line and "\n" not in line
    assert machine_fault(OSError(errno.EBADF, "Bad file descriptor")) is None  # not the user's to fix: a bug
