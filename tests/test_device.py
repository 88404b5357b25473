"""Every command runs the model on the device asked for (``--device auto|cpu|cuda``), and the
analyses give the same results on every available device (issue 14, item 6).

The CUDA cases skip with a reason on a machine without a GPU and run where one exists.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclens.core import device as device_mod
from musiclens.core import resources
from musiclens.core.models import registry

CUDA = torch.cuda.is_available()
NO_CUDA = "needs a CUDA GPU (none on this machine); runs where one exists"
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not CUDA, reason=NO_CUDA)),
]
MODEL_COMMANDS = (
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
    "predict",
    "evaluate",
    "midi-classify",
    "midi-flip",
    "train",
)


def _subparsers():
    from musiclens.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_every_command_that_runs_a_model_takes_device():
    sub = _subparsers()
    for command in MODEL_COMMANDS:
        options = {a.dest: a for a in sub[command]._actions}
        assert "device" in options, command
        assert options["device"].default == "auto", command
        assert tuple(options["device"].choices) == device_mod.DEVICE_CHOICES, command
    gui = {a.dest: a for a in sub["gui"]._actions}["device"]
    assert gui.default is None and tuple(gui.choices) == device_mod.DEVICE_CHOICES  # None: the window's setting


def test_importing_the_device_words_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from musiclens.core.device import DEVICE_CHOICES; import musiclens.cli._model; "
        "print('torch' in sys.modules, DEVICE_CHOICES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False ('auto', 'cpu', 'cuda')"


def test_predict_and_midi_classify_run_on_the_device_asked_for(run_cli, monkeypatch, tmp_path):
    import json

    from musiclens.core.resources import demo_recording

    loaded = []
    real = registry.load

    def spy(name, **kw):
        m = real(name, **kw)
        loaded.append((kw.get("device"), m.device))
        return m

    monkeypatch.setattr(registry, "load", spy)
    status, out, err = run_cli("predict", demo_recording(), "--device", "cpu", "--json")
    assert status == 0, err
    assert json.loads(out)["kind"] == "audio" and loaded[-1] == ("cpu", torch.device("cpu"))
    pm = pytest.importorskip("pretty_midi")
    midi = pm.PrettyMIDI()
    inst = pm.Instrument(0)
    inst.notes = [pm.Note(80, 60 + (i % 12), 0.25 * i, 0.25 * i + 0.2) for i in range(120)]
    midi.instruments.append(inst)
    path = tmp_path / "tune.mid"
    midi.write(str(path))
    for command in ("predict", "midi-classify"):
        status, out, err = run_cli(command, path, "--device", "auto", "--json")
        assert status == 0, err
        assert json.loads(out)["kind"] == "midi" and loaded[-1] == ("auto", device_mod.resolve_device("auto"))


@pytest.mark.parametrize(
    "argv",
    [
        ("predict", "{demo}"),
        ("midi-classify", "{mid}"),
        ("evaluate", "--model", resources.DEFAULT_MIDI_MODEL, "--data", "{tmp}"),
        ("gui", "--demo"),
    ],
)
def test_cuda_without_a_gpu_is_one_line(run_cli, monkeypatch, tmp_path, argv):
    from musiclens.core.resources import demo_recording

    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    args = [a.format(demo=demo_recording(), mid=tmp_path / "x.mid", tmp=tmp_path) for a in argv]
    status, out, err = run_cli(*args, "--device", "cuda")
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert "no GPU is available" in err and "use --device auto or cpu" in err


def test_gui_passes_the_device_to_the_window(run_cli, monkeypatch):
    from musiclens.app import main, preflight

    seen = {}
    monkeypatch.setattr(preflight, "xcb_problem", lambda: None)
    monkeypatch.setattr(main, "run", lambda **kw: seen.update(kw) or 0)
    assert run_cli("gui", "--demo", "--device", "cpu")[0] == 0
    assert seen["device"] == "cpu"
    assert run_cli("gui", "--demo")[0] == 0
    assert seen["device"] is None  # the window's saved setting


# ------------------------------------------------------------------ the same results everywhere
@pytest.fixture(scope="module")
def on_cpu():
    return registry.load(resources.DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def recording(on_cpu):
    from musiclens.core import audio

    fe = on_cpu.front_end
    y, _ = audio.load(resources.demo_recording(), sr=fe.sample_rate, duration=2.2 * on_cpu.patch_seconds)
    return y


@pytest.mark.parametrize("device", DEVICES)
def test_predict_attribution_and_layer_maps_agree_on_every_device(device, on_cpu, recording):
    """The default model on ``device`` gives the CPU's predictions, Grad-CAM and layer maps."""
    from musiclens.core.interpret import methods
    from musiclens.core.interpret.auralise import filter_levels
    from musiclens.core.tagging import audio_to_patches, taggram

    m = registry.load(resources.DEFAULT_MODEL, device=device)
    assert m.device.type == device
    # predict
    here, ref = taggram(m, recording), taggram(on_cpu, recording)
    assert here.probabilities.shape == ref.probabilities.shape == (2, len(m.labels))
    np.testing.assert_allclose(here.probabilities, ref.probabilities, rtol=1e-4, atol=1e-6)
    # one attribution (the method table's Grad-CAM, as the window runs it, on one patch)
    meth = methods.get("grad-cam")
    layer = next(name for name, info in m.layers.items() if info.kind == "conv")
    target = ref.top(1)[0][0]
    patch = audio_to_patches(m, recording)[:1]
    assert patch.device.type == device  # every tensor follows the model's device
    got = meth(m, patch, target=target, layer=layer)
    assert got.device.type == device
    want = meth(on_cpu, audio_to_patches(on_cpu, recording)[:1], target=target, layer=layer)
    torch.testing.assert_close(got.detach().cpu(), want.detach(), rtol=1e-4, atol=1e-5)
    # one layer-maps computation (the Layers panel's grid)
    one = recording[: m.patch_samples]
    lv, lv_ref = filter_levels(m, one, layer=layer), filter_levels(on_cpu, one, layer=layer)
    np.testing.assert_allclose(lv.maps, lv_ref.maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lv.level_db, lv_ref.level_db, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(lv.silent, lv_ref.silent)
