"""The audio flip and the MIDI flip share their objective and their frozen network
(core/interpret/flip_loop.py, issue 14 item 3): one definition, used by both kinds."""

from __future__ import annotations

import pretty_midi
import torch
import torch.nn.functional as F

from musiclens.core.interpret import flip as audio_flip
from musiclens.core.interpret import flip_loop, midi_flip
from musiclens.core.models.midi_lstm import load_midi_model
from test_interpret_flip import band_model


def test_target_loss_is_the_old_objective_of_both_flips():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    # softmax models (audio and MIDI): cross-entropy towards the target
    torch.testing.assert_close(flip_loop.target_loss(logits, 1), F.cross_entropy(logits, torch.tensor([1])))
    # multi-label audio models: −log σ(logit_target)
    torch.testing.assert_close(
        flip_loop.target_loss(logits, 2, multilabel=True),
        F.binary_cross_entropy_with_logits(logits[0, 2], torch.ones(())),
    )


def test_frozen_restores_flags_and_leaves_no_weight_gradients():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.1))
    net[1].train(False)  # one submodule already in eval mode: kept as it was
    with flip_loop.frozen(net):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net.training and not net[1].training and all(p.requires_grad for p in net.parameters())


def _spy(monkeypatch, module, calls):
    real_loss, real_frozen = module.target_loss, module.frozen

    def loss(*a, **kw):
        calls.append((module.__name__, "target_loss"))
        return real_loss(*a, **kw)

    def frozen(net):
        calls.append((module.__name__, "frozen"))
        return real_frozen(net)

    monkeypatch.setattr(module, "target_loss", loss)
    monkeypatch.setattr(module, "frozen", frozen)


def test_both_kinds_of_flip_run_the_shared_loop(monkeypatch, tmp_path):
    # both modules take the one definition (no copies)
    for name in ("target_loss", "frozen"):
        assert getattr(audio_flip, name) is getattr(midi_flip, name) is getattr(flip_loop, name)
    calls: list[tuple[str, str]] = []
    _spy(monkeypatch, audio_flip, calls)
    _spy(monkeypatch, midi_flip, calls)
    # audio
    from interpret_nets import signal

    m = band_model()
    steps = list(audio_flip.flip(m, signal(0.5, freqs=(150.0, 300.0)), target="high", steps=3, lr=0.05))
    assert steps[-1].done
    assert all(p.grad is None and p.requires_grad for p in m.net.parameters())  # weights untouched
    # MIDI
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(90, 60 + (i * 5) % 24, 0.25 * i, 0.25 * i + 0.2) for i in range(110)]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "tune.mid"))
    model = load_midi_model()
    notes = model.spec.read(tmp_path / "tune.mid")
    target = next(label for label in model.labels if label != model.classify_notes(notes)["predicted"])
    out = list(midi_flip.flip_steps(model, notes, to=target, steps=2, stop_when_flipped=False))
    assert out[-1].done and out[-1].best is not None
    assert all(p.grad is None and p.requires_grad for p in model.net.parameters())
    assert not model.net.training
    kinds = {(mod.rsplit(".", 1)[-1], what) for mod, what in calls}
    assert kinds == {("flip", "target_loss"), ("flip", "frozen"), ("midi_flip", "target_loss"), ("midi_flip", "frozen")}
