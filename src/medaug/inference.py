"""A trained run as a model to use: ``medaug predict`` (class probabilities of new images) and
``medaug export`` (TorchScript or ONNX, checked against the run's own test predictions).

:func:`load_run` rebuilds what made a finished run's test predictions from its folder alone:
config.toml (size, channels, model, method), best.pt (classifier and method state) and
metrics.json (classes). The method is the one whose ``predict`` gave predictions.npz: the run's
method, or ``none`` after a fine-tuning stage (PGNM's stage 2), so its test-time rule
(:meth:`medaug.methods.base.Method.test_time_rule`, e.g. APGA's ``tta``) is applied too.
Images are preprocessed exactly as the cache does (:func:`medaug.data.io.load_sample`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import TrainConfig, from_dict
from .context import Context
from .data.io import load_sample
from .data.readers.imagefolder import scan
from .device import place, resolve_device
from .errors import MedaugError
from .io_utils import record, tmp_sibling
from .methods import Method, create_method
from .model_card import is_card, write_card
from .models.classifiers import create_classifier
from .train import finetune_epochs, load_checkpoint, load_data, read_json, read_toml

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
ATOL = 1e-5  #: the export must reproduce the run's test probabilities to this (absolute)
ONNX_PIP = "pip install 'medaug[onnx]' (onnx and onnxruntime)"


@dataclass
class LoadedRun:
    """A finished run ready to predict: its folder, config, classes, the predicting method and its Context."""

    run: Path
    cfg: TrainConfig
    metrics: dict
    method: Method
    ctx: Context
    rule: str  #: the method's test-time rule in words ('' = the plain classifier)

    @property
    def classes(self) -> list[str]:
        return list(self.metrics["classes"])


def load_run(run_dir: str | Path, device: str = "cpu", precision: str | None = None) -> LoadedRun:
    """The model a finished run folder holds (see the module docstring), in eval mode on ``device``."""
    run = Path(run_dir)
    if not (run / "metrics.json").is_file() or not (run / "best.pt").is_file():
        raise MedaugError(f"{run}: not a finished run (no metrics.json and best.pt); give a run folder `medaug train` "
                          "or `medaug run` finished, e.g. runs/demo/demo-data/none/shot-all/seed-0")
    metrics = read_json(run / "metrics.json", "the run's")
    table = read_toml(run / "config.toml").get("train")
    if not isinstance(table, dict) or not isinstance(metrics.get("classes"), list):
        raise MedaugError(f"{run}: config.toml has no [train] table or metrics.json no classes; train the run again")
    cfg = from_dict(TrainConfig, table, str(run / "config.toml"))
    cfg = dataclasses.replace(cfg, device=device, progress=False, channels_last=False, precision=precision or cfg.precision)
    dev = resolve_device(device)
    best = load_checkpoint(run / "best.pt", dev)
    # stage 2 fine-tuned without the method, or a two-stage run that kept its starting (none) checkpoint:
    # its predictions are the plain classifier's
    plain = finetune_epochs(cfg) > 0 or bool(best.get("start"))
    method = create_method("none") if plain else create_method(cfg.method, cfg.method_options)
    classes = metrics["classes"]
    model = place(create_classifier(cfg.model, cfg.in_channels, len(classes), None), dev, False)
    try:
        model.load_state_dict(best["model"])
    except (KeyError, RuntimeError) as exc:
        raise MedaugError(f"{run / 'best.pt'}: does not fit {cfg.model} with {len(classes)} classes "
                          f"({exc.__class__.__name__}); train the run again") from None
    model.eval()
    ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.0), dev, cfg, len(classes),
                  torch.amp.GradScaler(dev.type, enabled=False), extras={"baseline": cfg.baseline, "classes": classes})
    rule = method.test_time_rule()
    if rule:
        method.setup_predict(ctx)
        method.load_state_dict(best.get("method", {}))
    return LoadedRun(run, cfg, metrics, method, ctx, rule)


@torch.no_grad()
def predict_images(loaded: LoadedRun, images: np.ndarray) -> np.ndarray:
    """Class probabilities float64 [N, K] of images uint8 [N, C, S, S] by the method's ``predict`` (its test-time rule)."""
    ctx, out = loaded.ctx, []
    ctx.model.eval()
    for i in range(0, len(images), ctx.cfg.eval_batch_size):
        x = ctx.inputs(images[i : i + ctx.cfg.eval_batch_size])
        out.append(torch.softmax(loaded.method.predict(ctx, x), dim=1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(loaded.classes)))


def image_paths(items: list[str | Path]) -> list[Path]:
    """The image files named: files as given, folders searched recursively (hidden and mask files left out)."""
    out = []
    for item in map(Path, items):
        if item.is_dir():
            found = scan(item)[0]
            if not found:
                raise MedaugError(f"{item}: no images (PNG, JPEG, TIFF, DICOM, NIfTI) in this folder")
            out += found
        elif item.is_file():
            out.append(item)
        else:
            raise MedaugError(f"{item}: no such file or folder; give image files or folders of images")
    if not out:
        raise MedaugError("predict: give at least one image file or folder")
    return out


def read_images(paths: list[Path], size: int) -> np.ndarray:
    """Images uint8 [N, C, size, size], decoded and resized as the training cache does (one line per unreadable file):
    C = 1 when every image is gray, else 3 (gray ones repeated, as the cache does)."""
    images = [load_sample({"path": str(p)}, size)[0] for p in paths]
    colour = any(img.ndim == 3 for img in images)
    return np.stack([(img.transpose(2, 0, 1) if img.ndim == 3 else np.repeat(img[None], 3 if colour else 1, 0)) for img in images]) \
        if images else np.zeros((0, 1, size, size), np.uint8)


def as_float(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S] (gray) or [N, C, S, S] -> float32 [N, C, S, S] in [0, 1]: what an exported model takes."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    return x.unsqueeze(1) if x.dim() == 3 else x


def predict_table(loaded: LoadedRun, items: list[str | Path]) -> pd.DataFrame:
    """One row per image: path, predicted class, and p_<class> for every class."""
    paths = image_paths(items)
    probs = predict_images(loaded, read_images(paths, loaded.cfg.size))
    table = pd.DataFrame({"path": [str(p) for p in paths], "predicted": [loaded.classes[i] for i in probs.argmax(1)]})
    for k, name in enumerate(loaded.classes):
        table[f"p_{name}"] = probs[:, k]
    return table


# --- export -------------------------------------------------------------------------------------

class Exported(nn.Module):
    """images float [B, C, S, S] in [0, 1] (C: the run's data) -> class probabilities float [B, K]: normalisation, the classifier
    and (``rule``) the method's test-time rule inside. The method's networks are registered submodules."""

    def __init__(self, loaded: LoadedRun, rule: bool):
        super().__init__()
        self.classifier = loaded.ctx.model
        self.parts = nn.ModuleList([v for v in vars(loaded.method).values() if isinstance(v, nn.Module)] if rule else [])
        self.loaded, self.rule = loaded, rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.loaded.ctx
        logits = self.loaded.method.predict(ctx, x) if self.rule else ctx.logits(x)
        return torch.softmax(logits, dim=1)


def _check_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MedaugError(f"--format onnx needs the onnx and onnxruntime packages: {ONNX_PIP}; or use --format torchscript") from None


def _save(module: nn.Module, fmt: str, example: torch.Tensor, path: Path, meta: dict) -> None:
    """Trace ``module`` on ``example`` and write it to ``path`` as TorchScript or ONNX, with medaug's metadata."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices: the check below is what counts
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={"medaug.json": json.dumps(meta)})
            return
        import onnx

        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["images"], output_names=["probs"],
                          dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17)
        model = onnx.load(str(path))
        model.metadata_props.add(key="medaug", value=json.dumps(meta))
        onnx.save(model, str(path))


def _run_export(path: Path, fmt: str, images: np.ndarray, batch: int) -> np.ndarray:
    """The exported file's probabilities float64 [N, K] of images uint8 [N, C, S, S] (as a user would load it)."""
    out = []
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still loads
            model = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            for i in range(0, len(images), batch):
                out.append(model(as_float(images[i : i + batch])).double().numpy())
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for i in range(0, len(images), batch):
            x = as_float(images[i : i + batch]).numpy()
            out.append(session.run(["probs"], {"images": x})[0].astype(np.float64))
    return np.concatenate(out)


def is_export(path: Path) -> bool:
    """Whether ``path`` is a file ``medaug export`` wrote (its medaug metadata)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("extra/medaug.json") for n in zf.namelist()):
                return True
    except (zipfile.BadZipFile, OSError):
        pass
    try:
        import onnx

        return any(p.key == "medaug" for p in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # not ONNX, or onnx not installed: not known to be ours
        return False


@dataclass
class Export:
    path: Path
    card: Path
    rule_exported: bool
    max_diff: float
    compared: str  #: what the exported probabilities were checked against
    n: int
    notes: list[str]


def export_run(run_dir: str | Path, fmt: str, out: str | Path, data: str | None = None, overwrite: bool = False) -> Export:
    """Export a finished run's model to ``out`` (TorchScript or ONNX) and check it on the run's test split.

    The file maps images float32 [B, C, S, S] in [0, 1] (C = 1 gray, 3 colour, as the run's data) to probabilities [B, K]. With a test-time rule the
    method can export (:attr:`Method.exportable_rule`), the rule is inside and the file must reproduce the run's
    predictions.npz to :data:`ATOL`; otherwise it is the plain classifier, checked against the plain classifier's
    probabilities computed here, and the card and the returned notes say so. A mismatch is an error and leaves
    no file. ``out`` may replace only a file medaug exported (``overwrite``); the model card goes beside it
    (``<file name>.model_card.md``) and, when the run has none, into the run folder.
    """
    if fmt not in FORMATS:
        raise MedaugError(f"--format {fmt!r}: choose torchscript or onnx")
    if fmt == "onnx":
        _check_onnx()
    out = Path(out)
    card = out.with_name(out.name + ".model_card.md")
    for path, ours in ((out, is_export), (card, is_card)):
        if path.is_dir():
            raise MedaugError(f"--out {out}: {path} is a folder; give a file path, e.g. {path / ('model' + FORMATS[fmt])}")
        if path.exists() and not (overwrite and ours(path)):
            raise MedaugError(f"--out {out}: {path} exists; choose another --out"
                              + (", or --overwrite to replace what medaug exported there" if ours(path) else " (medaug did not write it)"))
    if not out.parent.is_dir():
        raise MedaugError(f"--out {out}: folder {out.parent} does not exist; create it first")
    loaded = load_run(run_dir, "cpu", precision="fp32")
    cfg = loaded.cfg if data is None else dataclasses.replace(loaded.cfg, data=str(data))
    pred = Path(run_dir) / "predictions.npz"
    if not pred.is_file():
        raise MedaugError(f"{pred}: missing; the run's test predictions are what the export is checked against")
    saved = np.load(pred)
    dataset = load_data(cfg)
    test = dataset.test
    if dataset.fingerprint != loaded.metrics.get("data_fingerprint") or len(test) != len(saved["labels"]) \
            or not np.array_equal(test.labels, saved["labels"]):
        raise MedaugError(f"{cfg.data}: its test split is not the one {run_dir} was tested on (data fingerprint "
                          f"{dataset.fingerprint} now, {loaded.metrics.get('data_fingerprint')} then); export from the "
                          "data the run was trained on (--data if it moved)")
    with_rule = bool(loaded.rule) and loaded.method.exportable_rule
    notes = []
    expected, compared = saved["probs"], "the run's predictions.npz"
    if loaded.rule and not with_rule:  # the plain classifier, checked against itself in PyTorch
        plain = LoadedRun(loaded.run, loaded.cfg, loaded.metrics, create_method("none"), loaded.ctx, "")
        expected, compared = predict_images(plain, test.images), "the plain classifier's probabilities in PyTorch"
        notes.append(f"the export is the plain classifier: the run's test-time rule ({loaded.rule}) cannot be exported; "
                     f"its probabilities differ from predictions.npz by up to {float(np.abs(expected - saved['probs']).max()):.3g}")
    meta = {"run": str(Path(run_dir).resolve()), "classes": loaded.classes, "size": cfg.size, "input": f"float32 [B, {test.images.shape[1]}, S, S] in [0, 1]",
            "output": "probabilities [B, K]", "test_time_rule": loaded.rule if with_rule else ""}
    module = Exported(loaded, with_rule).eval().requires_grad_(False)  # a user's call needs no torch.no_grad()
    tmp = tmp_sibling(out)
    try:
        _save(module, fmt, as_float(test.images[:2]), tmp, meta)
        got = _run_export(tmp, fmt, test.images, cfg.eval_batch_size)
        diff = float(np.abs(got - expected).max()) if len(got) else 0.0
        if got.shape != expected.shape or not diff <= ATOL:
            raise MedaugError(f"{out}: the exported model does not reproduce {compared} (max |diff| {diff:.3g} > {ATOL:g} on "
                              f"{len(test)} test images); not written. Report this with the run's config.toml")
        record(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink() if tmp.is_file() else shutil.rmtree(tmp, ignore_errors=True)
    rule_line = (f"test-time rule inside: {loaded.rule}" if with_rule else
                 "the plain classifier (softmax of the logits)" + (f"; the run's test-time rule ({loaded.rule}) is not in it"
                                                                   if loaded.rule else ""))
    lines = [f"file `{out.name}` ({fmt}): input `images` float32 [B, 1, {cfg.size}, {cfg.size}] in [0, 1] (gray, resized as "
             f"the card's input line says), output `probs` [B, {len(loaded.classes)}] in the order {', '.join(loaded.classes)}",
             rule_line,
             f"checked: on the run's {len(test)} test images it reproduces {compared} to {diff:.2g} (tolerance {ATOL:g})"]
    table = {**read_toml(Path(run_dir) / "config.toml").get("train", {})}
    write_card(card, loaded.metrics, table, loaded.rule, export=lines + notes)
    if not (Path(run_dir) / "model_card.md").is_file():
        write_card(Path(run_dir) / "model_card.md", loaded.metrics, table, loaded.rule)
    return Export(out, card, with_rule, diff, compared, len(test), notes)
