"""APGA's aiding-mask rule: 'area' keeps the policy's top mean(P) fraction of pixels (learn), 'threshold' 1[P > 0.5]."""

from __future__ import annotations

import torch

from medaug.methods.apga import APGA, top_area_mask


def test_area_rule_keeps_the_mean_p_fraction_of_highest_pixels():
    torch.manual_seed(0)
    p = torch.rand(6, 1, 8, 8) * torch.linspace(0.05, 0.9, 6).view(-1, 1, 1, 1)  # mean P from ~0.025 to ~0.45
    keep = top_area_mask(p)
    kept = keep.flatten(1).sum(1)
    assert torch.equal(kept, (p.flatten(1).mean(1) * 64).round().clamp(min=1))
    for i in range(6):  # every kept pixel has P at least that of every erased one
        assert p[i][keep[i] == 1].min() >= p[i][keep[i] == 0].max()
    # an all-low P (every pixel below 0.5) still keeps its most useful pixels; the threshold keeps none
    low = torch.linspace(0.1, 0.4, 16).view(1, 1, 4, 4)  # mean 0.25: the 4 highest pixels
    assert torch.equal(top_area_mask(low).flatten()[-4:], torch.ones(4)) and top_area_mask(low).sum() == 4
    assert (low > 0.5).sum() == 0


def test_learn_preset_uses_the_area_rule_and_paper_code_keep_the_threshold():
    assert APGA().opts.aid_rule == "area"
    assert APGA(preset="paper").opts.aid_rule == "threshold" and APGA(preset="code").opts.aid_rule == "threshold"
    p = torch.linspace(0.55, 0.95, 16).view(1, 1, 4, 4)  # every pixel above 0.5, mean 0.75
    assert APGA(preset="paper").aiding(p).sum() == 16  # the threshold keeps everything (a 'full' collapse)
    assert APGA().aiding(p).sum() == 12  # the area rule keeps the 75% most useful pixels
