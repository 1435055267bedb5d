"""Colour end to end: readers keep RGB, the cache records and round-trips its channels (gray caches keep
their old layout), in_channels follows the data, figures and generators show and make colour, and a set
whose classes differ only in hue is learned."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medaug.config import TrainConfig
from medaug.data.cache import build_cache, cached, is_cache, load_dataset, read_meta
from medaug.data.check import check_dataset
from medaug.data.index import read_index
from medaug.data.io import load_image, load_sample
from medaug.data.synth import generate_hue, hue_arrays
from medaug.errors import MedaugError
from medaug.models.inputs import normalize
from medaug.train import fit

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def test_readers_keep_colour_and_gray_stays_gray(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert np.array_equal(load_image(save(tmp_path / "rgb.png", rgb)), rgb.astype(np.float32) / 255)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (20, 24, 1), dtype=np.uint8)], -1)
    assert np.array_equal(load_image(save(tmp_path / "rgba.png", rgba)), rgb.astype(np.float32) / 255)  # alpha dropped
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "pal.png")
    with Image.open(tmp_path / "pal.png") as img:
        assert np.array_equal(load_image(tmp_path / "pal.png"), np.asarray(img.convert("RGB"), np.float32) / 255)
    assert load_image(save(tmp_path / "rgb.jpg", rgb, quality=95)).shape == (20, 24, 3)
    assert load_image(save(tmp_path / "rgb.tif", rgb)).shape == (20, 24, 3)

    # gray in a colour container (radiographs saved as RGB): read exactly as medaug always read it
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    three = np.stack([gray] * 3, -1)
    expected = gray.astype(np.float32) / 255
    for name, arr in (("g.png", gray), ("g3.png", three), ("g4.png", np.concatenate([three, gray[..., None]], -1))):
        out = load_image(save(tmp_path / name, arr))
        assert out.shape == (20, 24) and np.array_equal(out, expected), name
    jpeg = save(tmp_path / "g3.jpg", three, quality=90)
    with Image.open(jpeg) as img:
        assert np.array_equal(load_image(jpeg), np.asarray(img.convert("L"), np.float32) / 255)
    assert load_image(save(tmp_path / "w16.png", rng.integers(0, 65535, (20, 24)).astype(np.uint16))).ndim == 2

    # DICOM RGB (pydicom's pixel array [H, W, 3])
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.Rows, ds.Columns = 20, 24
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for key in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if key in ds:
            delattr(ds, key)
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "rgb.dcm")
    assert np.array_equal(load_image(tmp_path / "rgb.dcm"), rgb.astype(np.float32) / 255)

    # resize and crop keep the channels; a colour ROI file marks any non-zero channel
    roi = np.zeros((20, 24, 3), np.uint8)
    roi[5:10, 5:10, 2] = 200
    row = {"path": str(tmp_path / "rgb.png"), "roi": str(save(tmp_path / "rgb_roi.png", roi)), "bbox": "2,2,22,18"}
    image, mask = load_sample(row, 8)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8 and mask.shape == (8, 8) and 0 < mask.sum() < 64


def mixed_folder(root: Path, size: int = 20, colour: tuple[str, ...] = ("b",)) -> Path:
    """ImageFolder train/test x a/b: the images of the ``colour`` classes in colour, the others gray."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                shape = (size, size, 3) if cls in colour else (size, size)
                save(root / split / cls / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return root


def test_cache_round_trips_colour_and_a_mixed_folder_becomes_rgb(tmp_path):
    root = mixed_folder(tmp_path / "mixed")
    folder = build_cache(read_index(root), 16, progress=False)
    meta = read_meta(folder)
    assert meta["channels"] == 3 and meta["gray_in_colour"] == 9
    assert np.load(folder / "images.npy", mmap_mode="r").shape == (18, 3, 16, 16)
    ds = load_dataset(folder, size=16)
    assert ds.channels == 3 and ds.train.images.shape[1:] == (3, 16, 16) and ds.test.images.shape == (6, 3, 16, 16)
    manifest = read_index(root).frame
    for split in (ds.train, ds.test):
        for path, img in zip(split.paths, split.images):
            expected, _ = load_sample(manifest[manifest.path == path].iloc[0], 16)
            assert np.array_equal(img, expected.transpose(2, 0, 1) if expected.ndim == 3 else np.stack([expected] * 3))

    report = check_dataset(root, sample=None)
    assert report.channels == 3 and any("read as RGB" in n and "9 of the 18" in n for n in report.notes)
    proc = subprocess.run([sys.executable, "-m", "medaug", "data", "check", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0 and "images: RGB (3 channels)" in proc.stdout and "read as RGB" in proc.stdout
    gray = check_dataset(mixed_folder(tmp_path / "gray", colour=()), sample=None)
    assert gray.channels == 1 and gray.kind == "gray (1 channel)" and not any("RGB" in n for n in gray.notes)


def test_gray_cache_keeps_its_layout_and_old_caches_load_or_rebuild(tmp_path):
    root = mixed_folder(tmp_path / "gray", colour=())
    for split in ("train", "test"):
        for i in range(3):
            save(root / split / "b" / f"rgb{i}.png", np.full((20, 20, 3), 40 * i, np.uint8))  # gray in RGB files
    folder = cached(root, 16, progress=False)
    images = np.load(folder / "images.npy")
    assert images.shape == (24, 16, 16) and read_meta(folder)["channels"] == 1  # the gray layout of every medaug
    ds = load_dataset(folder, size=16)
    assert ds.channels == 1 and ds.train.images.shape[1] == 1 and ds.train.images.strides[1] == 16 * 16

    # a cache written before medaug read colour: no "channels" in meta.json
    meta = json.loads((folder / "meta.json").read_text())
    del meta["channels"], meta["gray_in_colour"]
    (folder / "meta.json").write_text(json.dumps(meta))
    old = tmp_path / "old-cache"
    shutil.copytree(folder, old)
    assert is_cache(old) and load_dataset(old, size=16).channels == 1  # given as --data: loads as the gray cache it is
    assert cached(root, 16, progress=False) == folder  # the automatic one is decoded again, to the same bytes
    assert read_meta(folder)["channels"] == 1 and np.array_equal(np.load(folder / "images.npy"), images)

    colour = mixed_folder(tmp_path / "colour")  # an old gray cache of colour data is rebuilt as colour
    folder = cached(colour, 16, progress=False)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["channels"]
    (folder / "meta.json").write_text(json.dumps(meta))
    np.save(folder / "images.npy", np.load(folder / "images.npy")[:, 0])
    assert read_meta(cached(colour, 16, progress=False))["channels"] == 3
    with pytest.raises(MedaugError, match=r"expected uint8 \[18, 3, 16, 16\]"):
        (folder / "meta.json").write_text(json.dumps({**meta, "channels": 3}))
        np.save(folder / "images.npy", np.zeros((18, 16, 16), np.uint8))
        load_dataset(folder, size=16)


def test_normalize_maps_channels():
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(normalize(x, 3), ((x - 0.5) / 0.25).expand(-1, 3, -1, -1))  # gray for RGB-pretrained networks
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.equal(normalize(rgb, 3), (rgb - 0.5) / 0.25)
    luma = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    assert torch.allclose(normalize(rgb, 1), (luma - 0.5) / 0.25, atol=1e-6)  # a 1-channel network sees luminance


@pytest.fixture(scope="module")
def hue(tmp_path_factory) -> Path:
    return generate_hue(tmp_path_factory.mktemp("hue") / "hue", n_train=160, n_test=80, size=16, seed=0, progress=False)


def test_hue_set_differs_only_in_colour():
    from medaug.data.synth import render_hue

    for seed in range(8):  # the same draws as green and as red: the same gray image, up to rounding
        green, roi = render_hue(np.random.default_rng(seed), 24, 0)
        red, same = render_hue(np.random.default_rng(seed), 24, 1)
        gray = [np.asarray(Image.fromarray(i).convert("L"), np.float32) for i in (green, red)]
        assert np.array_equal(roi, same) and np.abs(gray[0] - gray[1]).max() <= 2
        blob = roi.astype(bool)
        assert green[blob].mean(0)[1] > green[blob].mean(0)[0] + 5 and red[blob].mean(0)[0] > red[blob].mean(0)[1] + 5
    images, labels = hue_arrays(8, 16, seed=3)
    assert images.shape == (8, 16, 16, 3) and labels.tolist() == [0, 1] * 4


def test_hue_only_classes_are_learned_in_colour(hue, tmp_path):
    """The issue's target, small: none and trivialaugment reach test accuracy >= 0.9 on RGB images whose
    classes differ only in hue; the same network fed luminance (in_channels 1) stays at chance."""
    scores = {}
    for method, channels in (("none", 0), ("trivialaugment", 0), ("none", 1), ("cutout", 0)):
        cfg = TrainConfig(data=str(hue), size=16, epochs=6, method=method, batch_size=16, progress=False,
                          in_channels=channels)
        out = tmp_path / f"{method}-{channels}"
        scores[method, channels] = fit(cfg, out)["test"]["accuracy"]
        saved = (out / "config.toml").read_text()
        assert f"in_channels = {channels or 3}" in saved  # the resolved value is what the run records
    assert scores["none", 0] >= 0.9 and scores["trivialaugment", 0] >= 0.9, scores
    assert scores["none", 1] <= 0.7, scores
    masks = np.load(tmp_path / "cutout-0" / "masks.npz")
    assert masks["images"].shape[1:] == (3, 16, 16) and masks["masks"].shape[1:] == (16, 16)
    with Image.open(tmp_path / "cutout-0" / "masks.png") as img:  # the figure shows the colour
        pix = np.asarray(img.convert("RGB")).astype(int)
    assert (np.abs(pix[..., 1] - pix[..., 0]) > 40).mean() > 0.005  # green blobs (the erased tint is red)


def test_in_channels_resolves_from_the_data_and_gray_runs_keep_their_identity(tiny_cfg, tmp_path):
    first = fit(tiny_cfg(epochs=1), tmp_path / "run")
    assert "in_channels = 1" in (tmp_path / "run" / "config.toml").read_text()
    assert fit(tiny_cfg(epochs=1, in_channels=1), tmp_path / "run") == first  # spelled out: the same run, reused
    assert fit(tiny_cfg(epochs=1), tmp_path / "run") == first
    with pytest.raises(MedaugError, match="in_channels: 1 there, 3 now"):
        fit(tiny_cfg(epochs=1, in_channels=3), tmp_path / "run")
    rgb = fit(tiny_cfg(epochs=1, in_channels=3), tmp_path / "rgb")  # gray repeated for an RGB network
    assert rgb["test"]["auroc"] > 0 and "in_channels = 3" in (tmp_path / "rgb" / "config.toml").read_text()

    from medaug.experiments import check_finished

    check_finished([(tmp_path / "run", tiny_cfg(epochs=1), None)])  # a plan's in_channels 0 meets the saved 1


def test_generators_take_and_make_colour(hue, tmp_path):
    from medaug.generative.evaluation import evaluate
    from medaug.generative.quality import read_image_folder
    from medaug.generative.train import GenConfig, load_generator, train_generator, write_samples

    cfg = GenConfig(data=str(hue), model="gan", size=16, steps=2, batch_size=4, ckpt_every=2, progress=False,
                    options={"channel_base": 64, "channel_max": 16})
    info = train_generator(cfg, tmp_path / "gan")
    assert info["channels"] == 3
    model, classes, _ = load_generator(tmp_path / "gan", "cpu")
    assert model.sample(torch.tensor([0, 1]), seed=0).shape == (2, 3, 16, 16)
    write_samples(tmp_path / "gan", 6, tmp_path / "samples", device="cpu")
    for cls in classes:
        with Image.open(next((tmp_path / "samples" / cls).glob("*.png"))) as img:
            assert img.mode == "RGB"
    images, labels, _ = read_image_folder(tmp_path / "samples", 16, classes, channels=3)
    assert images.shape == (12, 3, 16, 16) and sorted(set(labels.tolist())) == [0, 1]
    with pytest.raises(MedaugError, match="images are colour but the real data is gray"):
        read_image_folder(tmp_path / "samples", 16, classes, channels=1)
    result = evaluate(hue, tmp_path / "samples", tmp_path / "quality", size=16, epochs=1, kid_subsets=5, device="cpu")
    assert np.isfinite(result["all"]["fid"]) and result["tstr"]["accuracy"] is not None
    assert (tmp_path / "quality" / "contact_red.png").is_file()

    from medaug.generative.diffusion import Diffusion

    diffusion = Diffusion(2, 16, 4, torch.device("cpu"), {"channels": [8, 16], "attention_levels": [False, False],
                                                          "num_head_channels": 8, "norm_num_groups": 4}, channels=3)
    assert torch.isfinite(diffusion.train_step(torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1]))["loss"])
    assert diffusion.sample(torch.tensor([0, 1]), seed=0, steps=2).shape == (2, 3, 16, 16)


def test_bench_and_plan_check_run_colour_images():
    from medaug.bench import run_bench

    report = run_bench(["none", "apga"], TrainConfig(data="-", size=32, progress=False), {}, batch=2, warmup=1, steps=1,
                       windows=1, channels=3)
    assert report["channels"] == 3 and [m["method"] for m in report["methods"]] == ["none", "apga"]


def test_api_context_takes_colour_images():
    import medaug.methods as mm
    from medaug.models.classifiers import create_classifier

    net = create_classifier("tiny", 3, 2)
    ctx = mm.context(net, torch.optim.SGD(net.parameters(), 0.1), num_classes=2, size=16, epochs=1, channels=3)
    method = mm.create("classical")
    method.setup(ctx)
    logs = method.train_step(ctx, torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1]))
    assert torch.isfinite(logs["loss"]) and ctx.in_channels == 3
    with pytest.raises(MedaugError, match="channels 2"):
        mm.context(net, torch.optim.SGD(net.parameters(), 0.1), num_classes=2, size=16, epochs=1, channels=2)


def test_colour_ops_only_on_colour_images():
    from medaug.context import Context
    from medaug.methods import create_method
    from medaug.models.classifiers import create_classifier

    def ctx(channels):
        net = create_classifier("tiny", channels, 2)
        return Context(net, torch.optim.SGD(net.parameters(), 0.1), torch.device("cpu"), TrainConfig(data="x", size=16), 2,
                       torch.amp.GradScaler("cpu", enabled=False), channels=channels)

    def ops(method) -> set[str]:  # kornia's operation classes inside the method's augmentation
        return {type(m).__name__ for m in method.augment.modules()}

    for name in ("randaugment", "trivialaugment"):
        gray, colour = create_method(name), create_method(name)
        gray.setup(ctx(1))
        colour.setup(ctx(3))
        assert "Saturate" not in ops(gray) and "Saturate" in ops(colour), name  # kornia's "color" op
    classical = create_method("classical", {"p": 1.0, "saturation": 0.9, "hue": 0.0, "hflip": 0.0, "degrees": 0.0,
                                            "translate": 0.0, "scale": 0.0, "brightness": 0.0, "contrast": 0.0,
                                            "gamma": 0.0, "noise_std": 0.0})
    classical.setup(ctx(3))
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    spread = lambda t: (t.amax(1) - t.amin(1)).mean()  # noqa: E731 - mean saturation-like spread
    assert not torch.allclose(spread(classical.apply(x)), spread(x), atol=1e-3)  # the saturation jitter acts
    gray = create_method("classical")
    gray.setup(ctx(1))
    assert "ColorJitter" in ops(classical) and "ColorJitter" not in ops(gray)
    assert gray.apply(torch.rand(4, 1, 16, 16)).shape == (4, 1, 16, 16)


def test_figures_show_colour(tmp_path):
    from medaug.figures import mask_history_grid, mask_rows
    from medaug.generative.quality import contact_sheet, image_grid

    images, _ = hue_arrays(4, 16, seed=0)
    images = images.transpose(0, 3, 1, 2)  # [N, 3, S, S], the cache's layout
    keep = np.ones((4, 16, 16), np.uint8)
    soft = np.full((2, 4, 16, 16), 0.5, np.float32)  # noise masks (PGNM): the image as the classifier saw it
    mask_history_grid(soft, images, tmp_path / "history.png")
    mask_rows(images, {"none (image)": None, "m": keep}, None, tmp_path / "rows.png")
    image_grid(images.reshape(2, 2, 3, 16, 16), tmp_path / "grid.png", row_names=["a", "b"])
    contact_sheet(images, images[:2], tmp_path / "sheet.png", cols=2)
    for name in ("history", "rows", "grid", "sheet"):
        with Image.open(tmp_path / f"{name}.png") as img:
            pix = np.asarray(img.convert("RGB")).astype(int)
        assert (np.abs(pix[..., 1] - pix[..., 0]) > 15).mean() > 0.002, name  # green or red blobs, not gray
