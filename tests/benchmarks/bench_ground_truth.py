"""Benchmark: do the attribution maps point at the evidence? A ground truth by construction.

    .venv/bin/python tests/benchmarks/bench_ground_truth.py [--n 60] [--threads 1] [--model MTT_musicnn]
        [--snr 10] [--methods grad-cam,ig,...] [--ig-steps K] [--sg-samples K] [--window FRAMES,BINS]
        [--seed 0] [--part K/N] [--json OUT.json]
    .venv/bin/python tests/benchmarks/bench_ground_truth.py --merge OUT0.json OUT1.json ...

``--part K/N`` runs every N-th mixture (the same mixtures whatever N: run the parts side by
side and ``--merge`` their JSON, which is written after every mixture, so a stopped part
still counts what it did).

An instrument sample (../shared/data/audio/tonejs-audio: Salamander piano notes, Berklee
guitar chords and riffs, drum-kit patterns built from single hits and the breakbeat) is
mixed into a 3 s GTZAN background (one MusiCNN patch, ../shared/data/audio/
gtzan-excerpts-zenny126) at a random time, ``--snr`` dB above the background (RMS over the
sample's own duration). The evidence is then known: the box (``localisation.energy_box``)
= the shortest run of frames holding 99 % (where the sample sounds) × the shortest run of
mel bands holding 90 % (within those frames) of the rise the sample causes in the model's
input (the front end of the mixture minus that of the background: log-mel, what the model
sees). ``--box-on power`` uses the sample's own mel power instead: most of it sits in the
lowest bands (fundamentals), so those boxes cover 2-5 % of the grid and miss the harmonics
and attacks the model hears (measured on 6 mixtures: Grad-CAM 0 %, gradient 0 %, gradient × input
17 % pointing).

For the model's tag naming that instrument ("piano", "guitar", "drums": MTT_musicnn is the
bundled MusiCNN with these tags; MSD_musicnn's only instrument tag is "guitar"), every
method of the method table that works on audio (read at run time; layer methods at the
first conv layer, options = the table's ``quick`` ones, what the window runs) gives a map
on the mel grid (``Method.input_map``), scored by

* pointing accuracy: share of mixtures where the map's maximum lies in the box;
* share in box: positive attribution inside the box / all positive attribution;

against a random map (uniform noise) scored in the same run and the box's area share (the
expected score of a random map). Backgrounds are drawn from the half of the GTZAN windows
where the tag's probability is lowest, so the sample adds the evidence; the tag's
probability before and after mixing is reported per instrument.

Needs ../shared/data (exits with a message without it). Ratios and scores only, no
timed assertions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core import audio  # noqa: E402
from musiclens.core.analyses.explanation import default_layer  # noqa: E402
from musiclens.core.errors import MusicLensError  # noqa: E402
from musiclens.core.features import mel_basis, stft  # noqa: E402
from musiclens.core.interpret import methods  # noqa: E402
from musiclens.core.interpret.localisation import area_share, energy_box, pointing_hit, share_in_box  # noqa: E402
from musiclens.core.models import registry  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "audio"
TONEJS = DATA / "tonejs-audio"
GTZAN = DATA / "gtzan-excerpts-zenny126"
SAMPLE_SECONDS = 1.2  # each placed sample, with a 50 ms fade-out
FADE_SECONDS = 0.05

PIANO = [f"salamander/{n}.mp3" for n in ("A2", "C3", "Fs3", "C4", "A4", "C5", "C6")]
GUITAR = [f"berklee/{n}.mp3" for n in ("guitar_chord1", "guitar_chord2", "guitar_riff_cutup1", "guitar_riff_cutup2")]
KITS = ("acoustic-kit", "Kit8")
#: a one-bar pattern at 100 bpm (seconds, hit) for the drum kits
PATTERN = ((0.0, "kick"), (0.0, "hihat"), (0.3, "hihat"), (0.6, "snare"), (0.6, "hihat"), (0.9, "hihat"), (0.9, "kick"))


def onset(y: np.ndarray, sr: int) -> int:
    """First sample within 30 dB of the peak (the sample's attack)."""
    env = np.abs(y)
    return int(np.argmax(env >= env.max() * 10 ** (-30 / 20)))


def clip_of(y: np.ndarray, sr: int, start: int = 0) -> np.ndarray:
    """SAMPLE_SECONDS of ``y`` from ``start`` with a fade-out (zero-padded if shorter)."""
    n = int(SAMPLE_SECONDS * sr)
    out = np.zeros(n, np.float32)
    seg = y[start : start + n]
    out[: len(seg)] = seg
    fade = int(FADE_SECONDS * sr)
    out[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return out


def instrument_samples(sr: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Tag -> [(name, (samples,) float32 at ``sr``)]."""
    out: dict[str, list[tuple[str, np.ndarray]]] = {"piano": [], "guitar": [], "drums": []}
    for rel in PIANO:
        y, _ = audio.load(TONEJS / rel, sr=sr)
        out["piano"].append((rel, clip_of(y, sr, onset(y, sr))))
    for rel in GUITAR:
        y, _ = audio.load(TONEJS / rel, sr=sr)
        out["guitar"].append((rel, clip_of(y, sr, onset(y, sr))))
    for kit in KITS:
        hits = {h: audio.load(TONEJS / "drum-samples" / kit / f"{h}.mp3", sr=sr)[0] for h in ("kick", "snare", "hihat")}
        bar = np.zeros(int(SAMPLE_SECONDS * sr) + sr, np.float32)
        for t, h in PATTERN:
            a = int(t * sr)
            bar[a : a + len(hits[h])] += hits[h] * (0.5 if h == "hihat" else 1.0)
        out["drums"].append((f"drum-samples/{kit} pattern", clip_of(bar, sr)))
    y, _ = audio.load(TONEJS / "drum-samples" / "breakbeat.mp3", sr=sr)
    for start_s in (0.0, 1.2, 2.4):
        out["drums"].append((f"drum-samples/breakbeat @{start_s} s", clip_of(y, sr, int(start_s * sr))))
    return out


def backgrounds(m, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One patch-long window of every GTZAN excerpt, at a random offset."""
    out = []
    n = m.patch_samples
    for path in sorted(GTZAN.glob("*/*.wav")):
        y, _ = audio.load(path, sr=m.sample_rate)
        a = int(rng.integers(0, max(1, len(y) - n)))
        out.append((path.name, y[a : a + n].astype(np.float32)))
    return out


def probability(m, y: np.ndarray, tag: int) -> float:
    with torch.no_grad():
        x = m.front_end(torch.from_numpy(y)[None].to(m.device))
        return float(m.probabilities(m.net(x))[0, tag])


def features(m, y: np.ndarray) -> np.ndarray:
    """(samples,) -> the model's input (F, T) (its front end's first channel)."""
    with torch.no_grad():
        return m.front_end(torch.from_numpy(np.asarray(y, np.float32))[None])[0, 0].numpy()


def mel_power(m, y: np.ndarray) -> np.ndarray:
    """(samples,) -> (n_mels, T) mel power on the model's front-end grid."""
    fe = m.front_end
    spec = stft(torch.from_numpy(y)[None], fe)[0]
    return (mel_basis(fe) @ (spec.real**2 + spec.imag**2)).numpy()


def mixtures(
    m,
    n: int,
    snr_db: float,
    rng: np.random.Generator,
    *,
    energy: float = 0.9,
    time_energy: float = 0.99,
    box_on: str = "input",
):
    """Yield n dicts: tag, sample, background, mixture (samples,), box (F, T), p_before, p_after."""
    sr = m.sample_rate
    samples = instrument_samples(sr)
    bgs = backgrounds(m, rng)
    tags = list(samples)
    pools = {}
    for tag in tags:  # the half of the backgrounds where the tag is least likely
        idx = m.label_index(tag)
        ps = np.array([probability(m, y, idx) for _, y in bgs])
        pools[tag] = [(bgs[i], float(ps[i])) for i in np.argsort(ps)[: len(bgs) // 2]]
    for i in range(n):
        tag = tags[i % len(tags)]
        name, s = samples[tag][(i // len(tags)) % len(samples[tag])]
        (bg_name, bg), _ = pools[tag][int(rng.integers(len(pools[tag])))]
        start = int(rng.integers(int(0.1 * sr), len(bg) - len(s) - int(0.1 * sr)))
        gain = 10 ** (snr_db / 20) * np.sqrt(np.mean(bg**2)) / max(1e-9, np.sqrt(np.mean(s**2)))
        placed = np.zeros_like(bg)
        placed[start : start + len(s)] = gain * s
        scale = min(1.0, 0.99 / max(1e-9, float(np.abs(bg + placed).max())))  # within full scale, both alike
        bg, placed = bg * scale, placed * scale
        mix = bg + placed
        if box_on == "input":  # where the sample raised the model's input (its log-mel)
            grid = features(m, mix) - features(m, bg)
        else:  # where the sample's own mel power is
            grid = mel_power(m, placed)
        box = energy_box(np.clip(grid, 0, None), energy=energy, time_energy=time_energy)
        yield {
            "tag": tag,
            "sample": name,
            "background": bg_name,
            "mix": mix.astype(np.float32),
            "box": box,
            "start_s": start / sr,
            "p_before": probability(m, bg.astype(np.float32), m.label_index(tag)),
            "p_after": probability(m, mix.astype(np.float32), m.label_index(tag)),
        }


def report(rows: dict, facts: list, failed: dict, head: str, tail: str) -> dict:
    """Print the tables (stdout) from the per-mixture scores; returns the summary per method."""
    tags = sorted({f["tag"] for f in facts})
    area = np.array([f["area_share"] for f in facts])
    print("\n" + head)
    print("tag      mixtures  P(tag) background -> mixture (mean)  rose in  box area share (mean)")
    for tag in tags:
        f = [x for x in facts if x["tag"] == tag]
        before, after = np.mean([x["p_before"] for x in f]), np.mean([x["p_after"] for x in f])
        rose = np.mean([x["p_after"] > x["p_before"] for x in f])
        print(
            f"{tag:<8} {len(f):>8}  {before:>17.3f} -> {after:<7.3f}          {100 * rose:5.0f} %  "
            f"{100 * np.mean([x['area_share'] for x in f]):8.1f} %"
        )
    title = "method                 pointing (± s.e.)  share in box  " + "  ".join(f"{t:>7}" for t in tags) + "  s/map"
    print("\n" + title)
    print("-" * len(title))
    summary = {}
    for name, row in rows.items():
        if not row["hit"]:
            continue
        hit, share = np.array(row["hit"]), np.array(row["share"])
        se = np.sqrt(hit.mean() * (1 - hit.mean()) / len(hit))
        per = [np.mean([h for h, t in zip(hit, row["tag"]) if t == tag]) for tag in tags]
        print(
            f"{name:<22} {100 * hit.mean():6.1f} % (± {100 * se:4.1f})  {100 * share.mean():9.1f} %  "
            + "  ".join(f"{100 * p:6.0f}%" for p in per)
            + f"  {np.mean(row['seconds']):5.2f}"
        )
        summary[name] = {
            "mixtures": len(hit),
            "pointing": float(hit.mean()),
            "share_in_box": float(share.mean()),
            "per_tag_pointing": dict(zip(tags, map(float, per))),
            "seconds_per_map": float(np.mean(row["seconds"])),
        }
    print(
        f"{'box area share':<22} {100 * area.mean():6.1f} %            {100 * area.mean():9.1f} %"
        "  (a random map's expectation)"
    )
    for name, why in failed.items():
        print(f"{name:<22} not run: {why}")
    print(tail)
    return summary


def merge(paths: list[str]) -> int:
    """Join the per-mixture scores of several ``--part`` runs and print one table."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    rows: dict[str, dict[str, list]] = {}
    for part in parts:
        for name, row in part["rows"].items():
            into = rows.setdefault(name, {k: [] for k in row})
            for k, v in row.items():
                into[k].extend(v)
    facts = [f for part in parts for f in part["mixtures"]]
    failed = {k: v for part in parts for k, v in part["failed"].items()}
    first = parts[0]
    head = first["head"].replace(f"part {first['part']}", f"{len(parts)} parts merged")
    wall = max(p["seconds"] for p in parts)
    tail = f"{first['tail']}; parts ran side by side: {wall:.0f} s wall (longest part), " + ", ".join(
        f"{p['seconds']:.0f} s" for p in parts
    )
    report(rows, facts, failed, head.replace(f"{first['n']} mixtures", f"{len(facts)} mixtures"), tail)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="mixtures (at least 50 for the report)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--model", default="MTT_musicnn")
    ap.add_argument("--snr", type=float, default=10.0, help="sample level above the background, dB (RMS)")
    ap.add_argument("--methods", default=None, help="comma-separated method names (default: every audio method)")
    ap.add_argument("--energy", type=float, default=0.9, help="the box's bands hold this share of the energy")
    ap.add_argument("--time-energy", type=float, default=0.99, help="the box's frames hold this share of the energy")
    ap.add_argument(
        "--box-on",
        choices=("input", "power"),
        default="input",
        help="the box holds the share of: the rise of the model's input caused by the sample (input), or the "
        "sample's own mel power (power)",
    )
    ap.add_argument("--ig-steps", type=int, default=None, help="integrated gradients' steps (default: the quick ones)")
    ap.add_argument("--sg-samples", type=int, default=None, help="smoothgrad's noisy copies (default: the quick ones)")
    ap.add_argument(
        "--window", default=None, help="occlusion / feature ablation: FRAMES,BINS (default: the quick ones)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", default="0/1", help="K/N: run mixtures K, K+N, K+2N, ... (merge the parts' --json)")
    ap.add_argument("--json", default=None, help="also write the per-mixture scores here")
    ap.add_argument("--merge", nargs="+", default=None, help="print one table from the --json files of the parts")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge)
    if not TONEJS.is_dir() or not GTZAN.is_dir():
        print(f"needs {TONEJS} and {GTZAN} (../shared/data)", file=sys.stderr)
        return 2
    part_k, n_parts = (int(v) for v in args.part.split("/"))
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    m = registry.load(args.model, device="cpu")
    chosen = [methods.get(n) for n in args.methods.split(",")] if args.methods else methods.select(kind="audio")
    rng = np.random.default_rng(args.seed)
    # every method's quick options (what the window runs), then the ones asked for
    options = {k: v for meth in chosen for k, v in meth.quick}
    options.update({k: v for k, v in (("steps", args.ig_steps), ("n_samples", args.sg_samples)) if v is not None})
    if args.window:
        options["frames"], options["bins"] = (int(v) for v in args.window.split(","))
    names = [meth.name for meth in chosen] + ["random map"]
    rows: dict[str, dict[str, list]] = {k: {"hit": [], "share": [], "seconds": [], "tag": []} for k in names}
    failed: dict[str, str] = {}
    facts = []
    boxes = mixtures(m, args.n, args.snr, rng, energy=args.energy, time_energy=args.time_energy, box_on=args.box_on)
    for i, mx in enumerate(boxes):
        if i % n_parts != part_k:
            continue
        x = m.front_end(torch.from_numpy(mx["mix"])[None])
        box, tag = mx["box"], mx["tag"]
        facts.append({k: v for k, v in mx.items() if k not in ("mix", "box")} | {"area_share": area_share(box)})
        for meth in chosen:
            if meth.name in failed:
                continue
            layer = default_layer(m) if meth.needs_layer else None
            t = time.perf_counter()
            try:
                r = meth(m, x, target=tag, layer=layer, **meth.supported(options))
            except MusicLensError as exc:
                failed[meth.name] = str(exc)
                continue
            values = meth.input_map(r, x.shape[-2:])[0].detach().float().numpy()
            row = rows[meth.name]
            row["seconds"].append(time.perf_counter() - t)
            row["hit"].append(pointing_hit(values, box))
            row["share"].append(share_in_box(values, box))
            row["tag"].append(tag)
        noise = np.random.default_rng([args.seed, i]).random(box.shape)  # its own stream: the parts agree
        rows["random map"]["hit"].append(pointing_hit(noise, box))
        rows["random map"]["share"].append(share_in_box(noise, box))
        rows["random map"]["seconds"].append(0.0)
        rows["random map"]["tag"].append(tag)
        slowest = max((n for n in names if rows[n]["seconds"]), key=lambda n: rows[n]["seconds"][-1])
        print(
            f"mixture {i + 1}/{args.n}: {tag} ({mx['sample']}) in {mx['background']}, "
            f"P({tag}) {mx['p_before']:.2f} -> {mx['p_after']:.2f}, box {100 * area_share(box):.1f} % "
            f"[{time.perf_counter() - t_start:.0f} s; slowest {slowest} {rows[slowest]['seconds'][-1]:.1f} s]",
            file=sys.stderr,
            flush=True,
        )
        save(args, rows, facts, failed, time.perf_counter() - t_start, options, default_layer(m))
    total = time.perf_counter() - t_start
    head, tail = save(args, rows, facts, failed, total, options, default_layer(m))
    report(rows, facts, failed, head, tail)
    return 0


def save(args, rows: dict, facts: list, failed: dict, seconds: float, options: dict, layer: str) -> tuple[str, str]:
    """Write the per-mixture scores so far to ``--json`` (after every mixture: a long run can be
    stopped and what it did merged); returns the table's head and tail lines."""
    head = (
        f"{args.model}, {args.n} mixtures, part {args.part}, SNR {args.snr:+g} dB, box on {args.box_on}, "
        f"seed {args.seed}, {args.threads} thread(s)"
    )
    tail = f"layer methods at {layer!r}; options {options}; this part {seconds:.0f} s for {len(facts)} mixtures"
    if args.json:
        record = {"rows": rows, "failed": failed, "mixtures": facts, "seconds": seconds, "head": head, "tail": tail}
        Path(args.json).write_text(json.dumps(record | {"part": args.part, "n": args.n}, indent=1))
    return head, tail


if __name__ == "__main__":
    sys.exit(main())
