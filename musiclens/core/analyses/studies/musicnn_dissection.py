"""Study 4: a layer-by-layer dissection of the pretrained MusiCNN (Pons & Serra).

On the bundled MTT_musicnn and MSD_musicnn: the front-end filters (561), the dense matrix W
(753 rows x 187 frames on a patch), kernel norms and dead kernels per layer, batch-norm
parameters and per-unit time series of W on a clip. The study's claims come from the team's
DESIGN.md and issue 21 (cited per row); where they give no number the report says "not stated".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.studies.report import StudyReport, claims_table, make_folder, pyplot, write_report
from musiclens.core.errors import ParameterError
from musiclens.core.progress import Progress

#: the two pretrained MusiCNN models the dissection compares
DISSECTION_MODELS = ("MTT_musicnn", "MSD_musicnn")
#: patches of the clip read by ``--quick`` (3 s each)
QUICK_PATCHES = 3


def _clip_path(data: str | os.PathLike[str] | None) -> Path:
    """The clip the per-unit time series read: ``data`` (an audio file, or the first audio
    file of a folder, sorted by name), else the bundled demo recording."""
    from musiclens.core.audio import AUDIO_EXTENSIONS
    from musiclens.core.resources import demo_recording

    if data is None:
        return demo_recording()
    p = Path(data)
    if p.is_file():
        return p
    if not p.is_dir():
        raise ParameterError(f"--data must be an audio file or a folder of audio files, got {p} (not found)")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ParameterError(f"--data {p} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files[0]


def _conv_layers(net: Any) -> list[tuple[str, Any]]:
    from torch import nn

    return [(p, m) for p, m in net.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def front_end_filters(m: Any) -> dict[str, int]:
    """Filters per front-end branch, read from the model's modules: {branch: out_channels}."""
    return {p: int(mod.out_channels) for p, mod in _conv_layers(m.net) if p.startswith("front_end.")}


def parameter_counts(m: Any) -> dict[str, int]:
    """The checkpoint's view of the net: ``values`` (parameters + batch-norm moving stats),
    ``trainable_tensors``, ``moving_stat_tensors`` (running mean and variance)."""
    params = list(m.net.parameters())
    stats = [b for n, b in m.net.named_buffers() if n.endswith(("running_mean", "running_var"))]
    return {
        "values": int(sum(p.numel() for p in params) + sum(b.numel() for b in stats)),
        "trainable_tensors": len(params),
        "moving_stat_tensors": len(stats),
    }


# ----------------------------------------------------------------------------- musicnn-dissection
def _dissect_model(m: Any, patches: Any) -> dict[str, Any]:
    """Numbers of one MusiCNN model: filters, W, kernels, batch norms, per-unit activity."""
    from musiclens.core.interpret.activity import unit_activity
    from musiclens.core.interpret.kernels import kernel_stats
    from musiclens.core.tagging import dense_matrix

    stats = kernel_stats(m)
    fe = front_end_filters(m)
    d = dense_matrix(m, patches)
    w = d["W"].double().numpy()  # (P, 753, T)
    conv_paths = [c["module"] for c in stats["conv"]]
    act = unit_activity(m, patches, layers=conv_paths)
    series = np.concatenate(list(w), axis=-1)  # (753, P·T): the clip's time series per unit
    constant = series.std(axis=1) <= 1e-6 * max(float(np.abs(series).max()), 1e-12)
    groups = []
    for name, start, stop in d["row_groups"]:
        groups.append({"group": name, "rows": [start, stop], "constant_rows_on_clip": int(constant[start:stop].sum())})
    layers = []
    for c in stats["conv"]:
        a = act[c["module"]]
        norm_dead = set(c["dead_indices"])
        layers.append(
            {
                "layer": c["layer"],
                "module": c["module"],
                "kernel_shape": c["kernel_shape"],
                "kernels": c["kernel_shape"][0],
                "dead_by_norm": c["dead"],
                "dead_by_norm_indices": c["dead_indices"],
                "never_positive_on_clip": len(a.dead),
                "dead_by_norm_and_never_positive": len(norm_dead & set(a.dead)),
                "max_norm": c["max_norm"],
                "median_norm": c["median_norm"],
                "frobenius": c["frobenius"],
            }
        )
    bns = []
    for b in stats["batchnorm"]:
        g = np.asarray(b["gamma"], dtype=float)
        beta = np.asarray(b["beta"], dtype=float)
        var = np.asarray(b["moving_variance"], dtype=float)
        bns.append(
            {
                "layer": b["layer"],
                "module": b["module"],
                "units": len(g),
                "eps": b["eps"],
                "gamma_mean": float(g.mean()),
                "gamma_abs_min": float(np.abs(g).min()),
                "beta_mean": float(beta.mean()),
                "beta_abs_max": float(np.abs(beta).max()),
                "moving_variance_median": float(np.median(var)),
                "gamma": g.tolist(),
                "beta": beta.tolist(),
            }
        )
    return {
        "model": m.name,
        "front_end_filters": fe,
        "front_end_total": sum(fe.values()),
        "W_shape_per_patch": list(w.shape[1:]),
        "patches": int(w.shape[0]),
        "row_groups": groups,
        "kernels": {"total": stats["totals"]["kernels"], "dead": stats["totals"]["dead"]},
        "dead_rel_tol": stats["dead_rel_tol"],
        "conv": layers,
        "batchnorm": bns,
        "dense": [{"layer": x["layer"], "weight_shape": x["weight_shape"]} for x in stats["dense"]],
        "parameters": parameter_counts(m),
        "_series": series,  # (753, P·T), for the figures; dropped before writing JSON
        "_energy": d["energy"].double().mean(0).numpy(),  # (753,)
        "_groups": d["row_groups"],
    }


def _figures(out: Path, per: dict[str, dict[str, Any]], frame_s: float) -> list[Path]:
    plt = pyplot()
    files = []
    names = list(per)
    colours = dict(zip(names, ("tab:blue", "tab:orange"), strict=False))

    # 1. kernel norms per layer, sorted, both models
    layers = [c["layer"] for c in per[names[0]]["conv"]]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, i in zip(axes.flat, range(len(layers)), strict=False):
        for n in names:
            norms = np.sort(per[n]["conv"][i]["frobenius"])[::-1]
            ax.plot(norms, color=colours[n], label=f"{n} ({per[n]['conv'][i]['dead_by_norm']} dead)")
        ax.set_title(layers[i].replace(" / conv", ""), fontsize=9)
        ax.set_xlabel("kernel (sorted)")
        ax.set_ylabel("Frobenius norm")
        ax.legend(fontsize=7)
    fig.suptitle("Kernel norms per conv layer (dead = norm <= 0.001 x the layer's largest)")
    fig.tight_layout()
    files.append(out / "kernel_norms.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    # 2. dead kernels per layer
    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = np.arange(len(layers))
    for j, n in enumerate(names):
        frac = [c["dead_by_norm"] / c["kernels"] for c in per[n]["conv"]]
        bars = ax.bar(x + (j - 0.5) * 0.4, frac, 0.4, color=colours[n], label=n)
        for b, c in zip(bars, per[n]["conv"], strict=True):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), str(c["dead_by_norm"]), ha="center", fontsize=7)
    ax.set_xticks(x, [lay.replace("front end / ", "").replace(" / conv", "") for lay in layers], fontsize=8)
    ax.set_ylabel("fraction of kernels dead")
    ax.set_title("Dead kernels per layer (count above each bar)")
    ax.legend()
    fig.tight_layout()
    files.append(out / "dead_kernels.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    # 3. batch-norm gamma and beta per layer
    bn_layers = [b["layer"] for b in per[names[0]]["batchnorm"]]
    fig, axes = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    for ax, key in zip(axes, ("gamma", "beta"), strict=True):
        for j, n in enumerate(names):
            data = [b[key] for b in per[n]["batchnorm"]]
            pos = np.arange(len(data)) * 3 + j
            bp = ax.boxplot(data, positions=pos, widths=0.8, patch_artist=True, showfliers=False)
            for box in bp["boxes"]:
                box.set_facecolor(colours[n])
        ax.set_ylabel(key)
        ax.axhline(0, color="grey", lw=0.5)
    axes[1].set_xticks(np.arange(len(bn_layers)) * 3 + 0.5, bn_layers, rotation=60, ha="right", fontsize=7)
    axes[0].set_title("Batch-norm parameters per layer (" + " vs ".join(f"{n}: {colours[n]}" for n in names) + ")")
    fig.tight_layout()
    files.append(out / "batchnorm.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    # 4. W on the first patch, and 5. per-unit time series, one figure per model
    for n in names:
        series, groups = per[n]["_series"], per[n]["_groups"]
        t = per[n]["W_shape_per_patch"][1]
        fig, ax = plt.subplots(figsize=(9, 8))
        im = ax.imshow(series[:, :t], aspect="auto", origin="lower", interpolation="nearest", cmap="magma")
        for _, start, _stop in groups[1:]:
            ax.axhline(start - 0.5, color="cyan", lw=0.5)
        ax.set_yticks([(a + b) / 2 for _, a, b in groups], [g.split(" / ")[-1] for g, _, _ in groups], fontsize=7)
        ax.set_xlabel("frame of the first patch")
        ax.set_title(f"{n}: W on the first patch {tuple(per[n]['W_shape_per_patch'])}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        files.append(out / f"W_{n}.png")
        fig.savefig(files[-1], dpi=80)
        plt.close(fig)

        energy = per[n]["_energy"]
        fig, axes = plt.subplots(len(groups), 1, figsize=(12, 1.6 * len(groups)), sharex=True)
        times = np.arange(series.shape[1]) * frame_s
        for ax, (g, a, b) in zip(axes, groups, strict=True):
            top = a + int(np.argmax(energy[a:b]))
            ax.plot(times, series[top], lw=0.7, color=colours[n])
            ax.set_title(f"{g}: unit {top - a} (row {top}), the group's most energetic", fontsize=8)
        axes[-1].set_xlabel("time in the clip (s)")
        fig.suptitle(f"{n}: per-unit time series of W on the clip")
        fig.tight_layout()
        files.append(out / f"unit_series_{n}.png")
        fig.savefig(files[-1], dpi=80)
        plt.close(fig)
    return files


#: (quantity, the study's claim, where it is stated)
_CLAIMS = {
    "front_end": ("561 (204 + 204 timbral, 3 x 51 temporal)", "DESIGN.md (conv2d..4 roles, mid end 561→64)"),
    "W": ("753 x 187", "issue 21 (item 4); DESIGN.md: 1506 interleaved pool values = 2 x 753 rows"),
    "kernels": ("7x38, 7x67, 128/64/32x1; mid end 7-wide 561→64, 64→64, 64→64", "DESIGN.md"),
    "dead": ("not stated", "DESIGN.md lists dead filters among the statistics, gives no counts"),
    "norms": ("not stated", "DESIGN.md: Frobenius norms, no values"),
    "bn": ("eps 1e-3; 11 batch norms (input, 8 conv, pool, dense)", "DESIGN.md"),
    "params": ("792,079 values; 42 trainable tensors, 22 moving stats", "DESIGN.md"),
    "series": ("not stated", "DESIGN.md: per-unit energies, no values"),
}


def _report(
    per: dict[str, dict[str, Any]], clip: Path, clip_s: float, quick: bool, figs: list[Path]
) -> tuple[str, dict[str, Any]]:
    names = list(per)

    def each(fn: Callable[[dict[str, Any]], str]) -> str:
        return "; ".join(f"{n}: {fn(per[n])}" for n in names)

    def dead_list(p: dict[str, Any]) -> str:
        return ", ".join(
            f"{c['layer'].replace(' / conv', '')} {c['dead_by_norm']}/{c['kernels']}" for c in p["conv"]
        ) + (f" (total {p['kernels']['dead']}/{p['kernels']['total']})")

    rows = [
        (
            "front-end filters",
            "front_end",
            each(lambda p: f"{p['front_end_total']} (" + " + ".join(map(str, p["front_end_filters"].values())) + ")"),
        ),
        ("W per patch (rows x frames)", "W", each(lambda p: " x ".join(map(str, p["W_shape_per_patch"])))),
        (
            "kernel shapes (out, in, freq, time)",
            "kernels",
            ", ".join(str(tuple(c["kernel_shape"])) for c in per[names[0]]["conv"]),
        ),
        ("dead kernels per layer (norm <= 0.001 x largest)", "dead", each(dead_list)),
        (
            "kernel norms (largest per layer)",
            "norms",
            each(lambda p: ", ".join(f"{c['max_norm']:.2f}" for c in p["conv"])),
        ),
        (
            "batch norms",
            "bn",
            each(lambda p: f"{len(p['batchnorm'])} layers, eps {sorted({b['eps'] for b in p['batchnorm']})}"),
        ),
        (
            "parameters",
            "params",
            each(
                lambda p: (
                    f"{p['parameters']['values']:,} values; {p['parameters']['trainable_tensors']} trainable"
                    f" tensors, {p['parameters']['moving_stat_tensors']} moving stats"
                )
            ),
        ),
        (
            "per-unit time series on the clip",
            "series",
            each(
                lambda p: (
                    f"{sum(g['constant_rows_on_clip'] for g in p['row_groups'])} of "
                    f"{p['W_shape_per_patch'][0]} W rows constant over the clip; "
                    f"{sum(c['never_positive_on_clip'] for c in p['conv'])} conv units never positive"
                )
            ),
        ),
    ]
    lines = [
        "# MusiCNN dissection (issue 21, study 4)",
        "",
        f"Models: {', '.join(names)} (bundled, converted from musicnn 0.1.0). Clip: `{clip.name}`, "
        f"{clip_s:.1f} s read ({per[names[0]]['patches']} patches of 3 s)" + (" (--quick)" if quick else "") + ".",
        "",
        *claims_table([(title, *_CLAIMS[key], ours) for title, key, ours in rows]),
        "",
    ]
    lines += [
        "",
        "## Where the data differ from the study's",
        "",
        "- The weights and architecture are the study's own (the musicnn 0.1.0 checkpoints), so the "
        "filter counts, W's size, the norms, dead kernels and batch-norm parameters are read from "
        "the same networks; they do not depend on data.",
        f"- The per-unit time series read one clip (`{clip.name}`, {clip_s:.1f} s"
        + (", the first patches only (--quick)" if quick else "")
        + "), not the MTT or MSD test sets: the never-positive and constant-row counts hold on this clip only.",
        "- The study (as summarised in DESIGN.md) states no dead-kernel counts, norms or unit energies: "
        "those rows are ours only.",
        "",
        "## Dead kernels by layer",
        "",
        "| layer | " + " | ".join(f"{n} dead / kernels | {n} never positive on the clip" for n in names) + " |",
        "| --- | " + " | ".join("--- | ---" for _ in names) + " |",
    ]
    for i, c0 in enumerate(per[names[0]]["conv"]):
        cells = []
        for n in names:
            c = per[n]["conv"][i]
            cells += [f"{c['dead_by_norm']} / {c['kernels']}", str(c["never_positive_on_clip"])]
        lines.append(f"| {c0['layer']} | " + " | ".join(cells) + " |")
    lines += ["", "## Figures", ""] + [f"- ![{f.stem}]({f.name})" for f in figs] + [""]
    numbers = {
        "study": "musicnn-dissection",
        "quick": quick,
        "clip": str(clip),
        "clip_seconds": clip_s,
        "claims": {k: {"claim": v[0], "source": v[1]} for k, v in _CLAIMS.items()},
        "models": {n: {k: v for k, v in p.items() if not k.startswith("_")} for n, p in per.items()},
    }
    return "\n".join(lines), numbers


def musicnn_dissection(
    out: str | os.PathLike[str], *, quick: bool = False, data: str | os.PathLike[str] | None = None
) -> Generator[Progress, None, StudyReport]:
    """Dissect MTT_musicnn and MSD_musicnn; write report.md, figures and numbers.json to ``out``.

    quick : read only the clip's first :data:`QUICK_PATCHES` patches (3 s each).
    data : an audio file or folder (its first audio file) for the per-unit time series;
        default the bundled demo recording.
    """
    import torch

    from musiclens.core.models import registry
    from musiclens.core.tagging import audio_to_patches, load_audio_for

    clip = _clip_path(data)
    per: dict[str, dict[str, Any]] = {}
    total = len(DISSECTION_MODELS) + 1
    clip_s = 0.0
    frame_s = 0.0
    for i, name in enumerate(DISSECTION_MODELS):
        yield Progress(fraction=i / total, message=f"dissecting {name}", payload=(i, total))
        m = registry.load(name, device="cpu")
        patches = audio_to_patches(m, load_audio_for(m, clip))
        if len(patches) == 0:
            raise ParameterError(f"{clip} is shorter than one {m.patch_seconds:.1f} s patch of {name}")
        if quick:
            patches = patches[:QUICK_PATCHES]
        with torch.no_grad():
            per[name] = _dissect_model(m, patches)
        clip_s = len(patches) * m.patch_seconds
        frame_s = float(m.front_end.frames_to_seconds(1))
    yield Progress(fraction=(total - 1) / total, message="writing the report", payload=(total - 1, total))
    folder = make_folder(out)
    figs = _figures(folder, per, frame_s)
    text, numbers = _report(per, clip, clip_s, quick, figs)
    report = write_report("musicnn-dissection", folder, text, numbers, figs)
    yield Progress(fraction=1.0, message=f"wrote {folder}", payload=(total, total))
    return report
