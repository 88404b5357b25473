"""The squash of midi-piece's standardised note statistics (issue 17): ``z -> c tanh(z / c)``
for new models, none (``z``) for the models saved before; the presence gradient stays exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_midi_wholepiece import _piece

PARAMS = {"n_labels": 2, "channels": 4, "statistics": True, "votes": False, "dropout": 0.0}


def _net(squash: float | None, seed: int = 0) -> torch.nn.Module:
    from musiclens.core.models import registry
    from musiclens.core.models.midi_piece import STAT_NAMES

    params = dict(PARAMS) if squash is None else dict(PARAMS, squash=squash)
    net, _ = registry.build({"family": "midi_piece", "params": params})
    torch.manual_seed(seed)
    with torch.no_grad():
        net.stat_mean.copy_(torch.randn(len(STAT_NAMES)) * 0.1)
        net.stat_std.copy_(torch.rand(len(STAT_NAMES)) * 0.05 + 0.01)  # small: many |z| > c
        net.stat_head.weight.copy_(torch.randn(2, len(STAT_NAMES)))
        ranks = [i for i, n in enumerate(STAT_NAMES) if n.startswith("pitch-class share, rank")]
        net.stat_head.weight[:, ranks] = 0  # sorting has kinks where two pitch classes tie
    return net.eval()


def test_a_model_without_squash_reads_the_plain_standardised_statistics():
    net = _net(None)  # the architecture of the models saved before issue 17
    assert net.stat_squash == 0.0
    s = torch.rand(3, len(net.stat_mean))
    z = (s - net.stat_mean) / net.stat_std
    assert torch.allclose(net.stat_logits(s), net.stat_head(z))


def test_squash_bounds_each_standardised_statistic_and_keeps_small_ones():
    from musiclens.core.models.midi_piece import STAT_SQUASH

    net = _net(STAT_SQUASH)
    assert net.stat_squash == STAT_SQUASH > 0
    s = torch.rand(3, len(net.stat_mean))
    z = (s - net.stat_mean) / net.stat_std
    squashed = STAT_SQUASH * torch.tanh(z / STAT_SQUASH)
    assert torch.allclose(net.stat_logits(s), net.stat_head(squashed), atol=1e-5)
    assert float(z.abs().max()) > 3 * STAT_SQUASH  # the case the squash is for
    # a statistic far out moves the logit by at most |w| * c, one near the mean as without squash
    head = torch.nn.Linear(len(z[0]), 2)
    big = torch.zeros(1, len(z[0]))
    big[0, 0] = 1e6
    assert float((STAT_SQUASH * torch.tanh(big / STAT_SQUASH)).max()) == pytest.approx(STAT_SQUASH)
    small = torch.full((1, len(z[0])), 1e-3)
    assert torch.allclose(head(STAT_SQUASH * torch.tanh(small / STAT_SQUASH)), head(small), atol=1e-6)


def test_the_squashed_model_saves_loads_and_changes_nothing_else(tmp_path):
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec

    arch = {"family": "midi_piece", "params": dict(PARAMS, squash=1.5)}
    net = _net(1.5)
    model = registry.LoadedModel("p", net, spec=PieceSpec(), labels=["a", "b"], architecture=arch)
    registry.save(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["architecture"]["params"]["squash"] == 1.5
    back = registry.load(tmp_path / "m", kind="midi")
    assert back.net.stat_squash == 1.5
    x, m = model.tensors(_piece(120, seed=3), np.ones(120, bool))
    assert torch.allclose(net(x, m), back.net(x, m), atol=1e-6)
    # the same weights without squash (a model saved before) load too, and read z itself
    old = dict(arch, params=PARAMS)
    (tmp_path / "m" / "model.json").write_text(
        json.dumps(dict(json.loads((tmp_path / "m" / "model.json").read_text()), architecture=old))
    )
    plain = registry.load(tmp_path / "m", kind="midi")
    assert plain.net.stat_squash == 0.0
    assert not torch.allclose(plain.net(x, m), net(x, m), atol=1e-3)


def test_presence_saliency_is_the_gradient_through_the_squash():
    from musiclens.core.interpret import methods
    from musiclens.core.models import registry
    from musiclens.core.models.inputs import PieceSpec

    net = _net(1.5, seed=1)
    arch = {"family": "midi_piece", "params": dict(PARAMS, squash=1.5)}
    model = registry.LoadedModel("p", net, spec=PieceSpec(), labels=["a", "b"], architecture=arch)
    x, m = model.tensors(_piece(200, seed=1), np.ones(200, bool))
    g = methods.get("note-presence")(model, x, target=1, mask=m)[0].sum(-1)
    assert (g != 0).float().mean() > 0.9
    net.double()
    for i in (5, 90, 170):  # a central finite difference of the logit in note i's weight
        up, down = torch.ones(1, 200, dtype=torch.float64), torch.ones(1, 200, dtype=torch.float64)
        up[0, i] += 1e-3
        down[0, i] -= 1e-3
        with torch.no_grad():
            fd = (net(x.double(), m, weight=up)[0, 1] - net(x.double(), m, weight=down)[0, 1]) / 2e-3
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-2, abs=1e-5)


def test_a_negative_squash_is_refused():
    from musiclens.core.errors import ParameterError
    from musiclens.core.models.midi_piece import PieceCNN

    with pytest.raises(ParameterError, match="squash"):
        PieceCNN(n_labels=2, statistics=True, squash=-1.0)
