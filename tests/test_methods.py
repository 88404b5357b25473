"""The method table (core/interpret/methods.py): every method declared once and read by the
window's list, the CLI's choices and the sanity check; one canonical name per method with
the old spellings accepted; signed flags that match what the functions return; and
gradient × input, the worked example of adding a method (its module, its entry, this test)."""

from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import interpret_nets as nets
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.interpret import methods, saliency, sanity
from musiclens.core.interpret.grad_x_input import gradient_x_input
from musiclens.core.models.registry import LayerInfo, LoadedModel

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

AUDIO = methods.names(kind="audio")
LAYER = "feature maps"  # the GAP net's pooled layer: CAM, Grad-CAM and Grad-CAM++ all work there


@pytest.fixture(scope="module")
def gap():
    return nets.gap_cnn()


@pytest.fixture(scope="module")
def x(gap):
    torch.manual_seed(3)
    return -80 + 60 * torch.rand(2, 1, gap.front_end.n_bins, 24)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from musiclens import cli

    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _method_action(p: argparse.ArgumentParser) -> argparse.Action:
    return next(a for a in p._actions if "--method" in a.option_strings)


# ------------------------------------------------------------------ the table itself


def test_table_entries_are_complete_and_names_unique():
    seen = set()
    for m in methods.METHODS:
        assert m.name == m.name.lower() and " " not in m.name and "_" not in m.name
        assert m.label and m.description and callable(m.function)
        assert m.input_kinds and set(m.input_kinds) <= set(methods.INPUT_KINDS)
        assert m.shown_as in ("signed", "relu", "abs")
        assert set(dict(m.quick)) <= set(m.options), m.name  # quick options are real options
        for n in (m.name,) + m.aliases:
            assert n.lower() not in seen, n
            seen.add(n.lower())
    assert "gradient-x-input" in methods.names()


@pytest.mark.parametrize(
    "spellings, canonical",
    [
        (("grad-cam", "gradcam", "grad_cam", "Grad-CAM", " GRADCAM "), "grad-cam"),
        (("grad-cam++", "gradcam++", "grad_cam_pp"), "grad-cam++"),
        (("gradient", "grad"), "gradient"),
        (("gradient-x-input", "grad-x-input", "gradient_x_input"), "gradient-x-input"),
        (("integrated-gradients", "ig", "integrated_gradients", "IG"), "integrated-gradients"),
        (("smoothgrad",), "smoothgrad"),
        (("cam",), "cam"),
    ],
)
def test_every_old_spelling_maps_to_one_canonical_name(spellings, canonical):
    assert {methods.get(s).name for s in spellings} == {canonical}
    assert {methods.canonical(s) for s in spellings} == {canonical}
    assert methods.get(methods.get(canonical)) is methods.get(canonical)


def test_an_unknown_name_gives_one_error_listing_the_choices():
    with pytest.raises(ParameterError) as e:
        methods.get("lime")
    text = str(e.value)
    assert isinstance(e.value, MusicLensError) and "\n" not in text and "'lime'" in text
    assert all(name in text for name in methods.names())
    assert "gradcam" in text  # the old spellings are said to work
    with pytest.raises(
        ParameterError, match="'gradient' cannot be used here; choose one of grad-cam, grad-cam\\+\\+, cam \\(old"
    ):
        methods.get("gradient", among=methods.names(needs_layer=True))  # known, but not allowed here
    assert methods.find("lime") is None and methods.label("lime") == "lime"


def test_the_call_checks_layer_kind_and_options(gap, x):
    with pytest.raises(ParameterError, match="grad-cam needs a layer"):
        methods.get("grad-cam")(gap, x, target=0)
    with pytest.raises(ParameterError, match=r"no option n_samples.*its options: output, mask"):
        methods.get("gradient")(gap, x, target=0, n_samples=3)
    with pytest.raises(ParameterError, match="smoothgrad works on audio, waveform models, not on a midi model"):
        methods.get("smoothgrad")(_midi_model(), _notes(), target=0)
    assert methods.input_kind(gap) == "audio" and methods.input_kind(_midi_model()) == "midi"
    g = methods.get("gradient")
    assert g.supported({"output": "logit", "steps": 3, "relu": True}) == {"output": "logit"}


# ------------------------------------------------------------------ the calling convention


@pytest.mark.parametrize("name", AUDIO)
def test_one_calling_convention_with_documented_shapes(name, gap, x):
    m = methods.get(name)
    out = m(gap, x, target=[0, 2], layer=LAYER, **m.supported({"n_samples": 3, "steps": 4}))
    assert isinstance(out, torch.Tensor) and torch.isfinite(out).all()
    if m.needs_layer:  # (B, F_l, T_l) at the layer's resolution (same padding: the input's here)
        assert out.shape == (2, x.shape[2], x.shape[3])
    else:  # (B, C, F, T), the input's shape
        assert out.shape == x.shape
    shown = m.input_map(out, x.shape[-2:])
    assert shown.shape == (2, x.shape[2], x.shape[3])
    if not m.shown_signed:  # a magnitude
        assert shown.min() >= 0


@pytest.mark.parametrize("name", AUDIO)
def test_signed_flags_match_what_the_functions_return(name, gap, x):
    m = methods.get(name)
    opts = m.supported({"n_samples": 3, "steps": 4})
    # conv 2 before its ReLU: Grad-CAM++ weights are >= 0, so only signed maps can make it negative
    outs = [m(gap, x, target=t, layer="conv 2", **opts) for t in range(len(gap.labels))]
    negative = any(bool((o < 0).any()) for o in outs)
    assert negative == m.signed, f"{name}: signed={m.signed} but negative values: {negative}"
    if "relu" in m.options:  # the positive part on request: never negative
        for t in range(len(gap.labels)):
            assert m(gap, x, target=t, layer="conv 2", relu=True, **opts).min() >= 0


def test_the_table_wraps_the_verbs_unchanged(gap, x):
    from musiclens.core.interpret import cam

    get = methods.get
    torch.testing.assert_close(
        get("grad-cam")(gap, x, target=1, layer=LAYER), cam.grad_cam(gap, x, target=1, layer=LAYER)
    )
    torch.testing.assert_close(
        get("gradcam++")(gap, x, target=1, layer=LAYER, relu=True),
        cam.grad_cam_pp(gap, x, target=1, layer=LAYER, relu=True),
    )
    torch.testing.assert_close(get("cam")(gap, x, target=1, layer=LAYER), cam.cam(gap, x, target=1, layer=LAYER))
    torch.testing.assert_close(get("grad")(gap, x, target=1), saliency.gradient(gap, x, target=1))
    torch.testing.assert_close(
        get("smoothgrad")(gap, x, target=1, n_samples=4), saliency.smoothgrad(gap, x, target=1, n_samples=4)
    )
    info: dict = {}
    ig = get("ig")(gap, x, target=1, steps=8, info=info)
    want = saliency.integrated_gradients(gap, x, target=1, steps=8)
    torch.testing.assert_close(ig, want.attributions)
    torch.testing.assert_close(info["completeness_error"], want.completeness_error)
    torch.testing.assert_close(info["score_at_input"], want.score)
    assert info["steps"] == 8


# ------------------------------------------------------------------ every consumer reads the table


def test_every_entry_is_in_the_gui_list(qtbot):
    from musiclens.app.panels.attribution import METHODS as PANEL_METHODS
    from musiclens.app.panels.attribution import AttributionPanel

    panel = AttributionPanel()
    qtbot.addWidget(panel)
    listed = [panel.method.itemData(i) for i in range(panel.method.count())]
    assert listed == AUDIO == [name for _label, name in PANEL_METHODS]
    assert [panel.method.itemText(i) for i in range(panel.method.count())] == [methods.get(n).label for n in AUDIO]
    for i, name in enumerate(listed):  # the layer box follows needs_layer
        panel.method.setCurrentIndex(i)
        assert panel.layer.isEnabled() == methods.get(name).needs_layer
        assert panel.show_as.isEnabled() == methods.get(name).shown_signed
    panel.method.setCurrentIndex(listed.index("gradient-x-input"))
    with qtbot.waitSignal(panel.requested) as sig:
        panel.run_button.click()
    assert sig.args[0] == "gradient-x-input" and sig.args[2] is None  # no layer for an input method


def test_every_entry_is_a_cli_choice_and_old_spellings_still_parse():
    parsers = _subparsers()
    cam_choices = list(_method_action(parsers["cam"]).choices)
    sal_choices = list(_method_action(parsers["saliency"]).choices)
    assert cam_choices == methods.names(kind="audio", needs_layer=True)
    # saliency reads audio and MIDI files: the input methods of both kinds, in table order
    both = set(methods.names(kind="audio", needs_layer=False)) | set(methods.names(kind="midi", needs_layer=False))
    assert sal_choices == [m.name for m in methods.METHODS if m.name in both]
    assert "note-presence" in sal_choices
    assert sorted(set(cam_choices + sal_choices) - {"note-presence"}) == sorted(AUDIO)
    assert "gradient-x-input" in sal_choices
    for text, want in (("gradcam", "grad-cam"), ("grad_cam", "grad-cam"), ("gradcam++", "grad-cam++")):
        assert parsers["cam"].parse_args(["f.wav", "--layer", "l", "--method", text]).method == want
    for text, want in (
        ("grad", "gradient"),
        ("ig", "integrated-gradients"),
        ("grad-x-input", "gradient-x-input"),
        ("smoothgrad", "smoothgrad"),
    ):
        assert parsers["saliency"].parse_args(["f.wav", "--method", text]).method == want
    help_text = parsers["sanity"].format_help()
    for name in AUDIO:
        assert name in " ".join(help_text.split()), name


def test_a_wrong_cli_method_is_one_line_listing_the_choices(capsys):
    from musiclens import cli

    for argv, allowed in (
        (["saliency", "f.wav", "--method", "lime"], sorted(set(methods.names(needs_layer=False)))),
        (["cam", "f.wav", "--layer", "l", "--method", "ig"], methods.names(needs_layer=True)),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and argv[-1] in err
        assert all(n in err for n in allowed)
        assert all(n not in err.split("choose one of")[1].split("(")[0] for n in methods.names() if n not in allowed)


def test_every_entry_runs_in_the_sanity_check(gap, x):
    assert list(sanity.METHODS) == AUDIO
    for name in AUDIO + ["grad_cam", "gradient_x_input", "ig"]:  # old spellings work too
        m = methods.get(name)
        steps = sanity.cascading_randomisation(
            gap,
            x[:1],
            method=name,
            target=0,
            layer=LAYER,
            layers=["fc", "conv2"],
            **m.supported({"n_samples": 2, "steps": 4}),
        )
        assert [s.step for s in steps] == [0, 1, 2] and steps[0].spearman == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="unknown method 'lime'"):
        sanity.cascading_randomisation(gap, x[:1], method="lime", target=0)


@pytest.mark.parametrize("name", AUDIO)
def test_every_entry_runs_in_the_window_session(name, gap):
    """The session's attribution job (what the window runs) over a two-patch recording."""
    from musiclens.app.session import Session

    seconds_per_patch = gap.patch_frames * gap.front_end.hop / gap.front_end.sample_rate
    audio = nets.signal(2.2 * seconds_per_patch, freqs=(300.0, 1200.0), sr=nets.SR)
    results = []
    stub = SimpleNamespace(
        recording=SimpleNamespace(audio=audio),
        summary=SimpleNamespace(patch_seconds=seconds_per_patch),
        _require_model=lambda: gap,
        submit=lambda _name, work, on_result, **_kw: on_result(work(SimpleNamespace(progress=lambda *a, **k: None))),
    )
    Session.attribution(
        stub, methods.get(name).aliases[0] if methods.get(name).aliases else name, "class1", LAYER, results.append
    )
    (r,) = results
    m = methods.get(name)
    assert r.method == name and r.signed == m.shown_signed and r.layer == (LAYER if m.needs_layer else None)
    assert r.values.shape[0] == gap.front_end.n_bins and np.isfinite(r.values).all()
    assert ("completeness error" in r.note) == ("info" in m.options)


# ------------------------------------------------------------------ gradient x input, the worked example


class _Linear(torch.nn.Module):
    """logit_c = Σ_f w[c, f] · mean_t x[f, t]: d logit_c / d x[f, t] = w[c, f] / T."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.fc = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(w)

    def forward(self, x):
        return self.fc(x.mean(dim=-1)[:, 0])


def test_gradient_x_input_is_gradient_times_input_by_hand():
    n_bins, t = 16, 4
    w = torch.zeros(2, n_bins)
    w[0, 0], w[0, 1], w[1, 2] = 2.0, -1.0, 0.5
    m = LoadedModel(
        "linear",
        _Linear(w).eval(),
        nets.logmel_fe(),
        ["a", "b"],
        t,
        False,
        {"output": LayerInfo("output", "fc", "output", "output")},
        {"family": "test"},
    )
    x = torch.zeros(1, 1, n_bins, t)
    x[0, 0, 0] = torch.tensor([-10.0, -20.0, -30.0, -40.0])
    x[0, 0, 1] = torch.tensor([-8.0, -8.0, -8.0, -8.0])
    x[0, 0, 2] = torch.tensor([-4.0, 0.0, -4.0, 0.0])
    got = methods.get("gradient-x-input")(m, x, target="a")
    want = torch.zeros_like(x)  # by hand: w[a, f] / T · x[f, t]
    want[0, 0, 0] = torch.tensor([-5.0, -10.0, -15.0, -20.0])  # 2 / 4 · x
    want[0, 0, 1] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # −1 / 4 · −8
    torch.testing.assert_close(got, want)
    with torch.no_grad():
        assert float(got.sum()) == pytest.approx(float(m.net(x)[0, 0]))  # a linear model: Σ = the logit
    got_b = gradient_x_input(m, x, target=1)
    torch.testing.assert_close(got_b[0, 0, 2], torch.tensor([-0.5, 0.0, -0.5, 0.0]))  # 0.5 / 4 · x
    assert got_b[0, 0, :2].abs().sum() == 0
    # and in general: the gradient method's map times the input (the older times_input flag agrees)
    gap = nets.gap_cnn()
    torch.manual_seed(0)
    xg = -80 + 60 * torch.rand(2, 1, 16, 20)
    grad = methods.get("gradient")(gap, xg, target=2)
    torch.testing.assert_close(methods.get("gradient-x-input")(gap, xg, target=2), grad * xg)
    torch.testing.assert_close(
        methods.get("gradient-x-input")(gap, xg, target=2), saliency.gradient(gap, xg, target=2, times_input=True)
    )


def test_gradient_x_input_on_midi_notes():
    from musiclens.core.interpret.midi_saliency import gradient_saliency

    model, notes = _midi_model(), _notes()
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False
    got = methods.get("grad-x-input")(model, notes, target="b", mask=mask)
    torch.testing.assert_close(got, gradient_saliency(model, notes, mask, target=1) * notes)
    assert torch.all(got[1, 8:] == 0)


def test_gradient_x_input_appears_everywhere_without_touching_the_consumers():
    """Its entry alone puts it in the window's list, the CLI's saliency choices and the
    sanity check (the consumers build their lists from the table)."""
    from musiclens.app.panels import attribution

    entry = methods.get("gradient-x-input")
    assert entry.function is gradient_x_input and not entry.needs_layer and entry.signed
    assert entry.input_kinds == ("audio", "midi", "waveform")
    assert ("Gradient × input", "gradient-x-input") in attribution.METHODS
    assert "gradient-x-input" in _method_action(_subparsers()["saliency"]).choices
    assert "gradient-x-input" in sanity.METHODS


# ------------------------------------------------------------------ MIDI entries


def _midi_model():
    from musiclens.core.models import midi_lstm

    torch.manual_seed(0)
    spec = midi_lstm.NoteFeatureSpec(n_notes=12, short="pad", mean=(60.0, 1.0, 1.0), std=(12.0, 1.0, 1.0))
    net, layers = midi_lstm.build_midi_lstm(n_labels=3, hidden=8, layers=1, note_features=spec.to_dict())
    layers = {x.name: x for x in layers}
    arch = {"family": "midi_lstm", "params": {}}
    if hasattr(midi_lstm, "LoadedMidiModel"):  # before the one LoadedModel
        return midi_lstm.LoadedMidiModel("random", net.eval(), spec, ["a", "b", "c"], layers, arch)
    return LoadedModel("random", net.eval(), spec=spec, labels=["a", "b", "c"], layers=layers, architecture=arch)


def _notes():
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [torch.randint(40, 90, (2, 12, 1), generator=g).float(), torch.rand(2, 12, 2, generator=g) * 0.5 + 0.05], dim=-1
    )


def test_midi_methods_are_the_per_note_saliency_functions():
    from musiclens.core.interpret import midi_saliency

    model, notes = _midi_model(), _notes()
    assert methods.names(kind="midi") == [
        "gradient",
        "gradient-x-input",
        "integrated-gradients",
        "feature-ablation",
        "note-presence",
    ]
    torch.testing.assert_close(
        methods.get("gradient")(model, notes, target=2), midi_saliency.gradient_saliency(model, notes, target=2)
    )
    info: dict = {}
    ig = methods.get("ig")(model, notes, target=0, steps=32, info=info)
    want = midi_saliency.integrated_gradients(model, notes, target=0, steps=32)
    torch.testing.assert_close(ig, want.attributions)
    torch.testing.assert_close(info["completeness_error"].abs(), want.delta, rtol=1e-4, atol=1e-5)
