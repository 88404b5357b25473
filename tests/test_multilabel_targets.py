"""Multi-label targets: a set of tags attributed at once, the sum of their scores (issue 16).

The check for every method of the table: attributing the set {a, b} must equal attributing
the single label "a+b" of a model whose extra output *is* the sum of the logits of a and b.
That holds whatever the method does with the score (non-linear methods included), so it
tests that each method really differentiates / perturbs the summed score.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpret_nets import features, gap_cnn, signal
from musiclens.core.errors import ParameterError
from musiclens.core.interpret import methods
from musiclens.core.interpret._common import target_set, target_weights
from musiclens.core.models.registry import LayerInfo, LoadedModel

SET = frozenset({"class0", "class2"})


class Summed(nn.Module):
    """The net's logits and one more output: the sum of the logits of ``pair``."""

    def __init__(self, inner: nn.Module, pair: tuple[int, int]) -> None:
        super().__init__()
        self.inner, self.pair = inner, list(pair)

    def forward(self, x, *mask):
        out = self.inner(x, *mask)
        return torch.cat([out, out[:, self.pair].sum(1, keepdim=True)], dim=1)


def _summed(m: LoadedModel, pair=(0, 2)) -> LoadedModel:
    layers = {n: LayerInfo(n, f"inner.{i.module}", i.group, i.kind) for n, i in m.layers.items()}
    extra = m.labels + ["+".join(m.labels[i] for i in pair)]
    if m.kind == "midi":
        return LoadedModel("summed", Summed(m.net, pair).eval(), spec=m.spec, labels=extra, layers=layers)
    return LoadedModel(
        "summed", Summed(m.net, pair).eval(), front_end=m.front_end, labels=extra, layers=layers, patch_frames=32
    )


@pytest.fixture(scope="module")
def gap():
    return gap_cnn()


@pytest.fixture(scope="module")
def x(gap):
    return features(gap, signal(0.3))


# ------------------------------------------------------------------ the target


def test_a_set_is_written_as_a_set_or_with_plus(gap):
    assert target_set(gap, "class0+class2") == [0, 2] == target_set(gap, SET) == target_set(gap, {0, "class2"})
    assert target_set(gap, "class1") == [1] and target_set(gap, 2) == [2]
    w = target_weights(gap, [SET, "class1"], 2)  # a list: one target per item, each may be a set
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    torch.testing.assert_close(target_weights(gap, "class0+class2", 2), torch.tensor([[1.0, 0, 1]] * 2))


def test_bad_sets_raise_one_clear_error(gap):
    with pytest.raises(ParameterError, match="no label 'jazz'"):
        target_set(gap, "class0+jazz")
    with pytest.raises(ParameterError, match="must not be empty"):
        target_set(gap, frozenset())
    with pytest.raises(ParameterError, match=r"2 targets for a batch of 1 .*'a\+b'"):
        target_weights(gap, ["class0", "class2"], 1)  # a list is per item, never a set


def test_a_label_containing_plus_is_still_one_label():
    m = LoadedModel("plus", nn.Linear(2, 2), front_end=gap_cnn().front_end, labels=["c++", "rock+roll"], patch_frames=8)
    assert target_set(m, "rock+roll") == [1] and target_set(m, "c++") == [0]


# ------------------------------------------------------------------ every method


@pytest.mark.parametrize("name", methods.names(kind="audio"))
def test_every_audio_method_attributes_the_sum_of_the_set(name, gap, x):
    meth = methods.get(name)
    layer = "conv 2" if meth.needs_layer else None
    opts = meth.supported({"n_samples": 4, "steps": 8, "frames": 8, "bins": 4})
    if name == "cam":  # CAM reads the classifier's rows: the set's map is the sum of the rows' maps
        got = meth(gap, x, target=SET, layer=layer)
        want = meth(gap, x, target="class0", layer=layer) + meth(gap, x, target="class2", layer=layer)
    else:
        got = meth(gap, x, target="class0+class2", layer=layer, **opts)
        want = meth(_summed(gap), x, target="class0+class2", layer=layer, **opts)  # the summed model's own label
    assert got.shape == want.shape and got.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    single = meth(gap, x, target="class0", layer=layer, **opts)
    assert not torch.allclose(got, single)  # the second tag counted


@pytest.mark.parametrize("name", ["gradient", "integrated-gradients", "grad-cam", "occlusion"])
def test_per_item_targets_with_sets_in_a_batch(name, gap, x):
    meth = methods.get(name)
    layer = "conv 2" if meth.needs_layer else None
    opts = meth.supported({"steps": 8})
    xb = torch.cat([x, x.flip(-1)])
    both = meth(gap, xb, target=[SET, "class1"], layer=layer, **opts)
    torch.testing.assert_close(both[:1], meth(gap, xb[:1], target=SET, layer=layer, **opts), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both[1:], meth(gap, xb[1:], target="class1", layer=layer, **opts), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_holds_for_the_sum(gap, x):
    info: dict = {}
    attr = methods.get("ig")(gap, x, target=SET, steps=64, info=info)
    with torch.no_grad():
        logits = gap.net(x)
    assert float(info["score_at_input"][0]) == pytest.approx(float(logits[0, 0] + logits[0, 2]), rel=1e-5)
    assert float(attr.sum()) == pytest.approx(float(info["score_at_input"] - info["score_at_baseline"]), rel=0.05)


def _midi():
    from musiclens.core.models import midi_lstm

    torch.manual_seed(0)
    spec = midi_lstm.NoteFeatureSpec(n_notes=12, short="pad", mean=(60.0, 1.0, 1.0), std=(12.0, 1.0, 1.0))
    net, layers = midi_lstm.build_midi_lstm(n_labels=3, hidden=8, layers=1, note_features=spec.to_dict())
    m = LoadedModel("midi", net.eval(), spec=spec, labels=["a", "b", "c"], layers={x.name: x for x in layers})
    g = torch.Generator().manual_seed(0)
    notes = torch.cat(
        [torch.randint(40, 90, (1, 12, 1), generator=g).float(), torch.rand(1, 12, 2, generator=g) * 0.5 + 0.05], -1
    )
    mask = torch.arange(12)[None] < 10
    return m, notes, mask


# every MIDI method that runs on the LSTM (note-presence needs a whole-piece model: its own
# tests are in test_midi_wholepiece.py)
@pytest.mark.parametrize("name", [m.name for m in methods.select(kind="midi") if m.needs_net is None])
def test_every_midi_method_attributes_the_sum_of_the_set(name):
    m, notes, mask = _midi()
    meth = methods.get(name)
    opts = meth.supported({"steps": 32, "mask": mask})
    got = meth(m, notes, target="a+c", **opts)
    want = meth(_summed(m), notes, target="a+c", **opts)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert got.abs().max() > 0 and (got[0, 10:] == 0).all()  # padded notes get 0


# ------------------------------------------------------------------ waveform models


class WaveCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _wave():
    from musiclens.core.models.inputs import Waveform

    torch.manual_seed(0)
    layers = {"conv": LayerInfo("conv", "conv", "front", "conv")}
    m = LoadedModel(
        "wave", WaveCNN().eval(), Waveform(sample_rate=8000, patch_samples=400), ["a", "b", "c"], layers=layers
    )
    return m, torch.randn(1, 1, 400) * 0.3


@pytest.mark.parametrize("name", [n for n in methods.names(kind="waveform") if n != "lrp"])
def test_every_waveform_method_runs_on_samples_with_a_set(name):
    m, y = _wave()
    meth = methods.get(name)
    opts = meth.supported({"n_samples": 4, "steps": 8, "frames": 40})
    got = meth(m, y, target="a+c", **opts)
    assert got.shape == y.shape and torch.isfinite(got).all() and got.abs().max() > 0
    torch.testing.assert_close(got, meth(_summed_wave(m), y, target="a+c", **opts), rtol=1e-4, atol=1e-6)


def _summed_wave(m):
    return LoadedModel("summed", Summed(m.net, (0, 2)).eval(), m.input, m.labels + ["a+c"])


def test_lrp_names_the_layers_it_has_no_rule_for():
    m, y = _wave()
    with pytest.raises(ParameterError, match=r"LRP has no rule for the layer types .*Conv1d"):
        methods.get("lrp")(m, y, target="a")


# ------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import numpy as np
    import soundfile as sf

    path = tmp_path_factory.mktemp("clip") / "chord.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 196 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)).astype("float32"), 16000)
    return path


@pytest.mark.parametrize("command, method, key", [("saliency", "gradient", "attribution"), ("cam", "grad-cam", "map")])
def test_cli_target_a_plus_b_is_the_sum_of_the_two(command, method, key, clip, run_cli, tmp_path):
    """Both methods are linear in the score: the set's map is the sum of the two maps."""
    import json

    import numpy as np

    maps = {}
    for target in ("guitar+rock", "guitar", "rock"):
        out = tmp_path / f"{target}.npz"
        status, text, err = run_cli(
            command, clip, "--model", "MSD_musicnn", "--method", method, "--target", target, "-o", out, "--json"
        )
        assert status == 0, err
        assert json.loads(text)["target"] == target and str(np.load(out)["target"]) == target
        maps[target] = np.load(out)[key]
    np.testing.assert_allclose(maps["guitar+rock"], maps["guitar"] + maps["rock"], rtol=1e-4, atol=1e-6)


def test_cli_commands_taking_one_label_refuse_a_set(clip, run_cli):
    status, out, err = run_cli(
        "sanity", clip, "--model", "MSD_musicnn", "--target", "guitar+rock", "--method", "gradient"
    )
    assert status == 2 and out == "" and "takes one label" in err and err.count("\n") == 1
