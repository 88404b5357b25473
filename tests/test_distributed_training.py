"""``musiclens train ... --distributed`` under torchrun: two local processes (gloo, CPU) reach
the weights of one process with the same global batch.

Tolerance: the two runs compute the same sums in a different order (each process averages
its share of the batch, DDP averages the processes' gradients), so they differ by float32
rounding, carried through 12 Adam steps. For every tensor we assert
``max |w1 - w2| <= TOLERANCE * max |w1|`` with ``TOLERANCE = 1e-4``; measured: 9e-8 absolute,
about 1e-6 relative (dense1.weight) — 100× below the bound. A real mistake is far above it: one
process stepping on batches of 4 instead of 7 (as a process that did not average with the
other would) moves every trained tensor by 2e-2 to 5e-1 relative (checked below).
vanilla-cnn has no batch norm, and ``--dropout 0`` removes the one random difference (each
process draws its own dropout masks), so no other tolerance is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_train import write_tone

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # per tensor: max |w1 - w2| <= TOLERANCE * max |w1|
BATCH = 7  # odd: uneven shares (4 + 3), and a last batch of one patch (one process gets none)


def tones(root: Path) -> Path:
    """2 classes × 5 tracks of 3.2 s at 22.05 kHz (6 train tracks, 6 patches of 0.5 s each)."""
    for k, (lab, f) in enumerate((("bright", 3000.0), ("dark", 200.0))):
        for i in range(5):
            write_tone(root / lab / f"{lab}{i}.wav", f * (1 + 0.04 * i), 3.2, sr=22050, seed=k * 10 + i)
    return root


def train_args(root: Path, tmp: Path) -> list[str]:
    return [
        "train",
        "--arch",
        "vanilla-cnn",
        "--data",
        str(root),
        "--epochs",
        "2",
        "--batch-size",
        str(BATCH),
        "--patch-seconds",
        "0.5",
        "--dropout",
        "0",
        "--patience",
        "0",
        "--lr",
        "3e-3",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp / "cache"),
        "--json",
    ]


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "weights.safetensors"))


def test_two_processes_reach_the_weights_of_one_process(tmp_path, capsys):
    import musiclens.cli as cli

    root = tones(tmp_path / "data")
    args = train_args(root, tmp_path)
    # one process, plain
    assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    n_train = one["patches"]["train"]
    assert n_train % BATCH == 1  # the last batch has one patch: the second process has none

    # two processes, torchrun (gloo on the CPU), the same global batch
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "musiclens", *args, "--out", str(tmp_path / "two"), "--distributed"]
        + ["--checkpoint", str(tmp_path / "ckpt")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)  # one JSON document: rank 0's (rank 1 prints nothing)
    assert two["split"] == one["split"] and two["patches"] == one["patches"]
    assert two["epochs_run"] == one["epochs_run"] == 2
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert two[key] == pytest.approx(one[key], abs=1e-9)
    assert (tmp_path / "ckpt" / "state.json").is_file()  # rank 0 wrote the checkpoint
    meta = json.loads((tmp_path / "two" / "model.json").read_text())
    assert meta["provenance"]["distributed"] == {"world_size": 2, "backend": "gloo"}

    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert set(w1) == set(w2)
    rel = relative_differences(w1, w2)
    worst = max(rel, key=lambda k: rel[k])
    absolute = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    print(f"2 processes vs 1: max |w1 - w2| = {absolute:.3g}, worst relative {rel[worst]:.3g} ({worst})")
    assert rel[worst] <= TOLERANCE

    # the bound is meaningful: per-process batches (4) instead of the global one move the weights far more
    small = list(args)
    small[small.index("--batch-size") + 1] = "4"
    assert cli.main([*small, "--out", str(tmp_path / "small")]) == 0
    capsys.readouterr()
    rel_small = relative_differences(w1, weights(tmp_path / "small"))
    trained = [k for k in w1 if not k.startswith("norm.")]
    assert min(rel_small[k] for k in trained) > 100 * TOLERANCE


def relative_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """{tensor: max |a - b| / max |a|} (0 for an all-zero tensor that stayed zero)."""
    out = {}
    for k in a:
        scale = float(np.abs(a[k]).max())
        d = float(np.abs(a[k] - b[k]).max())
        out[k] = d / scale if scale > 0 else d
    return out


def test_distributed_outside_torchrun_is_one_line(tmp_path, capsys, monkeypatch):
    import musiclens.cli as cli

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    root = tones(tmp_path / "data")
    rc = cli.main([*train_args(root, tmp_path), "--out", str(tmp_path / "m"), "--distributed"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "torchrun" in err and "RANK" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_distributed_refuses_architectures_outside_the_loop(tmp_path):
    from musiclens.core.errors import ParameterError
    from musiclens.core.training import entry

    with pytest.raises(ParameterError, match="not musicnn-probe"):
        next(entry.train(tones(tmp_path / "data"), None, "musicnn-probe", distributed=True))


def test_sync_batchnorm_is_put_back_with_the_trained_values():
    """The GPU path's BN swap (run here without a process group): the SyncBatchNorm layers
    share their parameters and running statistics with the plain ones, which come back."""
    import torch

    from musiclens.core.training.distributed import World

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    bn = net[1]
    world = World(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="gloo")
    world._sync_batchnorm(net)
    assert isinstance(net[1], torch.nn.SyncBatchNorm) and net[1].weight is bn.weight
    with torch.no_grad():
        net[1].weight.add_(1.0)
        net[1].running_mean.add_(2.0)
    world.unwrap()
    assert net[1] is bn and type(bn) is torch.nn.BatchNorm2d
    assert float(bn.weight.detach()[0]) == 2.0 and float(bn.running_mean[0]) == 2.0
