"""Fuzzing model folders: mutated copies of real model folders loaded in child processes.

    .venv/bin/python tests/fuzz_models.py --n 500 [--seed 0] [--timeout 20] [--memory-mb 1024] [--show 5]

Seeds: the bundled model folders (``resources/models``: MusiCNN, VGG, the MIDI LSTM) and a
tiny user model written here (``net.py`` + safetensors, loaded with ``trust_code``).
Mutators (deterministic per case):

- ``model.json`` fields: a value anywhere in the tree (architecture params, the input spec,
  labels, patch length, weights name...) replaced by NaN, ±Infinity, ``1e999``, huge or
  negative integers, fractions, text, a list around the value, an object, null, a deep
  nesting, a long text; a key deleted, renamed or added;
- ``model.json`` as a file: truncated, bit flips, nested 100,000 deep, 2 MB, not UTF-8, a
  folder, a named pipe, a symlink loop;
- the weights: bit flips, truncation, a NaN or infinity written into a tensor, the
  safetensors header length set to extremes, a pickle posing as weights (``weights.pt`` whose
  unpickling would create a marker file: it must never exist), a folder or a named pipe.

Each case runs ``registry.load`` (and, when it loads, one prediction on a zero batch) in a
forked child with ``RLIMIT_AS``, a CPU-time limit and a wall-clock alarm (the harness of
``tests/fuzz_loaders.py``'s design). A case passes when it loads, or raises a
``MusicLensError`` with a one-line message without Python internals, and neither crashes,
hangs nor exceeds ``--memory-mb`` of peak resident memory. A loaded model whose prediction is
not finite is counted as ``nonfinite`` (finite weights may still overflow; reported, not a
failure). Prints the counts, the errors by message, the peak memory; exits 1 on any failure.
``tests/test_fuzz_models.py`` runs a few hundred cases in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_loaders import FAILURES, Limits, Report, _check_message, describe, vm_size

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "resources" / "models"
SEED_MODELS = ("MTT_musicnn", "MSD_vgg", "midi_style_lstm")
MARKER = "pickle-ran"

TINY_NET = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, n_labels=3, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, n_labels)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
"""


# ------------------------------------------------------------------ seeds
def write_tiny(folder: Path) -> Path:
    """A tiny python user model: net.py, weights.safetensors, model.json (16 mels, 3 labels)."""
    import torch
    from safetensors.torch import save_file

    from musiclens.core.features import logmel_frontend
    from musiclens.core.models import registry

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(TINY_NET)
    namespace: dict = {}
    exec(compile(TINY_NET, "net.py", "exec"), namespace)
    torch.manual_seed(0)
    net = namespace["Tiny"]()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "weights.safetensors"))
    meta = {
        "format": registry.FORMAT,
        "name": "tiny",
        "architecture": {"python": "net.py:Tiny", "params": {"n_labels": 3, "width": 4}},
        "front_end": logmel_frontend(sample_rate=16000, n_fft=256, hop=128, n_mels=16).to_dict(),
        "patch_frames": 16,
        "labels": ["a", "b", "c"],
        "multilabel": False,
    }
    (folder / "model.json").write_text(json.dumps(meta, indent=1))
    return folder


def seed_folders(root: Path) -> list[Path]:
    """Copies of the seed models under ``root`` (read-only originals, never mutated)."""
    seeds = []
    for name in SEED_MODELS:
        dest = root / name
        shutil.copytree(BUNDLED / name, dest)
        seeds.append(dest)
    seeds.append(write_tiny(root / "tiny_user"))
    return seeds


# ------------------------------------------------------------------ model.json mutators
def _paths(value, prefix=()) -> list[tuple]:
    """Every path (tuple of keys / indices) in a JSON tree, the long label lists shortened."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*prefix, i))
    return out


RAW_NUMBERS = ("1e999", "-1e999", "123456789012345678901234567890", "-1e9", "1e9")


def hostile_value(rng: np.random.Generator, old):
    """A replacement value (or a raw-JSON marker for numbers JSON cannot hold in Python)."""
    choices = [
        float("nan"),
        float("inf"),
        float("-inf"),
        -1,
        0,
        1.5,
        10**9,
        2**63,
        -(10**12),
        "text",
        [old],
        {},
        None,
        True,
        "",
        "x" * 100_000,
        [[[[[[[[[[old]]]]]]]]]],
        ("RAW", str(rng.choice(RAW_NUMBERS))),
        [old, old],
        {"nested": old},
    ]
    return choices[int(rng.integers(len(choices)))]


def mutate_meta(meta: dict, rng: np.random.Generator) -> tuple[str, str]:
    """One field change -> (the new model.json text, what was done)."""
    paths = _paths(meta)
    path = paths[int(rng.integers(len(paths)))]
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    action = rng.choice(["value", "value", "value", "delete", "rename", "add"])
    label = ".".join(map(str, path))
    raw = None
    if action == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{key}_x"] = parent.pop(key)
    elif action == "add":
        target = parent if isinstance(parent, dict) else meta
        target["unknown_key"] = 1
    else:
        value = hostile_value(rng, parent[key])
        if isinstance(value, tuple):
            raw = value[1]
            value = "@@RAW@@"
        parent[key] = value
        action = f"value {raw or json.dumps(value, allow_nan=True)[:40]}"
    text = json.dumps(meta, allow_nan=True)
    if raw is not None:
        text = text.replace('"@@RAW@@"', raw)
    return text, f"model.json {label}: {action}"


# ------------------------------------------------------------------ file mutators
def flip_bits(buf: bytearray, rng: np.random.Generator, n: int, start: int = 0) -> None:
    for _ in range(n):
        i = int(rng.integers(start, len(buf)))
        buf[i] ^= 1 << int(rng.integers(8))


def safetensors_layout(buf: bytes) -> tuple[int, dict]:
    """(offset of the data, header) of a safetensors file."""
    (n,) = struct.unpack("<Q", buf[:8])
    return 8 + n, json.loads(buf[8 : 8 + n])


def inject_nonfinite(buf: bytearray, rng: np.random.Generator) -> str:
    start, header = safetensors_layout(bytes(buf))
    names = sorted(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    name = names[int(rng.integers(len(names)))]
    lo, hi = header[name]["data_offsets"]
    i = int(rng.integers(lo // 4, hi // 4))
    value = float(rng.choice([np.nan, np.inf, -np.inf]))
    buf[start + 4 * i : start + 4 * i + 4] = struct.pack("<f", value)
    return f"weights {name}[{i - lo // 4}] = {value}"


def pickle_weights(folder: Path) -> None:
    """weights.pt whose unpickling would create the marker file."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {folder / MARKER}",))

    (folder / "weights.pt").write_bytes(pickle.dumps({"conv.weight": Evil()}))
    meta = json.loads((folder / "model.json").read_text())
    meta["weights"] = "weights.pt"
    (folder / "model.json").write_text(json.dumps(meta))


def mutate_folder(folder: Path, rng: np.random.Generator) -> str:
    """One mutation of a model folder (a copy) -> what was done."""
    meta_path = folder / "model.json"
    weights = folder / "weights.safetensors"
    kind = rng.choice(
        ["field"] * 10 + ["field2"] * 3 + ["json_file"] * 3 + ["weights"] * 4 + ["pickle", "special"],
    )
    if kind in ("field", "field2"):
        text, what = mutate_meta(json.loads(meta_path.read_text()), rng)
        if kind == "field2":
            more, what2 = mutate_meta(json.loads(text), rng)
            text, what = more, f"{what} + {what2}"
        meta_path.write_text(text)
        return what
    if kind == "json_file":
        buf = bytearray(meta_path.read_bytes())
        how = rng.choice(["truncate", "flip", "deep", "huge", "latin1"])
        if how == "truncate":
            buf = buf[: int(rng.integers(0, len(buf)))]
        elif how == "flip":
            flip_bits(buf, rng, int(rng.integers(1, 20)))
        elif how == "deep":
            buf = bytearray(b"[" * 100_000 + b"]" * 100_000)
        elif how == "huge":
            buf = bytearray(buf[:-1] + b', "provenance": {"x": "' + b"y" * 2_000_000 + b'"}}')
        else:
            buf = bytearray(buf.replace(b'"', b'"\xe9', 1))
        meta_path.write_bytes(bytes(buf))
        return f"model.json file: {how}"
    if kind == "pickle":
        pickle_weights(folder)
        return "a pickle posing as weights.pt"
    if kind == "special":
        which = rng.choice(["meta_dir", "meta_fifo", "meta_loop", "weights_dir", "weights_fifo", "weights_link"])
        target = meta_path if which.startswith("meta") else weights
        target.unlink()
        if which.endswith("dir"):
            target.mkdir()
        elif which.endswith("fifo"):
            os.mkfifo(target)
        elif which.endswith("loop"):
            os.symlink(target.name, target)
        else:
            os.symlink("/etc/passwd", target)
        return f"special file: {which}"
    buf = bytearray(weights.read_bytes())
    how = rng.choice(["flip", "flip_header", "truncate", "nonfinite", "header_length"])
    if how == "flip":
        start, _ = safetensors_layout(bytes(buf))
        flip_bits(buf, rng, int(rng.integers(1, 50)), start)
        what = "weights: bit flips in the data"
    elif how == "flip_header":
        start, _ = safetensors_layout(bytes(buf))
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(8, start))
            buf[i] ^= 1 << int(rng.integers(8))
        what = "weights: bit flips in the header"
    elif how == "truncate":
        buf = buf[: int(rng.integers(0, len(buf)))]
        what = f"weights: truncated to {len(buf)} bytes"
    elif how == "nonfinite":
        what = inject_nonfinite(buf, rng)
    else:
        value = int(rng.choice([0, 1, 2**32, 2**63 - 1, len(buf), len(buf) - 9]))
        buf[:8] = struct.pack("<Q", value)
        what = f"weights: header length {value}"
    weights.write_bytes(bytes(buf))
    return what


# ------------------------------------------------------------------ one case in a child
def model_case(folder: str) -> dict:
    """registry.load, then a prediction on a zero batch of the model's input shape."""
    import warnings

    import torch

    from musiclens.core.models import registry
    from musiclens.core.models.discover import probe_input

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # torch.load's note on pickle protocols
    try:
        model = registry.load(folder, trust_code=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted by _check_message
        return _check_message(exc)
    x, mask = probe_input(model.input, model.patch_frames, batch=2)
    with torch.no_grad():
        p = model.predict(x, mask)
    if p.shape != (2, len(model.labels)):
        return {"outcome": "mismatch", "message": f"output {tuple(p.shape)} for {len(model.labels)} labels"}
    if not bool(torch.isfinite(p).all()):
        return {"outcome": "nonfinite", "message": "a prediction that is not finite"}
    return {"outcome": "ok"}


def _special_files(folder: str, names: list[str]) -> list[str]:
    """For ``shutil.copytree(ignore=...)``: the names in ``folder`` that are neither regular
    files, folders nor links (a named pipe would block or fail the copy)."""
    import stat

    def special(name: str) -> bool:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))

    return [n for n in names if special(n)]


def run_case(fn: Callable[[str], dict], arg: str, limits: Limits, base_vm: int) -> tuple[dict, float, float]:
    """Fork a child that runs ``fn(arg)`` -> (result, the child's peak RSS in MB beyond what it
    inherited at the fork (the parent's resident pages count in a forked child's RSS), seconds)."""
    inherited_mb = vm_size("VmRSS") / 2**20
    r_fd, w_fd = os.pipe()
    t0 = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            import faulthandler

            faulthandler.disable()
            os.close(r_fd)
            limit = base_vm + int(limits.memory_mb * 1.5) * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            cpu = int(limits.timeout_s) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, limits.timeout_s)
            try:
                result = fn(arg)
            except MemoryError:
                result = {"outcome": "memory", "message": f"MemoryError (over {limits.memory_mb} MB)"}
            except Exception as exc:  # noqa: BLE001 - after the load: a foreign error
                result = _check_message(exc)
            os.write(w_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w_fd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    with os.fdopen(r_fd, "rb") as r:
        raw = r.read()
    rss_mb = max(0.0, usage.ru_maxrss / 1024 - inherited_mb)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name
        if sig in (signal.SIGALRM, signal.SIGXCPU, signal.SIGKILL):
            return {"outcome": "hang", "message": f"over {limits.timeout_s:g} s ({name})"}, rss_mb, seconds
        return {"outcome": "crash", "message": f"killed by {name}"}, rss_mb, seconds
    try:
        result = json.loads(raw)
    except json.JSONDecodeError:
        return {"outcome": "crash", "message": f"no result (exit status {status})"}, rss_mb, seconds
    if rss_mb > limits.memory_mb and result["outcome"] in ("ok", "error", "nonfinite"):
        result = {"outcome": "memory", "message": f"peak RSS {rss_mb:.0f} MB (over {limits.memory_mb} MB)"}
    return result, rss_mb, seconds


def fuzz(cases: int, *, seed: int = 0, limits: Limits | None = None, work: Path | None = None) -> Report:
    """``cases`` mutated model folders, each loaded in a child process -> :class:`Report`
    (``report.counts["pickle_ran"]`` counts pickles that ran: must stay 0)."""
    import torch  # noqa: F401 - imported once here, so each forked case is cheap

    from musiclens.core.models import registry, user_models  # noqa: F401

    for module in registry.FAMILY_MODULES:
        __import__(module)
    limits = limits or Limits(timeout_s=20.0, memory_mb=1024)
    report = Report()
    report.types = Counter()  # type: ignore[attr-defined]  # the exception types of the errors
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-models-", dir=work) as tmp:
        seeds = seed_folders(Path(tmp) / "seeds")
        for folder in seeds:  # warm up (lazy imports, meta-device kernels): each child starts from here
            model_case(str(folder))
        base_vm = vm_size()
        for i in range(cases):
            rng = np.random.default_rng([seed, i, 2])
            src = seeds[i % len(seeds)]
            case = Path(tmp) / f"case{i % 4}"
            if case.exists() or case.is_symlink():
                shutil.rmtree(case)
            shutil.copytree(src, case, symlinks=True)
            what = mutate_folder(case, rng)
            result, rss, seconds = run_case(model_case, str(case), limits, base_vm)
            if (case / MARKER).exists():
                result = {"outcome": "pickle_ran", "message": "a pickle posing as weights ran"}
            outcome = result["outcome"]
            report.counts[outcome] += 1
            report.cases += 1
            if rss > report.peak_rss_mb:
                report.peak_rss_mb, report.peak_case = rss, f"{src.name}: {what}"
            report.slowest_s = max(report.slowest_s, seconds)
            if outcome in ("error", "internal", "foreign"):
                report.types[f"{outcome}: {result.get('type')}"] += 1  # type: ignore[attr-defined]
            if outcome == "error":
                text = re.sub(r"\S*" + re.escape(tmp) + r"\S*", "FOLDER", result["message"])
                report.messages[re.sub(r"-?\d[\d.e+,]*", "N", text)[:110]] += 1
            if outcome in FAILURES or outcome == "pickle_ran" or outcome == "nonfinite":
                keep = Path(tmp).parent / "fuzz-failures-models"
                keep.mkdir(exist_ok=True)
                saved = keep / f"case{i}"
                if saved.exists():
                    shutil.rmtree(saved)
                shutil.copytree(  # a FIFO or a device among the mutations is left out of the copy
                    case, saved, symlinks=True, ignore_dangling_symlinks=True, ignore=_special_files
                )
                report.examples.setdefault(outcome, []).append(
                    {"case": i, "seed_file": src.name, "mutation": what, "saved": str(saved)} | result
                )
    report.seconds = time.perf_counter() - t0
    return report


def failed(report: Report) -> int:
    """Cases that failed: a foreign exception, internals in a message, a crash, a hang, too
    much memory, a wrong output shape, or a pickle that ran."""
    return report.failed() + report.counts["pickle_ran"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--memory-mb", type=int, default=1024, help="peak resident memory a case may reach")
    ap.add_argument("--show", type=int, default=5, help="examples shown per failure kind")
    args = ap.parse_args(argv)
    report = fuzz(args.n, seed=args.seed, limits=Limits(args.timeout, args.memory_mb))
    print(describe("model folders", report, show=args.show))
    print("errors by type: " + ", ".join(f"{k} {v}" for k, v in report.types.most_common()))  # type: ignore[attr-defined]
    print(f"failed (with pickles that ran): {failed(report)}")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
