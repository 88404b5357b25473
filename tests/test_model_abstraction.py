"""One model abstraction for every input kind, one DEFAULT_MODEL, one patch-length definition,
one device rule (issue 14, items 3, 6 and 7)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from midi_tunes import make_folder
from musiclens.core import device as device_mod
from musiclens.core import resources
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.models import registry
from musiclens.core.models.inputs import NoteSpec, Waveform, input_kind
from musiclens.core.models.registry import LayerInfo, LoadedModel

PACKAGE = Path(__file__).resolve().parents[1] / "musiclens"
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none on this machine); runs where one exists")


# ------------------------------------------------------------------ one class, every kind
@pytest.fixture(scope="module")
def audio_model():
    return registry.load(resources.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def midi_model():
    return registry.load(resources.DEFAULT_MIDI_MODEL)


def test_registry_loads_audio_and_midi_models_into_one_class(audio_model, midi_model):
    assert type(audio_model) is type(midi_model) is LoadedModel
    assert audio_model.kind == "audio" and isinstance(audio_model.input, FrontEnd)
    assert audio_model.front_end is audio_model.input
    assert midi_model.kind == "midi" and isinstance(midi_model.input, NoteSpec)
    assert midi_model.spec is midi_model.input and midi_model.patch_frames == midi_model.spec.n_notes == 100
    assert midi_model.labels == ["bach", "folk", "palestrina"] and not midi_model.multilabel
    assert audio_model.multilabel and len(audio_model.labels) == 50
    for m in (audio_model, midi_model):
        assert m.device == torch.device("cpu") and m.source is not None and m.layers
    # the kind-specific accessors fail with a message that says what the model reads
    with pytest.raises(MusicLensError, match="is a midi model: it has no audio front end"):
        _ = midi_model.front_end
    with pytest.raises(MusicLensError, match="not a MIDI model"):
        _ = audio_model.spec
    with pytest.raises(MusicLensError, match="MIDI notes"):
        _ = midi_model.patch_seconds
    # the same label lookup and the same prediction call for both kinds
    assert midi_model.label_index("FOLK") == 1 and audio_model.label_index("rock") == 0
    x, mask = midi_model.tensors(np.tile([[60.0, 0.25, 0.25]], (100, 1)), np.ones(100, bool))
    p = midi_model.predict(x, mask)
    assert p.shape == (1, 3) and float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    fe = audio_model.front_end
    xa = torch.zeros(1, fe.channels, fe.n_bins, audio_model.patch_frames)
    assert audio_model.predict(xa).shape == (1, 50)


def test_registry_load_kind_filter_and_midi_wrappers(midi_model):
    from musiclens.core.models.midi_lstm import load_midi_model

    with pytest.raises(MusicLensError, match="is a midi model, not an audio model"):
        registry.load(resources.DEFAULT_MIDI_MODEL, kind="audio")
    with pytest.raises(MusicLensError, match="is a audio model, not a midi model"):
        registry.load(resources.DEFAULT_MODEL, kind="midi")
    again = load_midi_model()
    assert type(again) is LoadedModel and again.spec == midi_model.spec
    assert not hasattr(__import__("musiclens.core.models.midi_lstm", fromlist=["x"]), "LoadedMidiModel")


def test_dataclasses_replace_and_constructor_aliases(audio_model):
    copy = dataclasses.replace(audio_model, architecture={"family": "other"})
    assert type(copy) is LoadedModel and copy.input is audio_model.input and copy.net is audio_model.net
    assert copy.architecture == {"family": "other"} and copy.patch_frames == audio_model.patch_frames
    by_alias = LoadedModel("x", nn.Linear(2, 2), front_end=audio_model.front_end, labels=["a", "b"], patch_frames=10)
    assert by_alias.kind == "audio" and by_alias.patch_frames == 10
    with pytest.raises(ParameterError, match="exactly one input spec"):
        LoadedModel("x", nn.Linear(2, 2), labels=["a"], patch_frames=1)
    with pytest.raises(ParameterError, match="needs patch_frames"):
        LoadedModel("x", nn.Linear(2, 2), audio_model.front_end, ["a"])
    with pytest.raises(ParameterError, match="FrontEnd, a NoteSpec or a Waveform"):
        input_kind("logmel")


def test_a_midi_model_trained_by_the_midi_trainer_loads_through_the_registry(tmp_path):
    from musiclens.core.training.midi import train_on_folder

    root = make_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "tiny-midi"
    events = list(
        train_on_folder(
            root,
            out=out,
            config={"epochs": 2, "batch_size": 8, "device": "cpu"},
            model_params={"n_notes": 16, "short": "drop", "hidden": 8, "layers": 1},
        )
    )
    trained = events[-1].model
    meta = json.loads((out / "model.json").read_text())
    assert meta["input"] == "midi" and meta["note_features"]["n_notes"] == 16
    back = registry.load(out)
    assert type(back) is type(trained) is LoadedModel
    assert back.kind == "midi" and back.labels == ["high", "low"] and back.spec == trained.spec
    x, mask = back.tensors(np.tile([[76.0, 0.1, 0.1]], (16, 1)), np.ones(16, bool))
    torch.testing.assert_close(back.predict(x, mask), trained.predict(x, mask))
    # saved again through the one save(), it is the same folder format
    again = registry.load(registry.save(back, tmp_path / "again"))
    assert again.spec == back.spec and json.loads((tmp_path / "again" / "model.json").read_text())["input"] == "midi"


# ------------------------------------------------------------------ waveform input (ready for its families)
class _Energy(nn.Module):
    def __init__(self, n_labels: int = 2) -> None:
        super().__init__()
        self.head = nn.Linear(1, n_labels)

    def forward(self, x):  # (B, 1, S)
        return self.head(x.pow(2).mean(dim=-1))


@registry.register_family("test_waveform_energy")
def _build_energy(*, n_labels: int = 2):
    return _Energy(n_labels), [LayerInfo("output", "head", "back end", "output")]


def test_waveform_spec_saves_and_loads(tmp_path):
    spec = Waveform(sample_rate=8000, patch_samples=4000)
    assert spec.frames_to_samples(4000) == 4000 and spec.frames_to_seconds(4000) == 0.5
    assert spec.seconds_to_frames(0.5) == 4000 and spec.n_frames(123) == 123
    assert spec(torch.zeros(3, 4000)).shape == (3, 1, 4000)
    assert Waveform.from_dict(spec.to_dict()) == spec
    with pytest.raises(ParameterError):
        Waveform(sample_rate=0, patch_samples=10)
    m = LoadedModel(
        "wave",
        _build_energy()[0],
        spec,
        ["quiet", "loud"],
        layers={"output": LayerInfo("output", "head", "back end", "output")},
        architecture={"family": "test_waveform_energy", "params": {"n_labels": 2}},
    )
    assert m.kind == "waveform" and m.patch_frames == 4000 and m.patch_samples == 4000
    assert m.patch_seconds == 0.5 and m.sample_rate == 8000
    with pytest.raises(MusicLensError, match="waveform model: it has no audio front end"):
        _ = m.front_end
    back = registry.load(registry.save(m, tmp_path / "wave"))
    meta = json.loads((tmp_path / "wave" / "model.json").read_text())
    assert meta["input"] == "waveform" and meta["waveform"] == {"sample_rate": 8000, "patch_samples": 4000}
    assert back.kind == "waveform" and back.input == spec and back.labels == ["quiet", "loud"]
    y = torch.randn(2, 4000)
    torch.testing.assert_close(back.predict(back.input(y)), m.predict(m.input(y)))


# ------------------------------------------------------------------ one DEFAULT_MODEL
def _assignments(name: str) -> list[str]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                else []
            )
            for t in targets:
                if isinstance(t, ast.Name) and t.id == name:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


@pytest.mark.parametrize("name", ["DEFAULT_MODEL", "DEFAULT_MIDI_MODEL"])
def test_default_model_is_defined_once(name):
    assert _assignments(name) == [f"musiclens/core/resources.py:{_line_of(name)}"]


def _line_of(name: str) -> int:
    text = (PACKAGE / "core" / "resources.py").read_text().splitlines()
    return next(i for i, line in enumerate(text, 1) if line.startswith(f"{name} = "))


def test_the_window_and_the_cli_share_the_default_model():
    from musiclens.cli import _interpret_common, _model, kernels, layers, tag

    assert resources.DEFAULT_MODEL == "MSD_musicnn" and resources.DEFAULT_MIDI_MODEL == "midi_style_lstm"
    assert resources.DEFAULT_MODEL in resources.available_for("audio")
    assert resources.DEFAULT_MIDI_MODEL in resources.available_for("midi")
    for module in (_interpret_common, _model, kernels, layers, tag):
        assert module.DEFAULT_MODEL is resources.DEFAULT_MODEL
    parser = __import__("musiclens.cli", fromlist=["build_parser"]).build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in (
        "tag",
        "layers",
        "kernels",
        "activations",
        "cam",
        "saliency",
        "dream",
        "flip",
        "similarity",
        "sanity",
        "deconv",
        "auralise",
    ):
        options = {a.dest: a for a in sub[command]._actions}
        assert options["model"].default == resources.DEFAULT_MODEL, command
        assert options["device"].default == "auto" and tuple(options["device"].choices) == ("auto", "cpu", "cuda")


# ------------------------------------------------------------------ one patch-length definition
@pytest.mark.parametrize("name", resources.available_for("audio"))
def test_patch_length_conversions_agree_with_the_old_formulas(name):
    m = registry.load(name)
    fe, p = m.front_end, m.patch_frames
    # the four formulas the code used before, each in the places that used it
    old_patch_seconds = p * fe.hop / fe.sample_rate  # session, tagging, activations
    old_one_patch_seconds = ((p - 1) * fe.hop + 1) / fe.sample_rate  # CLI --duration default, dream sweep
    old_min_samples = (p - 1) * fe.hop  # tagging: shortest audio
    old_span = (p - 1) * fe.hop + fe.n_fft  # training: padded audio per patch
    assert m.patch_seconds == old_patch_seconds == fe.frames_to_seconds(p)
    assert m.patch_samples / m.sample_rate == old_one_patch_seconds
    assert fe.n_frames(m.patch_samples) == p
    assert fe.n_frames(old_min_samples) == p and fe.n_frames(old_min_samples - 1) == p - 1
    assert fe.replace(center=False).frames_to_samples(p) == old_span
    assert fe.replace(center=False).n_frames(old_span) == p
    for seconds in (0.5, 1.0, 2.992, 3.0, 29.1):  # the study's patch lengths (old: StudyArch.patch_frames)
        assert fe.seconds_to_frames(seconds) == fe.n_frames(int(round(seconds * fe.sample_rate)))
    assert fe.seconds_to_frames(m.patch_samples / m.sample_rate) == p  # (a patch's nominal seconds give p + 1)
    starts = fe.frames_to_seconds(np.arange(5) * p)
    np.testing.assert_array_equal(starts, np.arange(5) * p * fe.hop / fe.sample_rate)
    with pytest.raises(ParameterError):
        fe.seconds_to_frames(0)
    with pytest.raises(ParameterError):
        fe.frames_to_samples(0)


@pytest.mark.parametrize("name", resources.available_for("audio"))
def test_training_patches_use_the_one_definition(name):
    """The training data's patch spans (padded audio per patch, the audio under a stem
    segment) are the FrontEnd's conversions and equal the old formulas."""
    from musiclens.core.training.data import patches

    m = registry.load(name)
    fe, p = m.front_end, m.patch_frames
    ps = patches.PatchSet(
        "audio", fe, p, [], np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), []
    )
    assert ps.audio_span() == (p - 1) * fe.hop + fe.n_fft  # the old formula
    y = np.random.default_rng(0).standard_normal(8 * p * fe.hop).astype(np.float32)
    starts = [0, p, 3 * p + 5]
    old = [
        20
        * np.log10(
            max(float(np.sqrt(np.mean(np.square(y[s * fe.hop : (s + p - 1) * fe.hop + 1], dtype=np.float64)))), 1e-10)
        )
        for s in starts
    ]
    np.testing.assert_array_equal(patches._segment_db(y, fe, starts, p), old)


def test_taggram_patches_use_the_one_definition(audio_model):
    from musiclens.core.tagging import audio_to_patches, taggram

    fe = audio_model.front_end
    y = np.zeros(2 * audio_model.patch_frames * fe.hop, dtype=np.float32)  # 2 patches (2p + 1 frames)
    tg = taggram(audio_model, y)
    assert tg.patch_seconds == audio_model.patch_seconds and len(tg.probabilities) == 2
    assert audio_to_patches(audio_model, y[: (audio_model.patch_frames - 1) * fe.hop]).shape[0] == 1
    with pytest.raises(ParameterError, match=r"needs at least 2\.98 s"):
        audio_to_patches(audio_model, y[: (audio_model.patch_frames - 1) * fe.hop - 1])


# ------------------------------------------------------------------ devices
def test_resolve_device_words(monkeypatch):
    assert device_mod.resolve_device("cpu") == torch.device("cpu")
    assert device_mod.resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    assert device_mod.resolve_device(None) == device_mod.resolve_device("auto")
    assert device_mod.resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ParameterError, match="unknown device 'gpu0'; use auto, cpu or cuda"):
        device_mod.resolve_device("gpu0")
    with pytest.raises(ParameterError, match="not supported"):
        device_mod.resolve_device("meta")
    from musiclens.core.training import loop

    assert loop.resolve_device is device_mod.resolve_device  # training asks the same function


def test_cuda_on_a_machine_without_a_gpu_is_one_clear_error(monkeypatch, run_cli):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    with pytest.raises(MusicLensError, match="no GPU is available"):
        device_mod.resolve_device("cuda")
    assert device_mod.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(MusicLensError, match="no GPU is available"):
        registry.load(resources.DEFAULT_MIDI_MODEL, device="cuda")
    status, out, err = run_cli("kernels", "--device", "cuda", "--json")
    assert status == 2 and out == "" and err.count("\n") == 1 and "no GPU is available" in err


def test_to_moves_the_model_and_inputs_follow_it(midi_model):
    m = registry.load(resources.DEFAULT_MIDI_MODEL, device="cpu")
    assert m.to("cpu") is m and m.device == torch.device("cpu")
    x = m.tensor(np.zeros((2, 3)))
    assert x.device == m.device and x.dtype == torch.float32


def test_integrated_gradients_is_written_once(monkeypatch, midi_model, audio_model):
    """Audio and MIDI Integrated Gradients both take their path points from the one rule
    (paths.quadrature) and run paths.integrated_gradients, except where MusiCNN's linear
    front part is computed once per patch (integrated_gradients_split, same points)."""
    from musiclens.core.interpret import integrated_gradients_split, midi_saliency, paths, saliency

    calls = []
    real = paths.integrated_gradients

    def spy(score, x, baseline, **kw):
        calls.append((tuple(x.shape), kw.get("adaptive", False)))
        return real(score, x, baseline, **kw)

    monkeypatch.setattr(paths, "integrated_gradients", spy)
    rules = []
    real_rule = paths.quadrature

    def rule_spy(steps, method="gausslegendre"):
        rules.append((steps, method))
        return real_rule(steps, method)

    monkeypatch.setattr(paths, "quadrature", rule_spy)
    split_calls = []
    real_split = integrated_gradients_split.integrated_gradients

    def split_spy(net, score, x, baseline, *a, **kw):
        split_calls.append(tuple(x.shape))
        return real_split(net, score, x, baseline, *a, **kw)

    monkeypatch.setattr(integrated_gradients_split, "integrated_gradients", split_spy)
    x, mask = midi_model.tensors(np.tile([[67.0, 0.25, 0.25]], (100, 1)), np.ones(100, bool))
    r = midi_saliency.integrated_gradients(midi_model, x, mask, target=1, steps=256)
    assert float(r.delta[0]) <= 1e-2 * max(abs(float(r.output[0] - r.baseline_output[0])), 1e-6) + 1e-4
    fe = audio_model.front_end
    xa = torch.randn(1, fe.channels, fe.n_bins, audio_model.patch_frames)
    ra = saliency.integrated_gradients(audio_model, xa, target=0, steps=4)
    assert ra.attributions.shape == xa.shape
    shape = (1, fe.channels, fe.n_bins, audio_model.patch_frames)
    assert calls == [((1, 100, 3), True)]  # MIDI: the path integral of paths.py
    assert split_calls == [shape]  # MusiCNN: its front part once per patch
    assert (4, "gausslegendre") in rules  # ... at the points of the one rule
    with integrated_gradients_split.enabled(False):  # switched off, audio runs paths.py too
        saliency.integrated_gradients(audio_model, xa, target=0, steps=4)
    assert calls[-1] == (shape, False)


@needs_cuda
def test_the_default_model_runs_on_cuda_like_on_the_cpu():  # pragma: no cover - no GPU on the CI machines
    from musiclens.core.interpret import cam, saliency
    from musiclens.core.tagging import taggram

    cpu = registry.load(resources.DEFAULT_MODEL, device="cpu")
    gpu = registry.load(resources.DEFAULT_MODEL, device="cuda")
    assert gpu.device.type == "cuda"
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(cpu.patch_samples * 2)).astype(np.float32)
    t_cpu, t_gpu = taggram(cpu, y), taggram(gpu, y)
    np.testing.assert_allclose(t_gpu.probabilities, t_cpu.probabilities, atol=1e-4)
    fe = cpu.front_end
    x = fe(torch.from_numpy(y)[None])[..., : cpu.patch_frames]
    g_cpu = saliency.gradient(cpu, x, target=0)
    g_gpu = saliency.gradient(gpu, x, target=0)  # x on the CPU: the method moves it to the model
    assert g_gpu.device.type == "cuda"
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-3, atol=1e-4)
    layer = next(n for n, info in cpu.layers.items() if info.kind == "conv")
    torch.testing.assert_close(
        cam.grad_cam(gpu, x, layer=layer, target=0).cpu(),
        cam.grad_cam(cpu, x, layer=layer, target=0),
        rtol=1e-3,
        atol=1e-4,
    )
    midi = registry.load(resources.DEFAULT_MIDI_MODEL, device="cuda")
    assert midi.device.type == "cuda"


@needs_cuda
def test_cli_commands_run_on_cuda(run_cli, tmp_path):  # pragma: no cover - no GPU on the CI machines
    demo = resources.demo_recording()
    for argv in (
        ["tag", demo, "--json"],
        ["kernels", "--json"],
        ["layers", "--json"],
        ["saliency", demo, "--method", "gradient", "--json"],
        ["cam", demo, "--layer", "mid end / conv 1", "--json"],
        ["dream", "--init", "sweep", "--target", "rock", "--steps", "2", "-o", tmp_path / "d.wav", "--json"],
    ):
        status, _, err = run_cli(*argv, "--device", "cuda")
        assert status == 0, (argv, err)
