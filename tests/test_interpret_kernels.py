"""Kernel statistics (weights) and per-unit activity (inputs) on tiny models with planted values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interpret_nets import features, logmel_cnn, signal
from musiclens.core.errors import MusicLensError
from musiclens.core.interpret.activity import dead_units, unit_activity
from musiclens.core.interpret.kernels import kernel_stats


@pytest.fixture()
def planted():
    """conv1 filter 2 zeroed (dead by norm), conv2 filter 4 with bias -1e3 (never positive)."""
    m = logmel_cnn()
    with torch.no_grad():
        m.net.conv1.weight[2] = 0.0
        m.net.conv1.bias[2] = 0.0
        m.net.conv2.bias.fill_(1.0)  # every other conv 2 filter fires somewhere
        m.net.conv2.bias[4] = -1e3
    return m


def test_norms_and_batchnorm_parameters(planted):
    stats = kernel_stats(planted)
    conv = {c["layer"]: c for c in stats["conv"]}
    assert list(conv) == ["conv 1", "conv 2"]
    w = planted.net.conv2.weight.detach().double()
    want = [float(torch.sqrt((w[k] ** 2).sum())) for k in range(6)]
    np.testing.assert_allclose(conv["conv 2"]["frobenius"], want, rtol=1e-12)
    assert conv["conv 1"]["dead_indices"] == [2] and conv["conv 2"]["dead_indices"] == []
    (bn,) = stats["batchnorm"]
    assert bn["layer"] == "bn 2"
    np.testing.assert_allclose(bn["moving_variance"], planted.net.bn2.running_var.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bn["gamma"], planted.net.bn2.weight.detach().numpy(), rtol=1e-6)


def test_unit_energies_are_mean_squares_of_the_positive_part(planted):
    x = torch.cat([features(planted, signal(0.4, seed=s)) for s in (0, 1, 2)])
    act = unit_activity(planted, x, batch_size=2)
    assert set(act) == {"conv 1", "conv 2"}
    with torch.no_grad():
        net = planted.net
        a1 = F.relu(net.conv1(x / 40.0 + 1.0)).double()
        a2 = F.relu(net.conv2(net.pool1(F.relu(net.conv1(x / 40.0 + 1.0))))).double()
    np.testing.assert_allclose(act["conv 1"].energy, a1.pow(2).mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(act["conv 2"].energy, a2.pow(2).mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(act["conv 2"].active_fraction, (a2 > 0).double().mean(dim=(0, 2, 3)).numpy())
    assert act["conv 1"].dead == [2] and act["conv 2"].dead == [4]
    assert act["conv 2"].energy[4] == 0.0 and act["conv 2"].peak[4] == 0.0
    assert (np.delete(act["conv 2"].energy, 4) > 0).all()


def test_dead_units_by_both_criteria(planted):
    x = features(planted, signal(0.4))
    dead = dead_units(planted, x)
    assert dead == {"conv 1": {"norm": [2], "activation": [2]}, "conv 2": {"norm": [], "activation": [4]}}
    assert dead_units(planted) == {"conv 1": {"norm": [2]}, "conv 2": {"norm": []}}


def test_unit_activity_of_any_layer_and_unknown_layer(planted):
    x = features(planted, signal(0.3))
    act = unit_activity(planted, x, layers=["bn 2"], relu=False)
    assert act["bn 2"].energy.shape == (6,) and (act["bn 2"].energy > 0).all()
    with pytest.raises(MusicLensError, match="no layer"):
        unit_activity(planted, x, layers=["conv 7"])
