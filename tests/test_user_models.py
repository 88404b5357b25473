"""The user's own network in a model folder (issue 15): a tiny CNN defined here, saved as a
python folder, an exported (.pt2) folder and a TorchScript folder, run through the registry
and the CLI; the mismatch errors, the weights_only refusal and the trust_code refusal."""

from __future__ import annotations

import inspect
import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from musiclens.cli import main
from musiclens.core.errors import MusicLensError
from musiclens.core.features import logmel_frontend
from musiclens.core.models import registry
from musiclens.core.models.discover import default_cam_layer, kind_of, layer_shapes, readable_name
from musiclens.core.models.user_models import describe, guess_meta, write_model_folder

N_MELS, FRAMES, LABELS = 32, 32, ["low", "mid", "high"]
FE = logmel_frontend(sample_rate=16000, n_fft=512, hop=256, n_mels=N_MELS)


class TinyCNN(nn.Module):
    """(B, 1, n_mels, T) log-mel in dB -> (B, n_labels) logits."""

    def __init__(self, n_labels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.head = nn.Linear(8, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 40.0) / 20.0  # dB -> about unit scale
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = torch.relu(self.conv2(h))
        return self.head(h.mean(dim=(2, 3)))


def _net() -> TinyCNN:
    torch.manual_seed(0)
    net = TinyCNN()
    with torch.no_grad():  # a BatchNorm that is not the identity
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _meta(architecture: dict, **extra) -> dict:
    return {
        "format": registry.FORMAT,
        "name": "tiny",
        "architecture": architecture,
        "front_end": FE.to_dict(),
        "patch_frames": FRAMES,
        "labels": list(LABELS),
        "multilabel": False,
    } | extra


def _write(folder: Path, meta: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def save_python(folder: Path, net: nn.Module, *, weights: str = "weights.safetensors", **extra) -> Path:
    """The python form: net.py (this file's TinyCNN) + weights + model.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    source = "import torch\nfrom torch import nn\n\n\n" + textwrap.dedent(inspect.getsource(TinyCNN))
    (folder / "net.py").write_text(source)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    more = {} if weights == "weights.safetensors" else {"weights": weights}
    return _write(folder, _meta({"python": "net.py:TinyCNN", "params": {"n_labels": 3}}, **more, **extra))


def save_exported(folder: Path, net: nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 1, N_MELS, FRAMES)
    free = {0: torch.export.Dim("batch"), 3: torch.export.Dim("frames", min=4)}  # any batch, any length
    ep = torch.export.export(net, (x,), dynamic_shapes=(free,))
    torch.export.save(ep, str(folder / "tiny.pt2"))
    return _write(folder, _meta({"exported": "tiny.pt2"}))


def save_torchscript(folder: Path, net: nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(net), str(folder / "tiny.ts"))
    return _write(folder, _meta({"torchscript": "tiny.ts"}))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user_models")
    net = _net()
    return {
        "python": save_python(root / "python", net),
        "exported": save_exported(root / "exported", net),
        "torchscript": save_torchscript(root / "torchscript", net),
    }


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """1 s: a 300 Hz tone, then a 3 kHz tone, at the front end's rate."""
    t = np.arange(FE.sample_rate) / FE.sample_rate
    y = np.where(t < 0.5, np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 3000 * t)) * 0.3
    path = tmp_path_factory.mktemp("audio") / "tones.wav"
    sf.write(path, y.astype(np.float32), FE.sample_rate)
    return path


def _load(folder: Path) -> registry.LoadedModel:
    return registry.load(folder, trust_code=(folder / "net.py").exists())


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("form", ["python", "exported", "torchscript"])
def test_every_form_gives_the_nets_own_outputs(folders, form):
    m = _load(folders[form])
    x = torch.randn(5, 1, N_MELS, FRAMES) * 20 - 40
    want = torch.softmax(_net()(x), dim=-1)
    assert torch.allclose(m.predict(x), want, atol=1e-5)
    assert m.hooks_supported is (form != "torchscript")
    assert m.labels == LABELS and m.kind == "audio" and m.patch_frames == FRAMES


@pytest.mark.parametrize("form", ["python", "exported"])
def test_layers_are_found_in_running_order_and_hooks_fire(folders, form):
    m = _load(folders[form])
    assert [(i.module, i.kind) for i in m.layers.values()] == [
        ("conv1", "conv"),
        ("bn1", "norm"),
        ("pool", "pool"),
        ("conv2", "conv"),
        ("head", "output"),
    ]
    shapes = layer_shapes(m)
    assert shapes == {
        "conv1": (4, N_MELS, FRAMES),
        "bn1": (4, N_MELS, FRAMES),
        "pool": (4, N_MELS // 2, FRAMES // 2),
        "conv2": (8, N_MELS // 2, FRAMES // 2),
        "head": (3,),
    }
    assert default_cam_layer(m) == "conv2"


def test_exported_hooks_see_the_real_activation(folders):
    """A hook on the unflattened program's conv2 gets the same tensor as on the python net."""
    from musiclens.core.interpret.hooks import activations

    x = torch.randn(3, 1, N_MELS, FRAMES) * 20 - 40
    got = activations(_load(folders["exported"]), x, "conv2")["conv2"]
    net = _net()
    want = net.conv2(net.pool(torch.relu(net.bn1(net.conv1((x + 40.0) / 20.0)))))
    assert torch.allclose(got, want.detach(), atol=1e-5)


def test_torchscript_says_why_layers_do_not_work(folders):
    m = _load(folders["torchscript"])
    assert m.layers == {} and default_cam_layer(m) is None
    with pytest.raises(MusicLensError, match="TorchScript"):
        m.module("conv1")
    lines = describe(m)
    assert any(line.startswith("layers: not available: a TorchScript") for line in lines)
    assert "input attributions (saliency): works" in lines


def test_describe_python_model(folders):
    lines = describe(_load(folders["python"]))
    assert lines[0].startswith(
        "tiny: audio model (python net.py:TinyCNN), 3 labels, input (B, C, F, T) = (1, 1, 32, 32)"
    )
    assert "layers: 5 found (2 conv, 1 norm, 1 pool, 1 output)" in lines
    assert any(line.startswith("CAM: works (default layer 'conv2'") for line in lines)


def test_pth_state_dict_and_readable_layer_names(tmp_path):
    folder = save_python(tmp_path / "pth", _net(), weights="tiny.pth", layer_names={"conv2": "second conv"})
    m = registry.load(folder, trust_code=True)
    assert "second conv" in m.layers and m.layers["second conv"].module == "conv2"
    x = torch.randn(2, 1, N_MELS, FRAMES)
    assert torch.allclose(m.predict(x), torch.softmax(_net()(x), -1), atol=1e-5)


def test_save_round_trip_keeps_the_users_network(folders, tmp_path):
    for form in ("python", "exported"):
        m = _load(folders[form])
        out = registry.save(m, tmp_path / form)
        again = _load(out)
        x = torch.randn(2, 1, N_MELS, FRAMES)
        assert torch.allclose(again.predict(x), m.predict(x), atol=1e-6)


def test_sanity_copy_of_an_exported_network(folders):
    """Cascading randomisation deep-copies the network: the exported one is re-read."""
    import copy

    m = _load(folders["exported"])
    twin = copy.deepcopy(m.net)
    with torch.no_grad():
        twin.get_submodule("conv1").weight.zero_()
    x = torch.randn(2, 1, N_MELS, FRAMES)
    assert not torch.allclose(twin(x), m.net(x))  # independent weights
    assert torch.allclose(m.predict(x), torch.softmax(_net()(x), -1), atol=1e-5)


def test_layer_kinds_and_names():
    assert kind_of("torch.nn.modules.conv.Conv1d") == "conv"
    assert kind_of("torch.nn.modules.rnn.LSTM") == "recurrent"
    assert kind_of("transformers.models.audio_spectrogram_transformer.ASTSelfAttention") == "attention"
    assert kind_of("torch.nn.modules.normalization.LayerNorm") == "norm"
    assert kind_of("torch.nn.modules.activation.ReLU") is None
    assert readable_name("features.3", "conv") == "features 3"
    assert readable_name("encoder.layer.0.attention", "attention") == "encoder / layer 0 / attention"
    assert readable_name("0", "conv") == "conv 0"


FACTORY_MODULE = """
import torch
from torch import nn


class TwoOut(nn.Module):
    def __init__(self, n_labels):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2, n_labels)

    def forward(self, x):
        h = self.conv(x)
        return {"logits": self.fc(h.mean(dim=(2, 3))), "hidden": h}


def make(n_labels):
    torch.manual_seed(0)
    return TwoOut(n_labels)
"""


def test_importable_factory_with_a_dict_output(tmp_path, monkeypatch):
    """``"pkg.mod:factory"`` with params, ``"weights": null``, an output that is not a tensor."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "musiclens_test_factory_mod.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    arch = {"python": "musiclens_test_factory_mod:make", "params": {"n_labels": 3}}
    folder = _write(tmp_path / "factory", _meta(arch, weights=None))
    with pytest.raises(MusicLensError, match="module 'musiclens_test_factory_mod'"):
        registry.load(folder)
    m = registry.load(folder, trust_code=True)
    assert {n: (i.module, i.kind) for n, i in m.layers.items()} == {
        "conv": ("net.conv", "conv"),
        "fc": ("net.fc", "output"),
    }
    import musiclens_test_factory_mod as mod

    x = torch.randn(2, 1, N_MELS, FRAMES)
    assert torch.allclose(m.predict(x), torch.softmax(mod.make(3)(x)["logits"], -1), atol=1e-6)
    assert default_cam_layer(m) == "conv"


WAVE_NET = """
import torch
from torch import nn


class WaveNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 4, 64, stride=16)
        self.conv2 = nn.Conv1d(4, 8, 8, stride=4)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # (B, 1, samples)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=2))
"""


def test_raw_waveform_network(tmp_path):
    folder = tmp_path / "wave"
    folder.mkdir()
    (folder / "net.py").write_text(WAVE_NET)
    draft = guess_meta(folder / "net.py", trust_code=True)
    assert draft["input"] == "waveform" and draft["waveform"]["patch_samples"] > 0
    assert draft["labels"] == ["class 0", "class 1"] and "sample_rate" in draft["_unknown"]
    draft["weights"] = None
    draft["_unknown"].remove("weights")
    m = registry.load(write_model_folder(draft, folder, weights=None), trust_code=True)
    assert m.kind == "waveform" and [i.kind for i in m.layers.values()] == ["conv", "conv", "output"]
    assert default_cam_layer(m) == "conv2"  # (B, 8, T): the last layer with a time axis


# ----------------------------------------------------------------------------- refusals
def test_python_code_runs_only_when_trusted(folders, tmp_path):
    with pytest.raises(MusicLensError, match=r"net\.py.*trust_code=True"):
        registry.load(folders["python"])
    marker = tmp_path / "ran.txt"
    folder = save_python(tmp_path / "evil", _net())
    (folder / "net.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n" + (folder / "net.py").read_text())
    with pytest.raises(MusicLensError, match="trust"):
        registry.load(folder)
    assert not marker.exists()
    # an installed module's callable is code too: os.system with params would run a command
    meta = json.loads((folder / "model.json").read_text())
    meta["architecture"] = {"python": "os:system", "params": {"command": f"touch {marker}"}}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match="module 'os'"):
        registry.load(folder)
    assert not marker.exists()


class _Boom:
    """Unpickling this creates a file (what a malicious .pth would do)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_is_not_a_state_dict_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    folder = save_python(tmp_path / "evil", _net(), weights="tiny.pth")
    with open(folder / "tiny.pth", "wb") as f:
        pickle.dump({"conv1.weight": _Boom(str(marker))}, f)
    with pytest.raises(MusicLensError, match=r"tiny\.pth is not a plain state dict.*weights_only=True"):
        registry.load(folder, trust_code=True)
    assert not marker.exists()
    # the check is real: plain unpickling would have created the file
    with open(folder / "tiny.pth", "rb") as f:
        pickle.load(f)
    assert marker.exists()


# ----------------------------------------------------------------------------- mismatches
def test_input_shape_mismatch_names_both(tmp_path):
    folder = save_python(tmp_path / "bad_input", _net())
    meta = json.loads((folder / "model.json").read_text())
    meta["front_end"] = logmel_frontend(sample_rate=16000, n_fft=512, hop=256, n_mels=N_MELS).to_dict() | {}
    meta["front_end"]["kind"] = "stft"  # two channels into a 1-channel conv
    meta["front_end"]["n_mels"] = None
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError) as err:
        registry.load(folder, trust_code=True)
    msg = str(err.value)
    assert "C = 1 channel" in msg and "the input spec gives (B, C, F, T) = (2, 2, 257, 32)" in msg


def test_exported_input_mismatch_names_the_programs_shape(folders, tmp_path):
    import shutil

    folder = shutil.copytree(folders["exported"], tmp_path / "exp")
    meta = json.loads((folder / "model.json").read_text())
    meta["front_end"]["n_mels"] = 40
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(
        MusicLensError, match=r"model expects \(\*, 1, 32, \*\); the input spec gives \(B, C, F, T\) = \(2, 1, 40, 32\)"
    ):
        registry.load(folder)


def test_label_count_and_output_shape_mismatches(tmp_path):
    folder = save_python(tmp_path / "labels", _net())
    meta = json.loads((folder / "model.json").read_text())
    meta["labels"] = ["a", "b"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match=r"model\.json has 2 labels but the network gives 3 outputs per item"):
        registry.load(folder, trust_code=True)
    (folder / "flat.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x.mean(1)\n"  # (B, F, T): not (B, n_labels)
    )
    meta["architecture"] = {"python": "flat.py:Net"}
    meta["weights"] = None
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(
        MusicLensError, match=r"output is \(2, 32, 32\) for a batch of 2; MusicLens needs \(B, n_labels\) = \(2, 2\)"
    ):
        registry.load(folder, trust_code=True)


def test_missing_weights_file_says_how_to_name_it(tmp_path):
    folder = save_python(tmp_path / "noweights", _net())
    (folder / "weights.safetensors").unlink()
    with pytest.raises(MusicLensError, match=r"weights file weights\.safetensors is missing.*\"weights\": null"):
        registry.load(folder, trust_code=True)


def test_weight_key_mismatch_names_missing_and_unexpected(tmp_path):
    net = _net()
    folder = save_python(tmp_path / "keys", net, weights="tiny.pth")
    state = net.state_dict()
    state["extra.weight"] = state.pop("conv2.weight")
    torch.save(state, folder / "tiny.pth")
    with pytest.raises(
        MusicLensError, match=r"missing 1 tensors \(e\.g\. conv2\.weight\), 1 unknown tensors \(e\.g\. extra\.weight\)"
    ):
        registry.load(folder, trust_code=True)


def test_batch_of_one_only_is_explained(tmp_path):
    folder = tmp_path / "fixed"
    folder.mkdir()
    x = torch.randn(1, 1, N_MELS, FRAMES)
    torch.export.save(torch.export.export(_net(), (x,)), str(folder / "tiny.pt2"))
    _write(folder, _meta({"exported": "tiny.pt2"}))
    with pytest.raises(MusicLensError, match=r"accepts a batch of 1 item only.*Dim\('batch'\)"):
        registry.load(folder)
    x = torch.randn(2, 1, N_MELS, FRAMES)  # a free batch, a fixed length: loads, and says what that costs
    ep = torch.export.export(_net(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(folder / "tiny.pt2"))
    m = registry.load(folder)
    assert m.limits["length"].startswith(f"the exported program takes exactly {FRAMES} frames")
    assert any(line.startswith("length: ") for line in describe(m))


# ----------------------------------------------------------------------------- the dialog's API
def test_guess_meta_and_write_model_folder_from_a_py(folders, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("net.py", "weights.safetensors"):
        (src / name).write_bytes((folders["python"] / name).read_bytes())
    with pytest.raises(MusicLensError, match="trust_code"):
        guess_meta(src / "net.py", trust_code=False)
    draft = guess_meta(src / "net.py", trust_code=True)
    assert draft["architecture"] == {"python": "net.py:TinyCNN", "params": {}}
    assert draft["labels"] == ["class 0", "class 1", "class 2"]
    assert draft["front_end"]["kind"] == "logmel" and draft["front_end"]["n_mels"] == 128  # any size fits (GAP)
    assert draft["_unknown"] == ["labels", "sample_rate", "multilabel"]
    draft["labels"] = list(LABELS)
    out = write_model_folder(draft, tmp_path / "written", weights=src / "weights.safetensors")
    m = registry.load(out, trust_code=True)
    assert m.labels == LABELS and not any(k.startswith("_") for k in json.loads((out / "model.json").read_text()))


def test_guess_meta_reads_the_exported_input_shape(folders):
    draft = guess_meta(folders["exported"] / "tiny.pt2", trust_code=False)
    assert draft["architecture"] == {"exported": "tiny.pt2"}
    assert draft["front_end"]["n_mels"] == N_MELS  # the program's fixed F axis
    assert "patch_frames" in draft["_unknown"]  # its time axis is free: any length fits
    assert len(draft["labels"]) == 3


def test_write_model_folder_leaves_no_broken_folder(folders, tmp_path):
    draft = guess_meta(folders["exported"] / "tiny.pt2", trust_code=False)
    draft["labels"] = ["only one"]  # the network has 3 outputs
    with pytest.raises(MusicLensError, match="1 labels but the network gives 3"):
        write_model_folder(draft, tmp_path / "w", weights=None)
    assert not (tmp_path / "w" / "model.json").exists() and not (tmp_path / "w" / "tiny.pt2").exists()


def test_guess_meta_on_a_torchscript_folder(folders):
    draft = guess_meta(folders["torchscript"].parent / "torchscript" / "tiny.ts", trust_code=False)
    assert draft["architecture"] == {"torchscript": "tiny.ts"} and len(draft["labels"]) == 3


# ----------------------------------------------------------------------------- the CLI
def _cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _trust(folder: Path) -> list[str]:
    return ["--trust-code"] if (folder / "net.py").exists() else []


@pytest.mark.parametrize("form", ["python", "exported"])
def test_cli_predict_layers_cam_saliency(folders, wav, capsys, form, tmp_path):
    folder = folders[form]
    base = ["--model", folder, "--device", "cpu", *_trust(folder)]
    status, out, err = _cli(capsys, "predict", wav, *base, "--json")
    assert status == 0, err
    got = json.loads(out)
    # the network's own forward (the test's TinyCNN) on the same patches
    from musiclens.core.tagging import audio_to_patches, load_audio_for

    m = _load(folder)
    patches = audio_to_patches(m, load_audio_for(m, wav))
    with torch.no_grad():
        want = torch.softmax(_net()(patches), -1).numpy()
    assert np.asarray(got["patches"]).shape == want.shape == (len(patches), 3)
    assert np.allclose(np.asarray(got["patches"]), want, atol=1e-5)
    assert got["classes"] == LABELS and abs(sum(got["probabilities"].values()) - 1) < 1e-5

    status, out, err = _cli(capsys, "layers", *base, "--json")
    assert status == 0, err
    table = json.loads(out)
    assert [r["name"] for r in table["layers"] if r["kind"] == "conv"] == ["conv1", "conv2"]
    assert any(line.startswith("CAM: works") for line in table["about"])

    status, out, err = _cli(capsys, "cam", wav, *base, "--json", "-o", tmp_path / "cam.npz")
    assert status == 0, err
    cam = json.loads(out)
    assert cam["layer"] == "conv2" and cam["shape"] == [N_MELS // 2, FRAMES // 2]
    assert np.load(tmp_path / "cam.npz")["map"].shape == (N_MELS // 2, FRAMES // 2)

    status, out, err = _cli(capsys, "saliency", wav, *base, "--json")
    assert status == 0, err
    assert json.loads(out)["shape"][-2:] == [N_MELS, FRAMES]


@pytest.mark.parametrize("form", ["python", "exported"])
def test_cli_auralise_and_dream(folders, wav, capsys, form, tmp_path):
    folder = folders[form]
    base = ["--model", folder, "--device", "cpu", *_trust(folder)]
    out_wav = tmp_path / "filter.wav"
    status, out, err = _cli(
        capsys, "auralise", wav, *base, "--layer", "conv2", "--filter", "3", "-o", out_wav, "--json"
    )
    assert status == 0, err
    y, sr = sf.read(out_wav)
    summary = json.loads(out)
    assert sr == FE.sample_rate and len(y) > 0 and np.isfinite(y).all()
    assert summary["layer"] == "conv2" and 0 < summary["rms_out"] < summary["rms_in"]  # a filter keeps part
    dream_wav = tmp_path / "dream.wav"
    status, out, err = _cli(
        capsys,
        "dream",
        *base,
        "--sweep",
        "0.5",
        "--target",
        "high",
        "--steps",
        "3",
        "-o",
        dream_wav,
        "--json",
        "--quiet",
    )
    assert status == 0, err
    summary = json.loads(out)
    y, sr = sf.read(dream_wav)
    assert sr == FE.sample_rate and len(y) > 0
    assert summary["steps"] == 3 and summary["objective_end"] > summary["objective_start"]  # gradient ascent


def test_cli_torchscript_outputs_work_and_hooks_say_why(folders, wav, capsys):
    folder = folders["torchscript"]
    base = ["--model", folder, "--device", "cpu"]
    status, out, err = _cli(capsys, "predict", wav, *base, "--json")
    assert status == 0, err
    status, out, err = _cli(capsys, "saliency", wav, *base, "--json")
    assert status == 0, err
    for argv in (["cam", wav, *base], ["auralise", wav, *base, "--layer", "conv1", "--filter", "0", "-o", "x.wav"]):
        status, out, err = _cli(capsys, *argv)
        assert status == 2
        assert len(err.strip().splitlines()) == 1 and "TorchScript network runs compiled code" in err, err
    status, out, err = _cli(capsys, "layers", *base)
    assert status == 0 and "layers: not available: a TorchScript network" in out
    status, out, err = _cli(capsys, "kernels", *base)
    assert status == 2 and "TorchScript" in err


def test_cli_refuses_python_without_trust_code(folders, wav, capsys):
    status, _, err = _cli(capsys, "predict", wav, "--model", folders["python"], "--device", "cpu")
    assert status == 2 and "--trust-code" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["tag", "activations", "kernels", "similarity", "sanity", "deconv"])
def test_other_commands_run_or_say_why_in_one_line(folders, wav, capsys, command, tmp_path):
    """Every other command that takes --model: works, or one line (never a traceback)."""
    folder = folders["exported"]
    base = ["--model", folder, "--device", "cpu"]
    argv = {
        "tag": ["tag", wav, *base],
        "activations": ["activations", wav, *base, "--layer", "conv2", "-o", tmp_path / "a.npz"],
        "kernels": ["kernels", *base],
        "similarity": ["similarity", wav, wav, *base],
        "sanity": ["sanity", wav, *base, "--method", "gradient"],
        "deconv": ["deconv", wav, *base, "--layer", "conv2", "--filter", "0", "-o", tmp_path / "d.npz"],
    }[command]
    status, out, err = _cli(capsys, *argv)
    assert status in (0, 2), err
    if status == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "MUSICLENS_DEBUG" not in err, err


def test_batch_runs_the_users_network_in_its_workers_only_when_trusted(folders, wav, tmp_path, capsys):
    """musiclens batch with a python model folder: refused without --trust-code; with it, two
    spawned workers load the user's net.py and give the one-process predictions."""
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (data / name).write_bytes(wav.read_bytes())
    argv = ["batch", str(data), "--model", str(folders["python"]), "--analyses", "tags", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "refused"), "--quiet"]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "one"), "--quiet", "--trust-code"]) == 0
    assert main([*argv, "--out", str(tmp_path / "two"), "--quiet", "--trust-code", "--workers", "2"]) == 0
    one, two = (pq.read_table(tmp_path / d / "summary.parquet").to_pylist() for d in ("one", "two"))
    assert [r["status"] for r in two] == ["ok"] * 3
    assert [(r["path"], r["predicted"], r["probabilities"]) for r in one] == [
        (r["path"], r["predicted"], r["probabilities"]) for r in two
    ]
