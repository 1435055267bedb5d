"""Every registered method and every registered classifier, as timm tests its registry: each builds,
takes one step on a tiny CPU batch of gray (C = 1) and of colour (C = 3) images and gives the
documented shapes; classifier metadata names real layers. A new entry is covered without editing this
file (a few seconds in total)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medaug.config import TrainConfig
from medaug.context import Context
from medaug.methods import METHODS, create_method
from medaug.models.classifiers import CLASSIFIERS, classifier_info, create_classifier

B, SIZE, K = 4, 32, 2


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[int, Path]:
    """`medaug gen sample`-style folders (root/<class>/*.png) for the `generative` method: gray (1) and RGB (3)."""
    from PIL import Image

    out = {}
    for channels in (1, 3):
        root = tmp_path_factory.mktemp(f"samples{channels}")
        rng = np.random.default_rng(0)
        for cls in ("0", "1"):
            (root / cls).mkdir()
            for i in range(3):
                shape = (SIZE, SIZE) if channels == 1 else (SIZE, SIZE, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")
        out[channels] = root
    return out


def method_options(name: str, samples: Path) -> dict:
    return {"samples": str(samples)} if name == "generative" else {}


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_takes_a_step(name, channels, samples):
    torch.manual_seed(0)
    net = create_classifier("tiny", channels, K)
    cfg = TrainConfig(data="x", size=SIZE, model="tiny", method=name)  # in_channels 0: the images' channels
    images = torch.randint(0, 256, (8, channels, SIZE, SIZE), dtype=torch.uint8).numpy()
    ctx = Context(net, torch.optim.SGD(net.parameters(), 0.1), torch.device("cpu"), cfg, K,
                  torch.amp.GradScaler("cpu", enabled=False), extras={"train_images": images}, channels=channels)
    method = create_method(name, method_options(name, samples[channels]))
    method.setup(ctx)
    before = [p.detach().clone() for p in net.parameters()]
    x, y = torch.rand(B, channels, SIZE, SIZE), torch.tensor([0, 1, 0, 1])
    net.train()
    logs = method.train_step(ctx, x, y)
    assert logs and all(torch.as_tensor(v).numel() == 1 and torch.isfinite(torch.as_tensor(v, dtype=torch.float)) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters())), "the step did not update the classifier"
    method.epoch_end(ctx)
    net.eval()
    with torch.no_grad():
        assert method.predict(ctx, x).shape == (B, K)
    masks = method.masks(ctx, x)
    if masks is not None:  # one mask per image, broadcast over its channels
        assert masks.shape == (B, 1, SIZE, SIZE) and torch.allclose(masks, masks.round(), atol=1e-5)  # {0, 1} (straight-through: up to rounding)
    soft = method.saliency(ctx, x)
    assert soft is None or soft.shape == (B, 1, SIZE, SIZE)
    again = create_method(name, method_options(name, samples[channels]))
    again.setup(ctx)
    again.load_state_dict(method.state_dict())  # its checkpoint loads back, as on resume


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_every_classifier_builds_steps_and_names_its_layers(name):
    torch.manual_seed(0)
    info = classifier_info(name)
    net = create_classifier(name, 3, K)
    modules = dict(net.named_modules())
    assert isinstance(modules[info.head], torch.nn.Linear) and modules[info.head].out_features == K
    cam = {}
    modules[info.cam].register_forward_hook(lambda m, i, o: cam.update(shape=tuple(o.shape)))
    x = torch.rand(2, 3, SIZE, SIZE)
    logits = net.train()(x)
    assert logits.shape == (2, K) and len(cam["shape"]) == 4 and cam["shape"][0] == 2  # a feature map [B, C, h, w]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert modules[info.head].weight.grad is not None
    conv1 = getattr(net, "conv1", None)
    if info.small_stem:
        assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    elif conv1 is not None:
        assert conv1.stride == (2, 2)


def test_unknown_classifier_info_is_a_clear_error():
    from medaug.errors import MedaugError

    with pytest.raises(MedaugError, match="unknown model 'nope': choose one of"):
        classifier_info("nope")


@pytest.mark.parametrize("stored", ["best.pt", "metrics.json", "head layer"])
def test_run_class_count_is_read_not_guessed(tmp_path, stored):
    """The quality extractor builds a run's classifier with the class count stored in best.pt; files
    written before it was stored load through metrics.json's classes, or else the registered head."""
    from medaug.generative.quality import load_run_classifier

    net = create_classifier("tiny", 1, 3)
    (tmp_path / "config.toml").write_text('[train]\nmodel = "tiny"\nin_channels = 1\n')
    ckpt = {"model": net.state_dict(), "epoch": 0}
    if stored == "best.pt":
        ckpt["num_classes"] = 3
    elif stored == "metrics.json":
        (tmp_path / "metrics.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    torch.save(ckpt, tmp_path / "best.pt")
    model, cfg = load_run_classifier(tmp_path, tmp_path / "best.pt", torch.device("cpu"))
    assert model(torch.rand(2, 1, SIZE, SIZE)).shape == (2, 3) and cfg["model"] == "tiny"
