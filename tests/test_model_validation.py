"""Model folders are checked before anything is built (issue 18, item 1): model.json read with
limits, every field against its schema, sizes bounded before allocation, weights finite, file
names inside the folder. Every failure is one MusicLensError naming the field, the value given
and what is allowed; from the CLI, one line and exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from musiclens.core.errors import MusicLensError
from musiclens.core.models import registry, schema

BUNDLED = registry.bundled_models_dir()
TINY_NET = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, n_labels=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, n_labels)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
"""


def copy_bundled(name: str, dest: Path) -> Path:
    """A copy of a bundled model folder (model.json copied, weights linked when possible)."""
    dest.mkdir(parents=True)
    for f in (BUNDLED / name).iterdir():
        shutil.copy2(f, dest / f.name)
    return dest


def edit(folder: Path, change) -> Path:
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def set_path(meta: dict, path: str, value) -> None:
    keys = path.split(".")
    d = meta
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def tiny_user_model(folder: Path) -> Path:
    """A python user model (net.py + weights.safetensors + model.json), 3 labels, 16 mels."""
    from safetensors.torch import save_file

    from musiclens.core.features import logmel_frontend

    folder.mkdir(parents=True)
    (folder / "net.py").write_text(TINY_NET)
    namespace: dict = {}
    exec(compile(TINY_NET, "net.py", "exec"), namespace)
    torch.manual_seed(0)
    net = namespace["Tiny"]()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "weights.safetensors"))
    meta = {
        "format": registry.FORMAT,
        "name": "tiny",
        "architecture": {"python": "net.py:Tiny", "params": {"n_labels": 3}},
        "front_end": logmel_frontend(sample_rate=16000, n_fft=256, hop=128, n_mels=16).to_dict(),
        "patch_frames": 16,
        "labels": ["a", "b", "c"],
        "multilabel": False,
    }
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def mtt(tmp_path) -> Path:
    return copy_bundled("MTT_musicnn", tmp_path / "mtt")


def error_of(folder: Path, **kw) -> str:
    with pytest.raises(MusicLensError) as info:
        registry.load(folder, **kw)
    text = str(info.value)
    assert "\n" not in text.strip() and len(text) < 600, text
    return text


def test_the_bundled_models_pass_the_checks():
    from musiclens.core.models.discover import probe_input

    for name in registry.available():
        model = registry.load(name)
        x, mask = probe_input(model.input, model.patch_frames)
        assert model.predict(x, mask).shape == (1, len(model.labels))


# ----------------------------------------------------------------------------- model.json fields
FIELD_CASES = [
    # (dotted path, value, words the message must hold)
    ("input", ["audio"], ["input", '["audio"]', '"audio"', '"midi"']),
    ("patch_frames", float("nan"), ["patch_frames", "NaN", "integer"]),
    ("patch_frames", float("inf"), ["patch_frames", "Infinity", "integer"]),
    ("patch_frames", -3, ["patch_frames", "-3", ">= 1"]),
    ("patch_frames", 1.5, ["patch_frames", "1.5", "integer"]),
    ("architecture.params.n_labels", [96], ["architecture.params.n_labels", "[96]", "integer"]),
    ("architecture.params.temporal_filters", 1.5, ["temporal_filters", "1.5", "integer"]),
    ("architecture.params.n_mels", -1e9, ["n_mels", "-1000000000", "integer"]),
    ("architecture.params.n_mels", -5, ["n_mels", "-5", ">= 1"]),
    ("architecture.params.n_labels", 1e9, ["n_labels", "1000000000", "integer"]),
    ("architecture.params.n_labels", 10**9, ["n_labels", "1000000000", "<= 1,000,000"]),
    ("architecture.params.colour", 3, ["unknown", "colour", "n_mels", "backend_units"]),
    ("architecture.family", "resnet-9000", ["architecture.family", "resnet-9000", "musicnn"]),
    ("architecture.family", 7, ["architecture.family", "7"]),
    ("labels", "guitar", ["labels", '"guitar"', "list"]),
    ("labels", [], ["labels", "1 to"]),
    ("labels", ["a", 3], ["labels[1]", "3", "text"]),
    ("multilabel", "yes", ["multilabel", '"yes"', "true or false"]),
    ("front_end.n_mels", "96", ["front_end.n_mels", '"96"', "integer"]),
    ("front_end.sample_rate", 0, ["front_end.sample_rate", ">= 1"]),
    ("front_end.power", float("nan"), ["front_end.power", "NaN"]),
    ("front_end.hop", 2.5, ["front_end.hop", "2.5"]),
    ("front_end.kind", "wavelet", ["front_end.kind", "wavelet", '"logmel"']),
    ("front_end.bogus", 1, ["front_end", "unknown", "bogus"]),
    ("front_end.n_fft", 1 << 18, ["filterbank", "n_mels"]),
    ("format", "musiclens-model/9", ["format", "musiclens-model/9", "musiclens-model/1"]),
    ("weights", 5, ["weights", "5", "text"]),
    ("weights", "../../etc/passwd", ["weights file", "../../etc/passwd", "inside the model folder"]),
    ("weights", "/etc/passwd", ["weights file", "/etc/passwd", "inside"]),
    ("provenance", {"score": float("inf")}, ["provenance.score", "Infinity"]),
    ("surprise", 1, ["unknown keys", "surprise"]),
]


@pytest.mark.parametrize(("path", "value", "words"), FIELD_CASES, ids=[f"{c[0]}={c[1]!r}" for c in FIELD_CASES])
def test_a_wrong_field_is_named_with_its_value_and_what_is_allowed(mtt, path, value, words):
    edit(mtt, lambda meta: set_path(meta, path, value))
    text = error_of(mtt)
    for word in words:
        assert word in text, (word, text)


def test_missing_keys_are_named(mtt, tmp_path):
    edit(mtt, lambda meta: meta["architecture"].pop("family"))
    assert "exactly one of 'family'" in error_of(mtt)
    other = copy_bundled("MTT_musicnn", tmp_path / "b")
    edit(other, lambda meta: meta.pop("patch_frames"))
    assert "'patch_frames' is missing" in error_of(other)
    midi = copy_bundled("midi_style_lstm", tmp_path / "c")
    edit(midi, lambda meta: meta["architecture"]["params"].pop("n_labels"))
    assert "lacks 'n_labels'" in error_of(midi)


def test_label_count_must_equal_the_networks_outputs(mtt, tmp_path):
    edit(mtt, lambda meta: meta.update(labels=meta["labels"][:6]))
    text = error_of(mtt)
    assert "6 labels" in text and "50" in text
    # without n_labels in params (the family's default 50): still compared with the output size
    other = copy_bundled("MTT_musicnn", tmp_path / "b")
    edit(other, lambda meta: (meta["architecture"]["params"].pop("n_labels"), meta.update(labels=["a"] * 49)))
    text = error_of(other)
    assert "49 labels" in text and "(2, 50)" in text


def test_the_front_end_must_fit_the_network(mtt):
    edit(mtt, lambda meta: meta["front_end"].update(n_mels=40))
    text = error_of(mtt)
    assert "does not accept the input" in text and "(2, 1, 40, 187)" in text


@pytest.mark.parametrize(
    ("param", "value"), [("midend_filters", 100_000), ("backend_units", 900_000), ("timbral_filters", 1_000_000)]
)
def test_huge_sizes_are_refused_before_anything_is_allocated(mtt, param, value):
    import resource

    edit(mtt, lambda meta: meta["architecture"]["params"].update({param: value}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    text = error_of(mtt)
    assert "parameters" in text and f"{schema.MAX_PARAMETERS:,}" in text, text
    assert time.perf_counter() - t0 < 20
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb  # the refused network would need gigabytes


def test_a_patch_too_long_for_memory_is_refused(mtt):
    edit(mtt, lambda meta: meta.update(patch_frames=900_000))
    text = error_of(mtt)
    assert "patch_frames" in text and f"{schema.MAX_INPUT_VALUES:,}" in text


# ----------------------------------------------------------------------------- the files
def test_model_json_must_be_a_small_regular_shallow_json_file(mtt):
    meta_path = mtt / "model.json"
    good = meta_path.read_text()
    meta_path.unlink()
    meta_path.mkdir()
    assert "is a folder" in error_of(mtt)
    meta_path.rmdir()
    os.mkfifo(meta_path)
    assert "named pipe" in error_of(mtt)  # never blocks on open
    meta_path.unlink()
    os.symlink("model.json", meta_path)  # a symlink loop
    assert "cannot open" in error_of(mtt)
    meta_path.unlink()
    meta_path.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested 100000 levels" in error_of(mtt)
    meta_path.write_text(good[:-2] + ', "provenance": {"x": "' + "y" * schema.MAX_JSON_BYTES + '"}}')
    assert "at most 1,000,000" in error_of(mtt)
    meta_path.write_bytes(b'{"format": "\xff"}')
    assert "not UTF-8" in error_of(mtt)
    meta_path.write_text(good.replace('"patch_frames": 187', '"patch_frames": ' + "9" * 5000))
    assert "cannot be read as JSON" in error_of(mtt) or "patch_frames" in error_of(mtt)
    meta_path.write_text(good.replace('"patch_frames": 187', '"patch_frames": 1e999'))
    assert "patch_frames is Infinity" in error_of(mtt)


def test_non_finite_weights_name_the_tensor(mtt):
    from safetensors.torch import load_file, save_file

    state = load_file(str(mtt / "weights.safetensors"))
    name = sorted(state)[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(mtt / "weights.safetensors"))
    text = error_of(mtt)
    assert repr(name) in text and "NaN or infinite" in text


def test_weights_that_are_not_a_regular_file(mtt):
    (mtt / "weights.safetensors").unlink()
    os.mkfifo(mtt / "weights.safetensors")
    assert "named pipe" in error_of(mtt)
    (mtt / "weights.safetensors").unlink()
    (mtt / "weights.safetensors").write_bytes(b"\x00" * 7)
    assert "not a readable safetensors file" in error_of(mtt)


def test_a_pickle_posing_as_weights_never_runs(mtt, tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (mtt / "weights.pt").write_bytes(pickle.dumps({"w": Evil()}))
    edit(mtt, lambda meta: meta.update(weights="weights.pt"))
    assert "not a plain state dict" in error_of(mtt)
    assert not marker.exists()


# ----------------------------------------------------------------------------- user models
def test_a_tiny_user_model_loads(tmp_path):
    model = registry.load(tiny_user_model(tmp_path / "tiny"), trust_code=True)
    assert model.labels == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m["architecture"].update(python=["net.py:Tiny"]), ["architecture.python", "text"]),
        (lambda m: m["architecture"].update(exported="model.pt2"), ["exactly one of"]),
        (lambda m: m.update(architecture={"exported": "../../etc/passwd"}), ["../../etc/passwd", "inside"]),
        (lambda m: m.update(architecture={"torchscript": 3}), ["architecture.torchscript", "3"]),
        (lambda m: m.update(weights="../../etc/passwd"), ["weights file", "../../etc/passwd", "inside"]),
        (lambda m: m["architecture"]["params"].update(n_labels=float("nan")), ["architecture.params.n_labels"]),
        (lambda m: m.update(labels=["a", "b"]), ["2 labels", "3 outputs"]),
        (lambda m: m.update(layer_names={"conv": 5}), ["layer_names.conv", "5"]),
    ],
)
def test_user_model_fields(tmp_path, change, words):
    folder = edit(tiny_user_model(tmp_path / "tiny"), change)
    text = error_of(folder, trust_code=True)
    for word in words:
        assert word in text, (word, text)


def test_user_model_nan_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tiny_user_model(tmp_path / "tiny")
    state = load_file(str(folder / "weights.safetensors"))
    state["head.bias"][1] = float("inf")
    save_file(state, str(folder / "weights.safetensors"))
    assert "'head.bias'" in error_of(folder, trust_code=True)


# ----------------------------------------------------------------------------- the CLI
def _broken_folders(root: Path) -> dict[str, Path]:
    made = {}
    for i, (path, value, _) in enumerate(FIELD_CASES[::4]):
        made[f"{path}={value!r}"] = edit(
            copy_bundled("MTT_musicnn", root / f"f{i}"), lambda m, p=path, v=value: set_path(m, p, v)
        )
    deep = copy_bundled("MTT_musicnn", root / "deep")
    (deep / "model.json").write_text("[" * 50_000 + "]" * 50_000)
    made["deep"] = deep
    loop = copy_bundled("MTT_musicnn", root / "loop")
    (loop / "model.json").unlink()
    os.symlink("model.json", loop / "model.json")
    made["loop"] = loop
    return made


def model_commands(wav: Path, folder_of_wavs: Path, out: Path) -> dict[str, list[str]]:
    """Every CLI command that takes ``--model`` (read from the parser, the window's ``gui``
    left out) with its required arguments filled in (an audio file, a layer ``x``, ...)."""
    import argparse

    from musiclens.cli import build_parser

    values = {"file": str(wav), "files": str(wav), "folder": str(folder_of_wavs), "data": str(folder_of_wavs)}
    values |= {"layer": "x", "filter": "0", "target": "rock", "to": "rock"}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = {}
    for name, parser in sub.choices.items():
        options = {o for a in parser._actions for o in a.option_strings}
        if "--model" not in options or name == "gui":
            continue
        argv = [name]
        for action in parser._actions:
            if action.dest in ("help", "model") or not (action.required or not action.option_strings):
                continue
            midi = name.startswith("midi")
            value = values.get(action.dest, str(out / f"{name}-{action.dest}.{'mid' if midi else 'npz'}"))
            if midi and action.dest == "file":
                value = str(wav.with_suffix(".mid"))
            argv += [action.option_strings[-1], value] if action.option_strings else [value]
            if action.nargs == "+":
                argv.append(value)  # similarity compares two files
        commands[name] = argv
    return commands


def test_every_broken_folder_is_one_line_and_exit_2_from_the_cli(tmp_path, run_cli):
    import numpy as np
    import pretty_midi
    import soundfile as sf

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    wav = wavs / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    piece = pretty_midi.PrettyMIDI()
    piece.instruments.append(pretty_midi.Instrument(0))
    piece.instruments[0].notes += [pretty_midi.Note(80, 60 + i % 12, i * 0.25, i * 0.25 + 0.2) for i in range(40)]
    piece.write(str(wav.with_suffix(".mid")))
    commands = model_commands(wav, wavs, tmp_path / "out")
    assert {"tag", "layers", "saliency", "cam", "dream", "evaluate", "batch", "midi-classify"} <= set(commands)
    folders = _broken_folders(tmp_path / "broken")
    for name, folder in folders.items():
        for argv in commands.values():
            status, out, err = run_cli(*argv, "--model", str(folder))
            assert status == 2, (name, argv, status, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("musiclens: error: "), (name, argv, err)
            assert str(folder) in err, (name, argv, err)  # the model's error, not another one
            assert "Traceback" not in err and "MUSICLENS_DEBUG" not in err, (name, argv, err)


# ----------------------------------------------------------------------------- item 5: analyses never change a model
class DropoutCNN(torch.nn.Module):
    """conv -> BN -> ReLU -> dropout -> conv -> ReLU -> global average -> linear (16 mels)."""

    def __init__(self) -> None:
        super().__init__()
        from torch import nn

        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = self.drop(self.relu1(self.bn1(self.conv1(x / 40.0 + 1.0))))
        return self.fc(self.pool(self.relu2(self.conv2(h))).flatten(1))


def dropout_model():
    from musiclens.core.features import logmel_frontend
    from musiclens.core.models.registry import LayerInfo, LoadedModel

    torch.manual_seed(3)
    net = DropoutCNN()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.3, 0.3)
        net.bn1.running_var.uniform_(0.5, 2.0)
    layers = [
        LayerInfo("conv 1", "conv1", "conv", "conv"),
        LayerInfo("bn 1", "bn1", "conv", "batchnorm"),
        LayerInfo("conv 2", "conv2", "conv", "conv"),
        LayerInfo("maps", "relu2", "conv", "block"),
        LayerInfo("output", "fc", "output", "output"),
    ]
    return LoadedModel(
        "dropout-cnn",
        net.eval(),
        front_end=logmel_frontend(sample_rate=8000, n_fft=256, hop=64, n_mels=16),
        labels=["a", "b", "c"],
        patch_frames=32,
        layers={i.name: i for i in layers},
        architecture={"family": "test"},
    )


def _arrays(obj) -> list:
    """Every tensor, array and number in a result (dataclasses, dicts, lists), in order."""
    import dataclasses

    import numpy as np

    if isinstance(obj, torch.Tensor):
        return [obj.detach().cpu().double().numpy()]
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "fiub":
        return [obj.astype(np.float64)]
    if isinstance(obj, (float, int)) and not isinstance(obj, bool):
        return [np.float64(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [a for f in dataclasses.fields(obj) for a in _arrays(getattr(obj, f.name))]
    if isinstance(obj, dict):
        return [a for k in sorted(obj, key=str) for a in _arrays(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [a for v in obj for a in _arrays(v)]
    return []


def audio_entry_points():
    """(name, fn(model, audio, x) -> result) for every analysis of an audio model."""
    from musiclens.core import tagging
    from musiclens.core.analyses import layers as layer_analyses
    from musiclens.core.analyses.predict import predict as predict_recording
    from musiclens.core.interpret import activity, deconv, dream, flip, hooks, methods, sanity, similarity
    from musiclens.core.interpret.auralise import auralise_filter

    points = []
    for name in methods.names(kind="audio"):
        method = methods.get(name)
        layer = "conv 2" if method.needs_layer else None
        points.append(
            (f"method {name}", lambda m, a, x, f=method.function, layer=layer: f(m, x, target=1, layer=layer))
        )
    points += [
        ("predict", lambda m, a, x: m.predict(x)),
        ("logits", lambda m, a, x: m.logits(x)),
        ("hooks.activations", lambda m, a, x: hooks.activations(m, x, ["bn 1", "conv 2"])),
        ("hooks.patch_activations", lambda m, a, x: hooks.patch_activations(m, x[:1], ["bn 1"])),
        ("tagging.layer_outputs", lambda m, a, x: tagging.layer_outputs(m, x, ["bn 1", "maps"])),
        ("tagging.taggram", lambda m, a, x: tagging.taggram(m, a)),
        ("analyses.predict", lambda m, a, x: predict_recording(m, a)),
        ("analyses.layer_maps", lambda m, a, x: layer_analyses.layer_maps(m, a, "conv 2")),
        ("analyses.hear_filter", lambda m, a, x: layer_analyses.hear_filter(m, a, "conv 2", 1)),
        ("analyses.hear_filter deconv", lambda m, a, x: layer_analyses.hear_filter(m, a, "conv 2", 1, how="deconv")),
        ("auralise_filter", lambda m, a, x: auralise_filter(m, a, layer="conv 2", filter=0)),
        ("deconv", lambda m, a, x: deconv.deconv(m, x[:1], layer="conv 2", filter=0)),
        ("unit_activity", lambda m, a, x: activity.unit_activity(m, x)),
        ("layer_similarity", lambda m, a, x: similarity.layer_similarity(m, x[:1], x[1:], baseline=False)),
        ("dream", lambda m, a, x: dream.run_dream(m, a, target=1, steps=3)),
        ("flip", lambda m, a, x: list(flip.flip(m, a, target=2, steps=3, stop_on_flip=False))[-1]),
        (
            "sanity",
            lambda m, a, x: sanity.cascading_randomisation(m, x[:1], method="gradient", target=1),
        ),
    ]
    return points


def _state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("entry", [p[0] for p in audio_entry_points()])
def test_an_analysis_never_changes_a_model_left_in_train_mode(entry):
    """The model left in train mode (dropout, batch norm on batch statistics) comes back in train
    mode with the same weights and statistics, and the result is the one of eval mode."""
    import numpy as np

    fn = dict(audio_entry_points())[entry]
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(8000)).astype(np.float32)
    reference_model = dropout_model()
    x = reference_model.front_end(torch.from_numpy(audio)[None])[..., :32].repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    torch.manual_seed(11)
    expected = _arrays(fn(reference_model, audio, x))
    model = dropout_model()
    model.net.train()
    model.net.fc.eval()  # a mixed state must come back as it was
    before = _state(model.net)
    torch.manual_seed(11)
    got = _arrays(fn(model, audio, x))
    flags = {name: mod.training for name, mod in model.net.named_modules()}
    assert flags == {name: name != "fc" for name in flags}, flags
    after = _state(model.net)
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])
    ]
    assert len(got) == len(expected) and got, entry
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=entry)


def test_a_midi_analysis_never_changes_the_lstm_left_in_train_mode(tmp_path):
    import numpy as np
    import pretty_midi

    from musiclens.core.interpret import methods, midi_saliency
    from musiclens.core.interpret.midi_flip import flip_steps

    rng = np.random.default_rng(0)
    piece = pretty_midi.PrettyMIDI()
    piece.instruments.append(pretty_midi.Instrument(0))
    t = 0.0
    for _ in range(60):
        d = float(rng.uniform(0.1, 0.5))
        piece.instruments[0].notes.append(pretty_midi.Note(80, int(rng.integers(55, 80)), t, t + d))
        t += float(rng.uniform(0.05, 0.4))
    piece.write(str(tmp_path / "a.mid"))
    notes = registry.load("midi_style_lstm").spec.read(tmp_path / "a.mid")

    def run(model):
        feats, mask = model.spec.window(notes)
        x, mk = model.tensors(feats, mask)
        torch.manual_seed(5)
        out = [model.predict(x, mk), midi_saliency.gradient_saliency(model, x, mk, target=1)]
        out += [methods.get(name)(model, x, target=1, mask=mk) for name in methods.names(kind="midi", model=model)]
        out.append(list(flip_steps(model, notes, to=2, steps=3))[-1].target_probability)
        return _arrays(out)

    expected = run(registry.load("midi_style_lstm"))
    model = registry.load("midi_style_lstm")
    model.net.train()
    model.net.head.eval()  # a mixed state must come back as it was
    before = _state(model.net)
    got = run(model)
    flags = {name: mod.training for name, mod in model.net.named_modules()}
    assert flags == {name: name != "head" for name in flags}, flags
    assert all(torch.equal(before[k], v) for k, v in _state(model.net).items())
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
