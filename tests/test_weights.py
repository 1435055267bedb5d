"""Local pretrained weights: torchvision ImageNet files into the MONAI networks, medaug/MONAI/safetensors files, unsafe files refused.

torchvision is not importable beside this torch, so the files are written with torchvision's key
names and shapes (checked literally below) and random values.
"""

from __future__ import annotations

import re

import pytest
import torch

from medaug.errors import MedaugError
from medaug.models.classifiers import create_classifier


def torchvision_state(name: str, old_style: bool = False) -> dict[str, torch.Tensor]:
    """A state dict named as torchvision's ``name`` (3 input channels, 1000 classes), random values."""
    model = create_classifier(name, in_channels=3, num_classes=1000)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and old_style:
            continue  # the 2017 .pth files predate this buffer
        if key.endswith("downsample.0.bias"):
            continue  # torchvision's shortcut convolution has no bias
        sep = "." if old_style else ""
        key = re.sub(r"\.layers\.(norm|relu|conv)([12])\.", lambda m: f".{m[1]}{sep}{m[2]}.", key)
        key = key.replace("class_layers.out.", "classifier.")
        if key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = 0.1 * torch.randn(value.shape, generator=gen) if value.is_floating_point() else value.clone()
    return out


@pytest.mark.parametrize("old_style", [False, True])
def test_densenet121_from_torchvision(tmp_path, old_style):
    state = torchvision_state("densenet121", old_style)
    layer = "features.denseblock1.denselayer1.norm.1.weight" if old_style else "features.denseblock1.denselayer1.norm1.weight"
    assert layer in state and tuple(state["classifier.weight"].shape) == (1000, 1024)
    assert tuple(state["features.conv0.weight"].shape) == (64, 3, 7, 7)
    torch.save(state, tmp_path / "densenet121-a639ec97.pth")
    model = create_classifier("densenet121", in_channels=1, num_classes=2, pretrained=tmp_path / "densenet121-a639ec97.pth")
    own = model.state_dict()
    assert torch.equal(own["features.denseblock1.denselayer1.layers.norm1.weight"], state[layer])
    deep = "features.denseblock4.denselayer16.conv.2.weight" if old_style else "features.denseblock4.denselayer16.conv2.weight"
    assert torch.equal(own["features.denseblock4.denselayer16.layers.conv2.weight"], state[deep])
    assert torch.equal(own["features.norm5.running_var"], state["features.norm5.running_var"])
    assert torch.allclose(own["features.conv0.weight"], state["features.conv0.weight"].sum(1, keepdim=True))
    assert tuple(own["class_layers.out.weight"].shape) == (2, 1024)  # ImageNet head replaced
    model.eval()
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 2)


def test_resnet18_from_torchvision_is_the_same_function(tmp_path):
    state = torchvision_state("resnet18")
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7) and tuple(state["fc.weight"].shape) == (1000, 512)
    assert "layer2.0.downsample.0.weight" in state and "layer2.0.downsample.0.bias" not in state
    torch.save(state, tmp_path / "resnet18.pth")
    gray = create_classifier("resnet18", in_channels=1, num_classes=1000, pretrained=tmp_path / "resnet18.pth").eval()
    rgb = create_classifier("resnet18", in_channels=3, num_classes=1000, pretrained=tmp_path / "resnet18.pth").eval()
    assert torch.equal(rgb.state_dict()["layer2.0.downsample.0.bias"], torch.zeros(128))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():  # the summed stem on gray x equals the RGB network on (x, x, x)
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)


def test_wrong_architecture_names_the_keys(tmp_path):
    torch.save(torchvision_state("resnet18"), tmp_path / "resnet18.pth")
    with pytest.raises(MedaugError, match=r"does not fit model 'densenet121': missing features\.conv0\.weight.*unexpected conv1\.weight"):
        create_classifier("densenet121", in_channels=1, num_classes=2, pretrained=tmp_path / "resnet18.pth")
    with pytest.raises(MedaugError, match="shape mismatch layer1.0.conv1.weight"):  # resnet18 blocks into resnet50
        create_classifier("resnet50", in_channels=1, num_classes=2, pretrained=tmp_path / "resnet18.pth")


class NotWeights:  # an arbitrary object: unpickling it would run code from the file
    pass


def test_medaug_safetensors_and_unsafe_files(tmp_path):
    from safetensors.torch import save_file

    src = create_classifier("tiny", in_channels=1, num_classes=3)
    torch.save({"model": src.state_dict(), "method": {}, "epoch": 4}, tmp_path / "best.pt")  # a medaug best.pt
    torch.save({"state_dict": src.state_dict()}, tmp_path / "lightning.ckpt")
    save_file(src.state_dict(), str(tmp_path / "tiny.safetensors"))
    for name in ("best.pt", "lightning.ckpt", "tiny.safetensors"):
        model = create_classifier("tiny", in_channels=1, num_classes=3, pretrained=tmp_path / name)
        assert all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items()), name
    # another number of classes: the head starts fresh, the rest is loaded
    five = create_classifier("tiny", in_channels=1, num_classes=5, pretrained=tmp_path / "best.pt")
    assert tuple(five.state_dict()["head.3.weight"].shape) == (5, 64)
    assert torch.equal(five.state_dict()["features.0.0.weight"], src.state_dict()["features.0.0.weight"])
    torch.save({"model": NotWeights()}, tmp_path / "evil.pt")
    with pytest.raises(MedaugError, match="not a loadable weights file"):
        create_classifier("tiny", pretrained=tmp_path / "evil.pt")
    with pytest.raises(MedaugError, match="file not found"):
        create_classifier("tiny", pretrained=tmp_path / "missing.pt")
