"""torchvision ImageNet state dicts into medaug's MONAI networks, checked against torchvision's own definition.

torchvision is not importable beside this torch. Unlike ``tests/test_weights.py`` (which derives the
torchvision names from the MONAI net), the files here are built from torchvision's architecture
alone (``torchvision/models/densenet.py`` and ``resnet.py``: module names, channel counts, no
conv biases), and a functional re-implementation of torchvision's ``forward`` on that state dict
is the reference the loaded MONAI network must reproduce. Values are random; nothing is downloaded.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from medaug.errors import MedaugError
from medaug.models.classifiers import create_classifier

DENSENETS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32)}  # growth 32, 64 init features, bn_size 4
RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _bn(shapes: dict, name: str, c: int, tracked: bool) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{p}"] = (c,)
    if tracked:
        shapes[f"{name}.num_batches_tracked"] = ()


def torchvision_shapes(arch: str, old_style: bool = False, tracked: bool = True, in_ch: int = 3) -> dict[str, tuple]:
    """Key -> shape of torchvision's ``arch`` (1000 classes), in torchvision's module order."""
    s: dict[str, tuple] = {}
    if arch in DENSENETS:
        growth, bn_size, nf = 32, 4, 64
        s["features.conv0.weight"] = (nf, in_ch, 7, 7)
        _bn(s, "features.norm0", nf, tracked)
        blocks = DENSENETS[arch]
        for b, layers in enumerate(blocks, 1):
            for i in range(1, layers + 1):
                p, dot = f"features.denseblock{b}.denselayer{i}", "." if old_style else ""
                cin = nf + (i - 1) * growth
                _bn(s, f"{p}.norm{dot}1", cin, tracked)
                s[f"{p}.conv{dot}1.weight"] = (bn_size * growth, cin, 1, 1)
                _bn(s, f"{p}.norm{dot}2", bn_size * growth, tracked)
                s[f"{p}.conv{dot}2.weight"] = (growth, bn_size * growth, 3, 3)
            nf += layers * growth
            if b < len(blocks):
                _bn(s, f"features.transition{b}.norm", nf, tracked)
                s[f"features.transition{b}.conv.weight"] = (nf // 2, nf, 1, 1)
                nf //= 2
        _bn(s, "features.norm5", nf, tracked)
        s["classifier.weight"], s["classifier.bias"] = (1000, nf), (1000,)
        return s
    kind, counts = RESNETS[arch]
    expansion = 4 if kind == "bottleneck" else 1
    s["conv1.weight"] = (64, in_ch, 7, 7)
    _bn(s, "bn1", 64, tracked)
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), counts), 1):
        for j in range(n):
            p, stride = f"layer{li}.{j}", (2 if li > 1 and j == 0 else 1)
            if kind == "basic":
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            else:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for k, (cout, cin, ks) in enumerate(convs, 1):
                s[f"{p}.conv{k}.weight"] = (cout, cin, ks, ks)
                _bn(s, f"{p}.bn{k}", cout, tracked)
            if j == 0 and (stride != 1 or inplanes != planes * expansion):
                s[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                _bn(s, f"{p}.downsample.1", planes * expansion, tracked)
            inplanes = planes * expansion
    s["fc.weight"], s["fc.bias"] = (1000, 512 * expansion), (1000,)
    return s


def torchvision_state(arch: str, seed: int = 0, **kw) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in torchvision_shapes(arch, **kw).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            out[key] = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("weight") and len(shape) == 4:  # He-scaled, so deep nets stay in range
            out[key] = torch.randn(shape, generator=gen) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            out[key] = (1.0 if key.endswith("weight") and len(shape) == 1 else 0.0) + 0.1 * torch.randn(shape, generator=gen)
    return out


# torchvision name -> MONAI name, the test's own statement of the mapping (ResNet names are the same)
TO_MONAI = [(r"(denselayer\d+)\.(norm|relu|conv)\.?([12])\.", r"\1.layers.\2\3."), (r"^classifier\.", "class_layers.out.")]


def monai_name(key: str) -> str:
    for pattern, repl in TO_MONAI:
        key = re.sub(pattern, repl, key)
    return key


def torchvision_forward(arch: str, sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's eval-mode ``forward`` of ``arch``, written with torch.nn.functional on its state dict."""
    sd = {re.sub(r"(denselayer\d+\.(?:norm|conv))\.([12])\.", r"\1\2.", k): v for k, v in sd.items()}

    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)

    if arch in DENSENETS:
        blocks = DENSENETS[arch]
        x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["features.conv0.weight"], stride=2, padding=3), "features.norm0")), 3, 2, 1)
        for b, layers in enumerate(blocks, 1):
            for i in range(1, layers + 1):
                p = f"features.denseblock{b}.denselayer{i}"
                y = F.conv2d(F.relu(bn(x, p + ".norm1")), sd[p + ".conv1.weight"])
                y = F.conv2d(F.relu(bn(y, p + ".norm2")), sd[p + ".conv2.weight"], padding=1)
                x = torch.cat([x, y], 1)
            if b < len(blocks):
                p = f"features.transition{b}"
                x = F.avg_pool2d(F.conv2d(F.relu(bn(x, p + ".norm")), sd[p + ".conv.weight"]), 2, 2)
        x = F.adaptive_avg_pool2d(F.relu(bn(x, "features.norm5")), 1).flatten(1)
        return F.linear(x, sd["classifier.weight"], sd["classifier.bias"])
    kind, counts = RESNETS[arch]
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for li, n in enumerate(counts, 1):
        for j in range(n):
            p, stride = f"layer{li}.{j}", (2 if li > 1 and j == 0 else 1)
            nconv = 2 if kind == "basic" else 3
            out = x
            for k in range(1, nconv + 1):
                w = sd[f"{p}.conv{k}.weight"]
                s = stride if (k == 1 and kind == "basic") or (k == 2 and kind == "bottleneck") else 1  # v1.5: stride on the 3x3
                out = bn(F.conv2d(out, w, stride=s, padding=w.shape[-1] // 2), f"{p}.bn{k}")
                if k < nconv:
                    out = F.relu(out)
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + identity)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


def assert_same_function(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to float32 summation order; random ResNet weights give logits in the thousands, hence the scale."""
    scale = float(ref.abs().max())
    assert scale > 1e-3  # not a degenerate comparison
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * scale)


def test_known_torchvision_names_and_shapes():
    d121 = torchvision_shapes("densenet121")
    assert d121["features.conv0.weight"] == (64, 3, 7, 7) and d121["classifier.weight"] == (1000, 1024)
    assert d121["features.denseblock1.denselayer1.norm1.weight"] == (64,) and "features.norm5.running_var" in d121
    assert d121["features.transition3.conv.weight"] == (512, 1024, 1, 1)
    assert torchvision_shapes("densenet169")["classifier.weight"] == (1000, 1664)
    assert "features.denseblock1.denselayer1.norm.1.weight" in torchvision_shapes("densenet121", old_style=True)
    r18, r50 = torchvision_shapes("resnet18"), torchvision_shapes("resnet50")
    assert r18["conv1.weight"] == (64, 3, 7, 7) and r18["fc.weight"] == (1000, 512) and r50["fc.weight"] == (1000, 2048)
    assert "layer1.0.downsample.0.weight" not in r18 and r50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert r50["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    # tensors in torchvision's files besides num_batches_tracked (122 and 320 keys with it)
    assert len([k for k in r18 if not k.endswith("num_batches_tracked")]) == 102
    assert len([k for k in r50 if not k.endswith("num_batches_tracked")]) == 267


@pytest.mark.parametrize("arch", ["densenet121", "resnet18", "resnet50"])
def test_loaded_monai_net_computes_torchvisions_function(tmp_path, arch):
    state = torchvision_state(arch)
    torch.save(state, tmp_path / f"{arch}.pth")
    model = create_classifier(arch, in_channels=3, num_classes=1000, pretrained=tmp_path / f"{arch}.pth").eval()
    own = model.state_dict()
    for key, value in state.items():  # every torchvision tensor lands, unchanged, under its MONAI name
        assert torch.equal(own[monai_name(key)], value), key
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_same_function(model(x), torchvision_forward(arch, state, x))
        gray = create_classifier(arch, in_channels=1, num_classes=1000, pretrained=tmp_path / f"{arch}.pth").eval()
        g = x[:, :1]  # summed RGB kernels on a gray image == the RGB network on (g, g, g)
        assert_same_function(gray(g), torchvision_forward(arch, state, g.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("old_style", [False, True], ids=["norm1", "norm.1"])
def test_densenet121_gray_two_classes(tmp_path, old_style):
    state = torchvision_state("densenet121", old_style=old_style, tracked=not old_style)
    assert ("features.denseblock1.denselayer1.norm.1.weight" in state) == old_style
    torch.save(state, tmp_path / "densenet121-a639ec97.pth")
    model = create_classifier("densenet121", in_channels=1, num_classes=2, pretrained=tmp_path / "densenet121-a639ec97.pth")
    own = model.state_dict()
    dot = "." if old_style else ""
    for src, dst in [
        (f"features.denseblock1.denselayer1.norm{dot}1.weight", "features.denseblock1.denselayer1.layers.norm1.weight"),
        (f"features.denseblock2.denselayer7.conv{dot}1.weight", "features.denseblock2.denselayer7.layers.conv1.weight"),
        (f"features.denseblock4.denselayer16.norm{dot}2.running_var", "features.denseblock4.denselayer16.layers.norm2.running_var"),
        ("features.transition2.conv.weight", "features.transition2.conv.weight"),
        ("features.norm5.bias", "features.norm5.bias"),
    ]:
        assert torch.equal(own[dst], state[src]), src
    assert own["features.conv0.weight"].shape == (64, 1, 7, 7)
    assert torch.allclose(own["features.conv0.weight"], state["features.conv0.weight"].sum(1, keepdim=True))
    assert own["class_layers.out.weight"].shape == (2, 1024) and own["class_layers.out.bias"].shape == (2,)
    assert not torch.equal(own["class_layers.out.weight"], state["classifier.weight"][:2])  # fresh, not a slice
    assert model.eval()(torch.rand(2, 1, 64, 64)).shape == (2, 2)


def test_densenet169_and_resnet50_gray_two_classes(tmp_path):
    for arch, head, width in [("densenet169", "class_layers.out", 1664), ("resnet50", "fc", 2048)]:
        state = torchvision_state(arch, tracked=False)  # a file from before num_batches_tracked
        torch.save(state, tmp_path / f"{arch}.pth")
        model = create_classifier(arch, in_channels=1, num_classes=2, pretrained=tmp_path / f"{arch}.pth").eval()
        own = model.state_dict()
        first = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
        assert torch.allclose(own[first], state[first].sum(1, keepdim=True)), arch
        last_conv = [k for k in state if state[k].ndim == 4][-1]
        assert torch.equal(own[monai_name(last_conv)], state[last_conv]), arch
        assert own[f"{head}.weight"].shape == (2, width)
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 2)


def test_one_channel_checkpoint_into_rgb_model_repeats_over_three(tmp_path):
    state = torchvision_state("resnet18", in_ch=1)
    torch.save(state, tmp_path / "gray-resnet18.pth")
    model = create_classifier("resnet18", in_channels=3, num_classes=1000, pretrained=tmp_path / "gray-resnet18.pth").eval()
    assert torch.allclose(model.state_dict()["conv1.weight"], state["conv1.weight"].repeat(1, 3, 1, 1) / 3)
    g = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # (g, g, g) through the repeated/3 stem == g through the 1-channel stem
        assert_same_function(model(g.repeat(1, 3, 1, 1)), torchvision_forward("resnet18", state, g))


def test_wrong_architecture_is_a_one_line_error_naming_keys(tmp_path):
    torch.save(torchvision_state("resnet18"), tmp_path / "resnet18-f37072fd.pth")
    torch.save(torchvision_state("densenet121"), tmp_path / "densenet121.pth")
    cases = [
        ("densenet121", "resnet18-f37072fd.pth", r"missing features\.conv0\.weight.*unexpected conv1\.weight"),
        ("resnet18", "densenet121.pth", r"missing conv1\.weight.*unexpected features\.conv0\.weight"),
        ("densenet169", "densenet121.pth", r"missing features\.denseblock3\.denselayer25\..*shape mismatch features\.transition3"),
        ("resnet50", "resnet18-f37072fd.pth", r"missing .*layer1\.0\.conv3\.weight"),
    ]
    for arch, name, pattern in cases:
        with pytest.raises(MedaugError, match=f"does not fit model '{arch}': " + pattern) as err:
            create_classifier(arch, in_channels=1, num_classes=2, pretrained=tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"--pretrained {tmp_path / name}"), message
        assert "more)" in message  # long key lists are cut, with a count
