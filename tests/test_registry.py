"""Model folders (safetensors + JSON): save, load, and clear errors for files that don't fit."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from musiclens.core.errors import MusicLensError
from musiclens.core.features import logmel_frontend
from musiclens.core.models import registry


@registry.register_family("test_tiny")
def _tiny(width: int = 4, n_labels: int = 3):
    net = nn.Sequential(
        nn.Conv2d(1, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_labels)
    )
    layers = [
        registry.LayerInfo("conv", "0", "front end", "conv"),
        registry.LayerInfo("output", "4", "back end", "dense"),
    ]
    return net, layers


def tiny_model(width=4) -> registry.LoadedModel:
    arch = {"family": "test_tiny", "params": {"width": width, "n_labels": 3}}
    net, layers = registry.build(arch)
    return registry.LoadedModel(
        "tiny",
        net,
        logmel_frontend(n_mels=16),
        ["a", "b", "c"],
        20,
        False,
        {l.name: l for l in layers},
        arch,
        {"note": "test"},
    )


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny_model()
    registry.save(model, tmp_path / "m")
    loaded = registry.load(tmp_path / "m")
    x = torch.randn(2, 1, 16, 20)
    model.net.eval()
    assert torch.equal(loaded.net(x), model.net(x))
    assert loaded.front_end == model.front_end and loaded.labels == ["a", "b", "c"]
    assert not loaded.net.training
    p = loaded.predict(x)
    assert torch.allclose(p.sum(dim=1), torch.ones(2))
    assert loaded.module("conv") is loaded.net[0]
    with pytest.raises(MusicLensError, match="no layer 'nope'"):
        loaded.module("nope")


def test_weights_that_do_not_fit_say_why(tmp_path):
    registry.save(tiny_model(width=8), tmp_path / "wide")
    meta = json.loads((tmp_path / "wide/model.json").read_text())
    meta["architecture"]["params"]["width"] = 4
    (tmp_path / "wide/model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match=r"don't fit the model.*wrong shape.*0\.weight"):
        registry.load(tmp_path / "wide")


def test_not_safetensors(tmp_path):
    registry.save(tiny_model(), tmp_path / "m")
    (tmp_path / "m/weights.safetensors").write_bytes(b"\x80\x04 pickle? no thanks")
    with pytest.raises(MusicLensError, match="not a readable safetensors"):
        registry.load(tmp_path / "m")


def test_bad_folders(tmp_path):
    with pytest.raises(MusicLensError, match="no model named"):
        registry.load("certainly-not-a-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MusicLensError, match=r"model\.json is missing"):
        registry.load(tmp_path / "empty")
    registry.save(tiny_model(), tmp_path / "m")
    (tmp_path / "m/model.json").write_text("{not json")
    with pytest.raises(MusicLensError, match="not valid JSON"):
        registry.load(tmp_path / "m")
    (tmp_path / "m/model.json").write_text(json.dumps({"format": "musiclens-model/1"}))
    with pytest.raises(MusicLensError, match="'architecture' is missing"):
        registry.load(tmp_path / "m")
    (tmp_path / "m/model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(MusicLensError, match="format"):
        registry.load(tmp_path / "m")


def test_unknown_family(tmp_path):
    with pytest.raises(MusicLensError, match="unknown model family"):
        registry.build({"family": "no-such-family"})
