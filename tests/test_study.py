"""``musiclens study``: the musicnn-dissection report checked against numbers recomputed here
from the bundled models' modules and weights; the five studies are known and bad data is one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from musiclens.core.analyses.studies import STUDIES
from musiclens.core.analyses.studies.musicnn_dissection import DISSECTION_MODELS
from musiclens.core.models import registry


def _dead_by_norm(conv: nn.Module, rel: float, abs_tol: float = 1e-8) -> int:
    w = conv.weight.detach().double()
    norms = torch.sqrt((w**2).sum(dim=tuple(range(1, w.dim()))))
    return int((norms <= max(abs_tol, rel * float(norms.max()))).sum())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One quick run through the CLI: (folder, stdout JSON, stderr)."""
    import contextlib
    import io

    from musiclens import cli

    out = tmp_path_factory.mktemp("study") / "missing" / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(["study", "musicnn-dissection", "--quick", "--out", str(out), "--json"])
    assert status == 0, stderr.getvalue()
    return out, json.loads(stdout.getvalue()), stderr.getvalue()


def test_the_report_files_are_written(report):
    out, printed, err = report
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "numbers.json", "kernel_norms.png", "dead_kernels.png", "batchnorm.png"} <= names
    for n in DISSECTION_MODELS:
        assert {f"W_{n}.png", f"unit_series_{n}.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    assert json.loads((out / "numbers.json").read_text()) == printed
    lines = err.strip().splitlines()
    assert lines and all(re.match(r"^study: \d+/\d+ .*\d+ s elapsed", line) for line in lines), err
    assert re.search(r"(\d+)/\1 ", lines[-1]), lines[-1]


def test_the_report_puts_the_claims_beside_ours(report):
    out, numbers, _ = report
    text = (out / "report.md").read_text()
    assert "| quantity | the study's claim | source of the claim | ours |" in text
    assert "Where the data differ" in text and "--quick" in text
    for claim in numbers["claims"].values():
        assert claim["claim"] in text
    for name, m in numbers["models"].items():
        assert f"{name}: {m['front_end_total']} (" in text
        assert f"(total {m['kernels']['dead']}/{m['kernels']['total']})" in text


@pytest.mark.parametrize("name", DISSECTION_MODELS)
def test_numbers_match_the_models_modules_and_weights(report, name):
    _, numbers, _ = report
    got = numbers["models"][name]
    m = registry.load(name, device="cpu")
    convs = {p: mod for p, mod in m.net.named_modules() if isinstance(mod, (nn.Conv1d, nn.Conv2d))}
    front = sum(mod.out_channels for p, mod in convs.items() if p.startswith("front_end."))
    mid = [mod.out_channels for p, mod in convs.items() if p.startswith("mid_end.")]
    assert got["front_end_total"] == front
    assert got["front_end_filters"] == {p: c.out_channels for p, c in convs.items() if p.startswith("front_end.")}
    # W's rows: the front end and the mid-end outputs, densely stacked; its frames: one patch
    assert got["W_shape_per_patch"] == [front + sum(mid), m.patch_frames]
    # the same shape from a forward hook on the mid end, on a patch of noise
    seen: dict[str, torch.Size] = {}

    def hook(mod, inputs, output) -> None:
        seen["W"] = output.shape

    handle = m.net.get_submodule("mid_end").register_forward_hook(hook)
    try:
        with torch.no_grad():
            m.net.eval()(torch.randn(1, 1, 96, m.patch_frames))
    finally:
        handle.remove()
    assert list(seen["W"][1:]) == got["W_shape_per_patch"]
    # dead kernels per layer, recomputed from the weights
    rel = got["dead_rel_tol"]
    by_module = {c["module"]: c for c in got["conv"]}
    assert set(by_module) == set(convs)
    for path, conv in convs.items():
        assert by_module[path]["dead_by_norm"] == _dead_by_norm(conv, rel), path
        assert by_module[path]["kernels"] == conv.out_channels
    assert got["kernels"]["dead"] == sum(_dead_by_norm(c, rel) for c in convs.values())
    # batch norms and the checkpoint's counts
    bns = [mod for mod in m.net.modules() if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(got["batchnorm"]) == len(bns)
    np.testing.assert_allclose(got["batchnorm"][0]["gamma"], bns[0].weight.detach().numpy(), rtol=1e-6)
    assert got["parameters"]["trainable_tensors"] == len(list(m.net.parameters()))
    assert got["parameters"]["moving_stat_tensors"] == 2 * len(bns)
    values = sum(p.numel() for p in m.net.parameters()) + sum(b.running_mean.numel() * 2 for b in bns)
    assert got["parameters"]["values"] == values
    assert got["patches"] >= 1 and sum(g["rows"][1] - g["rows"][0] for g in got["row_groups"]) == front + sum(mid)


def test_the_five_studies_are_known_and_data_without_audio_is_one_line(run_cli, tmp_path):
    assert set(STUDIES) == {"genre-cnn", "dreaming", "midi-rnn", "musicnn-dissection", "instrument-similarity"}
    (tmp_path / "empty").mkdir()
    status, _, err = run_cli("study", "musicnn-dissection", "--quick", "--data", tmp_path / "empty", "--out", tmp_path)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "no audio files" in err
