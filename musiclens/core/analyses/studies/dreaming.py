"""Study 2: deep dreaming on STFT and mel spectrograms, and how cleanly the dreams invert.

The study's claim (issue 21, study 2): a CNN on mel spectrograms trains better (higher
accuracy) than one on the STFT, but a dream on the STFT inverts more cleanly back to audio
(iSTFT with the dream's own phase; a mel dream needs mel → linear and Griffin-Lim): a catch-22.

What this runs, on the recordings of ``--data`` (one sub-folder per genre; several folders
joined by ``os.pathsep``, a clip found in two of them, same genre and file name, is kept once,
the longer copy):

* two CNNs with the **same network** (``stft-cnn``) on the same tracks: one on the complex STFT
  (2 × 513 × 259, n_fft 1024, hop 256), its *mel twin* on the log-mel (dB, 128 bands) of the
  same STFT (1 × 128 × 259), so the input representation is the only difference;
* stratified k-fold cross-validation **by track** (every track is tested once), fixed epochs, no
  validation split (too few tracks); accuracy per patch with a 95 % bootstrap interval over
  tracks, per track (mean probability) with a Wilson interval, and the paired difference;
* fold 1's two models dream toward each genre from one fixed 3 s clip (the engine of
  :mod:`musiclens.core.interpret.dream`: additive, normalised gradient, logits); the STFT dream
  is inverted by iSTFT, the mel dream by NNLS mel → linear + Griffin-Lim from the clip's phase
  (MusicLens) and, as a cross-check when librosa is installed, ``librosa.feature.inverse.mel_to_audio``;
* spectral convergence ``‖S − Ŝ‖_F / ‖S‖_F`` in each model's own magnitude domain (S: the
  dream's |STFT| or mel magnitude √P; Ŝ: the same of the reconstructed audio), the target
  probability of the dream and of its audio heard again, and the same round trip of the
  undreamed clip as the baseline.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.studies.report import StudyReport, claims_table, make_folder, pyplot, write_report
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Progress

#: the two models: key -> (saved folder name, what it is)
MODELS = {
    "stft": ("stft-cnn", "stft-cnn on the complex STFT (real, imag), 2 x 513 x 259"),
    "mel": ("mel-cnn", "the same stft-cnn network on the log-mel (dB, 128 bands) of the same STFT, 1 x 128 x 259"),
}
FOLDS, QUICK_FOLDS = 5, 2
EPOCHS, QUICK_EPOCHS = 15, 3
DREAM_STEPS, QUICK_DREAM_STEPS = 100, 15
QUICK_GENRES = 3
PATCH_SECONDS = 3.0
#: dream step sizes: 0.5 dB per step on the log-mel (the engine's default), and on the STFT the
#: same relative amplitude change (0.5 dB ≈ 6 %) of the clip's mean |X|
MEL_LR_DB = 0.5
STFT_REL_LR = 0.06
GRIFFIN_LIM_ITERS = 32
BOOTSTRAP = 2000


# ----------------------------------------------------------------------------- data
def data_roots(data: str | os.PathLike[str] | None) -> list[Path]:
    """The folders of ``--data`` (several joined by ``os.pathsep``); one-line ParameterError
    when it is missing or not a folder."""
    if data is None or not str(data).strip():
        raise ParameterError("the dreaming study needs --data: a folder of recordings in one sub-folder per genre")
    roots = [Path(p) for p in str(data).split(os.pathsep) if p.strip()]
    for r in roots:
        if not r.is_dir():
            raise ParameterError(f"--data must be a folder of recordings in one sub-folder per genre, got {r}")
    return roots


def combined_dataset(roots: list[Path]) -> tuple[Any, list[str]]:
    """One single-label :class:`~musiclens.core.training.data.Dataset` of the folders' tracks
    (labels: the union of the genre sub-folders) and the list of duplicates dropped: a clip
    with the same genre and file name in two folders is kept once, the longer file."""
    from musiclens.core import audio as audio_io
    from musiclens.core.training.data import Dataset, Track, check_label, scan_folder

    scans = []
    try:  # the union of the genre sub-folders: one folder may hold a single genre
        names = sorted({check_label(d.name) for r in roots for d in r.iterdir() if d.is_dir()})
        for r in roots:
            scans.append(scan_folder(r, labels=names if len(roots) > 1 else None))
    except MusicLensError as exc:
        raise ParameterError(f"--data: {exc}") from None
    labels = sorted({d.labels[t.labels[0]] for d in scans for t in d.tracks})
    if len(labels) < 2:
        raise ParameterError(f"--data needs recordings in at least two genre sub-folders, found {labels}")
    base = Path(os.path.commonpath([str(r.resolve()) for r in roots])) if len(roots) > 1 else roots[0]
    chosen: dict[tuple[str, str], tuple[float, Track]] = {}
    dropped: list[str] = []
    skipped: list[tuple[str, str]] = []
    for d in scans:
        skipped += d.skipped
        for t in d.tracks:
            lab = d.labels[t.labels[0]]
            f = t.files[0]
            tid = str(f.resolve().relative_to(base)) if len(roots) > 1 else t.id
            seconds = audio_io.info(f).duration_s
            track = Track(tid, t.files, (labels.index(lab),))
            key = (lab, f.stem)
            if key in chosen:
                keep, drop = (track, chosen[key][1]) if seconds > chosen[key][0] else (chosen[key][1], track)
                dropped.append(f"{drop.id} (kept {keep.id}, the longer copy)")
                if keep is track:
                    chosen[key] = (seconds, track)
            else:
                chosen[key] = (seconds, track)
    tracks = sorted((t for _, t in chosen.values()), key=lambda t: t.id)
    return Dataset(base, "folder", labels, False, tracks, skipped), dropped


def kfold_splits(ds: Any, k: int, seed: int = 0) -> list[Any]:
    """``k`` :class:`~musiclens.core.training.data.Split` of whole tracks, stratified per genre:
    each genre's tracks (sorted, then shuffled with ``seed``) are dealt to the folds in turn;
    fold i is the test set of split i, the others its training set (no validation set)."""
    from musiclens.core.training.data import Split

    if k < 2:
        raise ParameterError(f"k-fold needs k >= 2, got {k}")
    if len(ds.tracks) < k:
        raise ParameterError(f"{len(ds.tracks)} tracks are too few for {k}-fold cross-validation")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for lab in range(len(ds.labels)):
        ids = sorted(t.id for t in ds.tracks if t.labels[0] == lab)
        for i, j in enumerate(rng.permutation(len(ids))):
            fold_of[ids[j]] = i % k
    splits = []
    for f in range(k):
        test = [t for t in ds.tracks if fold_of[t.id] == f]
        train = [t for t in ds.tracks if fold_of[t.id] != f]
        splits.append(Split({"train": train, "val": [], "test": test}, seed, ((k - 1) / k, 0.0, 1 / k)))
    return splits


def mel_twin_front_end() -> Any:
    """The mel twin's front end: log-mel in dB (ref 1, no top_db) of the STFT-CNN's own STFT
    (22.05 kHz, n_fft 1024, hop 256), 128 bands: (1, 128, T) with the same frames."""
    from musiclens.core.features import logmel_frontend

    return logmel_frontend(sample_rate=22050, n_fft=1024, hop=256, n_mels=128, top_db=None)


def make_model(which: str, labels: list[str]) -> Any:
    """An untrained study model: ``"stft"`` (stft-cnn) or ``"mel"`` (its mel twin)."""
    from musiclens.core.models import study

    name, description = MODELS[which]
    fe = None if which == "stft" else mel_twin_front_end()
    m = study.create("stft-cnn", labels, front_end=fe, model_name=name, patch_seconds=PATCH_SECONDS)
    m.provenance = dict(m.provenance, description=description, study="dreaming (issue 21)")
    return m


# ----------------------------------------------------------------------------- accuracy
@dataclass
class FoldResult:
    """One model on one fold's test tracks: per track its patches, correct patches and
    whether the mean probability picks the right genre."""

    tracks: list[str]
    labels: list[int]
    patches: np.ndarray  # (n_tracks,) int
    correct: np.ndarray  # (n_tracks,) int
    track_ok: np.ndarray  # (n_tracks,) bool
    summary: dict[str, Any]


def fold_result(model: Any, ps: Any, summary: dict[str, Any]) -> FoldResult:
    """Per-track counts of ``model`` on the patch set ``ps`` (a fold's test set)."""
    from musiclens.core.training.loop import predict_set

    probs, _ = predict_set(model, ps)
    n = len(ps.track_ids)
    patches = np.bincount(ps.track, minlength=n)
    correct = np.bincount(ps.track, weights=(probs.argmax(1) == ps.y).astype(float), minlength=n).astype(int)
    sums = np.zeros((n, probs.shape[1]))
    np.add.at(sums, ps.track, probs)
    truth = np.zeros(n, dtype=int)
    truth[ps.track] = ps.y
    return FoldResult(list(ps.track_ids), truth.tolist(), patches, correct, sums.argmax(1) == truth, summary)


def accuracy_stats(correct: np.ndarray, patches: np.ndarray, track_ok: np.ndarray) -> dict[str, Any]:
    """Pooled accuracies: per patch with a 95 % percentile bootstrap over tracks (patches of
    one track are not independent), per track with a Wilson interval."""
    from scipy.stats import binomtest

    patch = float(correct.sum() / patches.sum())
    k, n = int(track_ok.sum()), len(track_ok)
    wilson = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return {
        "patch_accuracy": patch,
        "patch_ci95": list(_bootstrap(lambda c, p: c.sum(-1) / p.sum(-1), correct, patches)),
        "track_accuracy": k / n,
        "track_ci95": [float(wilson.low), float(wilson.high)],
        "tracks": n,
        "patches": int(patches.sum()),
    }


def _bootstrap(statistic: Any, *samples: np.ndarray) -> tuple[float, float]:
    """95 % percentile interval of ``statistic`` over tracks resampled with replacement
    (paired: the same tracks for every sample array)."""
    from scipy.stats import bootstrap

    if len(samples[0]) < 2:
        v = float(statistic(*samples))
        return v, v
    res = bootstrap(
        samples,
        lambda *a, axis=-1: statistic(*a),
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ----------------------------------------------------------------------------- dreams
def own_magnitude(fe: Any, x: Any) -> Any:
    """A front-end output (B, C, F, T) -> its magnitude (B, F, T): |STFT| for the STFT
    front end, the mel magnitude √P for a mel one."""
    from musiclens.core.inversion import channels_to_complex, to_power

    if fe.kind == "stft":
        return channels_to_complex(x).abs()
    return to_power(x[:, 0], fe).clamp_min(0).sqrt()


def convergence(fe: Any, x: Any, audio: np.ndarray) -> float:
    """Spectral convergence ‖S − Ŝ‖_F / ‖S‖_F of the input ``x`` (1, C, F, T) and the audio
    (samples,) rebuilt from it, in the front end's own magnitude domain (:func:`own_magnitude`)."""
    import torch

    with torch.no_grad():
        s = own_magnitude(fe, x.float())
        s_hat = own_magnitude(fe, fe(torch.as_tensor(np.asarray(audio, dtype=np.float32))[None]))
        t = min(s.shape[-1], s_hat.shape[-1])
        return float((s[..., :t] - s_hat[..., :t]).norm() / s.norm().clamp_min(1e-12))


def librosa_mel_audio(x: Any, fe: Any, length: int) -> np.ndarray | None:
    """librosa's ``feature.inverse.mel_to_audio`` of a log-mel input (1, 1, M, T) (NNLS, then 32
    Griffin-Lim iterations from random phase, seed 0) -> (samples,), or None without librosa."""
    from musiclens.core.inversion import to_power

    try:
        librosa = importlib.import_module("librosa")
    except ImportError:
        return None
    mel = to_power(x[0, 0].detach().double(), fe).clamp_min(0).numpy()
    # mel_to_audio's two steps, so Griffin-Lim's random phase can be seeded
    magnitude = librosa.feature.inverse.mel_to_stft(
        mel,
        sr=fe.sample_rate,
        n_fft=fe.n_fft,
        power=fe.power,
        htk=fe.htk,
        norm=fe.mel_norm,
        fmin=fe.fmin,
        fmax=fe.fmax or fe.sample_rate / 2,
    )
    y = librosa.griffinlim(
        magnitude, n_iter=GRIFFIN_LIM_ITERS, hop_length=fe.hop, n_fft=fe.n_fft, length=length, random_state=0
    )
    return np.asarray(y, dtype=np.float32)


def probabilities_of(model: Any, x: Any) -> np.ndarray:
    """(L,) softmax of the model on one input (1, C, F, T)."""
    import torch

    from musiclens.core.interpret._common import eval_mode

    with torch.no_grad(), eval_mode(model.net):
        p: np.ndarray = torch.softmax(model.net(x.to(model.device).float()), -1)[0].cpu().numpy()
    return p


def start_clip(ds: Any, split: Any, sr: int) -> tuple[np.ndarray, str]:
    """The fixed dream start: the middle ``PATCH_SECONDS`` of the first test track of fold 1
    (sorted by id) that is long enough, (samples,) at ``sr``, and its track id."""
    from musiclens.core import audio as audio_io

    n = int(round(PATCH_SECONDS * sr))
    for t in sorted(split.tracks["test"], key=lambda t: t.id):
        y, _ = audio_io.load(t.files[0], sr=sr, mono=True)
        if len(y) >= n:
            a = (len(y) - n) // 2
            return np.ascontiguousarray(y[a : a + n], dtype=np.float32), t.id
    raise MusicLensError(f"no test track of fold 1 is {PATCH_SECONDS:.0f} s long")


def start_baselines(models: dict[str, Any], start: np.ndarray) -> dict[str, Any]:
    """The undreamed clip's round trip, per model: SC of iSTFT (STFT) or of Griffin-Lim from
    the clip's phase, from random phase and librosa's mel_to_audio (mel)."""
    import torch

    from musiclens.core.features import stft
    from musiclens.core.inversion import features_to_audio

    out: dict[str, Any] = {}
    y = torch.as_tensor(start)[None]
    for which, m in models.items():
        fe = m.front_end
        with torch.no_grad():
            x0 = fe(y)
            if fe.kind == "stft":
                out[which] = {"istft": convergence(fe, x0, features_to_audio(x0, fe, length=len(start))[0].numpy())}
                continue
            phase = torch.angle(stft(y, fe))
            gl_phase = features_to_audio(x0, fe, phase=phase, n_iter=GRIFFIN_LIM_ITERS, length=len(start))
            torch.manual_seed(0)
            gl_random = features_to_audio(x0, fe, n_iter=GRIFFIN_LIM_ITERS, length=len(start))
        lib = librosa_mel_audio(x0, fe, len(start))
        out[which] = {
            "griffin_lim_start_phase": convergence(fe, x0, gl_phase[0].numpy()),
            "griffin_lim_random_phase": convergence(fe, x0, gl_random[0].numpy()),
            "librosa_mel_to_audio": None if lib is None else convergence(fe, x0, lib),
        }
    return out


def dream_one(m: Any, start: np.ndarray, genre: str, steps: int) -> tuple[dict[str, Any], Any, np.ndarray]:
    """Dream toward ``genre`` from ``start`` with model ``m``; returns the measurements, the
    dreamed input (1, C, F, T) and its audio (samples,) (iSTFT, or Griffin-Lim from the
    start's phase for the mel twin)."""
    import torch

    from musiclens.core.interpret.dream import dream

    fe = m.front_end
    with torch.no_grad():
        x0 = fe(torch.as_tensor(start)[None])
    lr = MEL_LR_DB if fe.kind != "stft" else STFT_REL_LR * float(x0.abs().mean())
    last = None
    for step in dream(m, start, target=genre, steps=steps, lr=lr, n_iter=GRIFFIN_LIM_ITERS, seed=0):
        last = step
    assert last is not None and last.audio is not None
    x, audio = last.x.cpu(), np.asarray(last.audio, dtype=np.float32)
    k = m.labels.index(genre)
    with torch.no_grad():
        heard = fe(torch.as_tensor(audio)[None])
        s0, s1 = own_magnitude(fe, x0), own_magnitude(fe, x)
    rec: dict[str, Any] = {
        "genre": genre,
        "lr": lr,
        "steps": int(last.step),
        "spectral_convergence": convergence(fe, x, audio),
        "p_target_start": float(probabilities_of(m, x0)[k]),
        "p_target_dream": float(probabilities_of(m, x)[k]),
        "p_target_audio": float(probabilities_of(m, heard)[k]),
        "dream_change": float((s1 - s0).norm() / s0.norm().clamp_min(1e-12)),
        "peak": float(np.abs(audio).max()),
        "rms_dbfs": float(20 * np.log10(max(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))), 1e-12))),
    }
    if fe.kind != "stft":
        lib = librosa_mel_audio(x, fe, len(start))
        rec["spectral_convergence_librosa"] = None if lib is None else convergence(fe, x, lib)
    return rec, x, audio


# ----------------------------------------------------------------------------- figures
def _figures(
    out: Path, acc: dict[str, Any], dreams: dict[str, list[dict[str, Any]]], base: dict[str, Any]
) -> list[Path]:
    plt = pyplot()
    files: list[Path] = []
    colours = {"stft": "tab:blue", "mel": "tab:orange"}

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in zip(axes, ("patch", "track"), ("per 3 s patch", "per track (mean probability)"), strict=True):
        for i, w in enumerate(MODELS):
            a = acc[w]
            v, (lo, hi) = a[f"{key}_accuracy"], a[f"{key}_ci95"]
            ax.bar(i, v, color=colours[w], yerr=[[max(v - lo, 0.0)], [max(hi - v, 0.0)]], capsize=6)
            folds = a["per_fold"][f"{key}_accuracy"]
            ax.plot(np.full(len(folds), i) + np.linspace(-0.15, 0.15, len(folds)), folds, "k.", ms=5)
        ax.axhline(acc["chance"], color="grey", ls="--", lw=0.8, label="chance")
        ax.set_xticks(range(len(MODELS)), [MODELS[w][0] for w in MODELS])
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}; 95 % CI, dots = folds", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out / "accuracy.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    genres = [d["genre"] for d in dreams["stft"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(genres) + 3) + 3, 4))
    x = np.arange(len(genres))
    ax.bar(
        x - 0.3,
        [d["spectral_convergence"] for d in dreams["stft"]],
        0.3,
        color=colours["stft"],
        label="STFT dream, iSTFT",
    )
    ax.bar(
        x,
        [d["spectral_convergence"] for d in dreams["mel"]],
        0.3,
        color=colours["mel"],
        label="mel dream, GL (clip phase)",
    )
    lib = [d.get("spectral_convergence_librosa") for d in dreams["mel"]]
    if all(v is not None for v in lib):
        ax.bar(x + 0.3, lib, 0.3, color="tab:red", label="mel dream, librosa mel_to_audio")
    ax.axhline(base["mel"]["griffin_lim_start_phase"], color=colours["mel"], ls=":", lw=1, label="clip itself, mel GL")
    ax.axhline(base["stft"]["istft"], color=colours["stft"], ls=":", lw=1, label="clip itself, iSTFT")
    ax.set_xticks(x, genres, rotation=30)
    ax.set_ylabel("spectral convergence (lower = cleaner)")
    ax.set_title("Round trip of the dream toward each genre: ||S - S_hat||_F / ||S||_F", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    files.append(out / "spectral_convergence.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)
    return files


def _dream_figure(out: Path, which: str, fe: Any, start_x: Any, rows: list[tuple[str, Any, np.ndarray]]) -> Path:
    """Rows: genre; columns: the dream, the spectrogram of its audio, their difference (dB)."""
    import torch

    from musiclens.core.analyses.recording import display_of

    plt = pyplot()
    fig, axes = plt.subplots(len(rows) + 1, 3, figsize=(12, 2.2 * (len(rows) + 1)), squeeze=False, layout="constrained")
    start_img = display_of(start_x[0], fe)
    axes[0, 0].imshow(start_img, aspect="auto", origin="lower", cmap="magma")
    axes[0, 0].set_title("the start clip", fontsize=8)
    axes[0, 1].axis("off")
    axes[0, 2].axis("off")
    for r, (genre, x, audio) in enumerate(rows, start=1):
        with torch.no_grad():
            heard = fe(torch.as_tensor(audio)[None])
        a, b = display_of(x[0], fe), display_of(heard[0], fe)
        t = min(a.shape[1], b.shape[1])
        lo, hi = float(np.percentile(a, 5)), float(a.max())
        for c, (img, title) in enumerate(((a, "dream"), (b, "its audio, analysed again"))):
            axes[r, c].imshow(img, aspect="auto", origin="lower", cmap="magma", vmin=lo, vmax=hi)
            axes[r, c].set_title(f"{genre}: {title}", fontsize=8)
        im = axes[r, 2].imshow(b[:, :t] - a[:, :t], aspect="auto", origin="lower", cmap="coolwarm", vmin=-30, vmax=30)
        axes[r, 2].set_title(f"{genre}: audio - dream (dB)", fontsize=8)
    fig.colorbar(im, ax=axes[1:, 2].tolist(), fraction=0.05)
    fig.suptitle(
        f"{MODELS[which][0]}: dreams toward each genre ({'|STFT|² in dB' if fe.kind == 'stft' else 'log-mel dB'})"
    )
    path = out / f"dreams_{MODELS[which][0]}.png"
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the report
def _pct(v: float, ci: list[float]) -> str:
    return f"{100 * v:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _fmt_acc(a: dict[str, Any]) -> str:
    return (
        f"{_pct(a['patch_accuracy'], a['patch_ci95'])} per patch, "
        f"{_pct(a['track_accuracy'], a['track_ci95'])} per track"
    )


def _path(r: dict[str, Any]) -> str:
    return f"{r['p_target_start']:.2f} → {r['p_target_dream']:.2f} → {r['p_target_audio']:.2f}"


#: dream sizes (mean ‖S_dream − S_start‖ / ‖S_start‖) further apart than this factor make the
#: SC comparison unclean: a larger change is harder to invert whatever the representation
SIZE_RATIO_LIMIT = 1.5


def verdict(acc: dict[str, Any], dreams: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Whether each half of the catch-22 holds and the whole: "reproduced", "partly" or "refuted".

    Accuracy: 1 when the paired difference's 95 % interval is above 0, 0.5 when only the
    point estimate is. Inversion: 1 when the STFT dreams have the lower SC in every genre and
    the two models' dreams changed their inputs by similar amounts (within
    :data:`SIZE_RATIO_LIMIT`), 0.5 when the SC is lower in most genres or the sizes differ.
    Also: in how many genres the STFT dream's audio keeps more of the target's probability."""
    lo, hi = acc["difference_ci95"]
    d = acc["difference_patch_accuracy"]
    mel_better = "yes (significant)" if lo > 0 else "no (STFT better, significant)" if hi < 0 else "not significant"
    sc_s = np.array([r["spectral_convergence"] for r in dreams["stft"]])
    sc_m = np.array([r["spectral_convergence"] for r in dreams["mel"]])
    cleaner = int((sc_s < sc_m).sum())
    size_ratio = float(np.mean([r["dream_change"] for r in dreams["mel"]])) / max(
        float(np.mean([r["dream_change"] for r in dreams["stft"]])), 1e-12
    )
    comparable = 1 / SIZE_RATIO_LIMIT <= size_ratio <= SIZE_RATIO_LIMIT
    kept = sum(a["p_target_audio"] > b["p_target_audio"] for a, b in zip(dreams["stft"], dreams["mel"], strict=True))
    inversion = 0.0 if 2 * cleaner <= len(sc_s) else 1.0 if cleaner == len(sc_s) and comparable else 0.5
    score = (1.0 if lo > 0 else 0.5 if d > 0 else 0.0) + inversion
    whole = "reproduced" if score == 2 else "refuted" if score == 0 else "partly"
    return {
        "mel_trains_better": mel_better,
        "stft_inverts_more_cleanly": f"{cleaner} of {len(sc_s)} genres",
        "mean_sc_stft": float(sc_s.mean()),
        "mean_sc_mel": float(sc_m.mean()),
        "dream_size_ratio_mel_over_stft": size_ratio,
        "dream_sizes_comparable": comparable,
        "stft_audio_keeps_target_better": f"{kept} of {len(sc_s)} genres",
        "mean_p_target_audio": {w: float(np.mean([r["p_target_audio"] for r in dreams[w]])) for w in ("stft", "mel")},
        "catch_22": whole,
    }


_CLAIMS = {
    "accuracy": ("mel spectrogram trains better (higher accuracy); numbers not stated", "issue 21, study 2"),
    "inversion": ("STFT dreams invert more cleanly (iSTFT; mel needs Griffin-Lim)", "issue 21, study 2; DESIGN.md"),
    "catch22": ("holds: a catch-22", "issue 21, study 2"),
}


def _report(n: dict[str, Any], figs: list[Path]) -> str:
    acc, v, dreams, base = n["accuracy"], n["verdict"], n["dreams"], n["baselines"]
    d, (dlo, dhi) = acc["difference_patch_accuracy"], acc["difference_ci95"]
    lib = [r.get("spectral_convergence_librosa") for r in dreams["mel"]]
    lib_txt = f"; librosa's mel_to_audio {np.mean(lib):.3f}" if lib and all(x is not None for x in lib) else ""
    rows = [
        (
            "accuracy (k-fold by track)",
            *_CLAIMS["accuracy"],
            f"mel twin {_fmt_acc(acc['mel'])}; STFT {_fmt_acc(acc['stft'])}; mel - STFT {100 * d:+.1f} pp "
            f"[{100 * dlo:+.1f}, {100 * dhi:+.1f}]: {v['mel_trains_better']}",
        ),
        (
            "spectral convergence of the dreams",
            *_CLAIMS["inversion"],
            f"STFT (iSTFT) {v['mean_sc_stft']:.3f} vs mel (GL from the clip's phase) {v['mean_sc_mel']:.3f} on average"
            f"{lib_txt}; STFT lower in {v['stft_inverts_more_cleanly']}"
            + (
                ""
                if v["dream_sizes_comparable"]
                else f", but the mel dreams changed their input {v['dream_size_ratio_mel_over_stft']:.1f} x as much"
            )
            + f". Target probability of the dream's audio: STFT {v['mean_p_target_audio']['stft']:.2f}, mel "
            f"{v['mean_p_target_audio']['mel']:.2f} (STFT higher in {v['stft_audio_keeps_target_better']})",
        ),
        ("the catch-22", *_CLAIMS["catch22"], v["catch_22"]),
    ]
    s = n["settings"]
    lines = [
        "# Deep dreaming on STFT and mel spectrograms (issue 21, study 2)",
        "",
        f"Data: {n['data']['tracks']} tracks in {len(n['data']['labels'])} genres, {n['data']['seconds']:.0f} s "
        f"({', '.join(n['data']['roots'])}). Models: {MODELS['stft'][1]}; {MODELS['mel'][1]}. "
        f"{s['folds']}-fold cross-validation by track, {s['epochs']} epochs each, no validation split. "
        f"Dreams: fold 1's models, {s['dream_steps']} steps from `{n['start']['track']}` "
        f"(middle {PATCH_SECONDS:.0f} s)." + (" **--quick**." if n["quick"] else ""),
        "",
        *claims_table(rows),
        "",
        "## Where the data differ from the study's",
        "",
        f"- {n['data']['tracks']} tracks ({', '.join(f'{k}: {c}' for k, c in n['data']['per_label'].items())}), "
        "not GTZAN's 1,000: the accuracies are k-fold estimates on a few tracks per genre, with wide intervals.",
        f"- Tracks of {n['data']['track_seconds'][0]:.1f}-{n['data']['track_seconds'][1]:.1f} s (GTZAN's are 30 s; "
        "the GTZAN excerpts folder holds the first 15-20 s only); a clip found in two folders is used once"
        + (f" ({len(n['data']['duplicates_dropped'])} copies dropped)" if n["data"]["duplicates_dropped"] else "")
        + ".",
        "- Both models are the same small network (stft-cnn, ~25k parameters), not the study's own CNNs; "
        "the mel twin shares the STFT's frames so only the representation differs.",
        "- The study's numbers are not stated in issue 21 or DESIGN.md: the comparison is of directions only.",
    ]
    if n["quick"]:
        lines.append(f"- --quick left out: {n['left_out']}.")
    lines += [
        "",
        "## Accuracy",
        "",
        "| model | per patch [95 % CI] | per track [95 % Wilson] | folds (per patch) |",
        "| --- | --- | --- | --- |",
    ]
    for w in MODELS:
        a = acc[w]
        lines.append(
            f"| {MODELS[w][0]} | {_pct(a['patch_accuracy'], a['patch_ci95'])} | "
            f"{_pct(a['track_accuracy'], a['track_ci95'])} | "
            + ", ".join(f"{100 * x:.0f}" for x in a["per_fold"]["patch_accuracy"])
            + " |"
        )
    lines += [
        f"\nChance: {100 * acc['chance']:.0f} %. Per-patch intervals: bootstrap over tracks ({BOOTSTRAP} resamples).",
        "",
        "## Dreams and their round trip",
        "",
        "SC = ‖S − Ŝ‖_F / ‖S‖_F in each model's own magnitude domain (|STFT|, or mel √P). p(target): "
        "the model's probability of the genre on the start, on the dream, and on the dream's audio analysed again. "
        "Change: ‖S_dream − S_start‖_F / ‖S_start‖_F.",
        "",
        "| genre | STFT SC | STFT p(target) start → dream → audio | STFT change | mel SC (GL) | mel SC (librosa) "
        "| mel p(target) start → dream → audio | mel change |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a, b in zip(dreams["stft"], dreams["mel"], strict=True):
        lib_sc = b.get("spectral_convergence_librosa")
        lines.append(
            f"| {a['genre']} | {a['spectral_convergence']:.3f} | {_path(a)} | {a['dream_change']:.2f} | "
            f"{b['spectral_convergence']:.3f} | {'n/a' if lib_sc is None else f'{lib_sc:.3f}'} | {_path(b)} | "
            f"{b['dream_change']:.2f} |"
        )
    bm = base["mel"]
    lines += [
        "",
        f"The undreamed clip's own round trip: iSTFT SC {base['stft']['istft']:.1e}; mel Griffin-Lim from the clip's "
        f"phase {bm['griffin_lim_start_phase']:.3f}, from random phase {bm['griffin_lim_random_phase']:.3f}"
        + ("" if bm["librosa_mel_to_audio"] is None else f", librosa {bm['librosa_mel_to_audio']:.3f}")
        + ". A dreamed STFT need not be the STFT of any signal, so its iSTFT does not give it back exactly.",
        ""
        if v["dream_sizes_comparable"]
        else (
            f"\nThe two dreams are not the same size: with the step sizes used (mel {MEL_LR_DB} dB per step, "
            f"STFT {STFT_REL_LR} x the clip's mean |X|) the mel dreams changed their input "
            f"{v['dream_size_ratio_mel_over_stft']:.1f} x as much as the STFT dreams, and a larger change is "
            "harder to invert whatever the representation; so the SC gap is not the representation's alone "
            "(the verdict counts the inversion half as partly). The target probability of the audio does not "
            "depend on that: it says whether the dream survives the round trip."
        ),
        "",
        "## Figures",
        "",
        *[f"- ![{f.stem}]({f.name})" for f in figs],
        "",
        "Audio: " + ", ".join(f"`{p}`" for p in n["open_in_window"]["audio"]) + ".",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runner
def dreaming(
    out: str | os.PathLike[str], *, quick: bool = False, data: str | os.PathLike[str] | None = None
) -> Generator[Progress, None, StudyReport]:
    """Train the STFT CNN and its mel twin by k-fold over tracks, dream toward each genre with
    fold 1's models and measure how cleanly the dreams invert; write report.md, the figures,
    the dream WAVs (``dreams/``), the two models (``models/``) and numbers.json to ``out``.

    data : a folder of recordings in one sub-folder per genre (several joined by ``os.pathsep``).
    quick : :data:`QUICK_FOLDS` folds, :data:`QUICK_EPOCHS` epochs, :data:`QUICK_GENRES` genres
        dreamed for :data:`QUICK_DREAM_STEPS` steps (the report says so).
    """
    import time

    import torch

    from musiclens.core import audio as audio_io
    from musiclens.core.training.data import FeatureCache, prepare_all
    from musiclens.core.training.loop import TrainConfig, finish_run, summary_of
    from musiclens.core.training.loop import train as train_loop

    t_start = time.perf_counter()
    roots = data_roots(data)
    ds, dropped = combined_dataset(roots)
    k = QUICK_FOLDS if quick else FOLDS
    epochs = QUICK_EPOCHS if quick else EPOCHS
    dream_steps = QUICK_DREAM_STEPS if quick else DREAM_STEPS
    genres = ds.labels[:QUICK_GENRES] if quick else list(ds.labels)
    splits = kfold_splits(ds, k)
    folder = make_folder(out)
    total = 2 * k + 2 * len(genres) + 1
    done = 0
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, seed=0, patience=None)
    cache = FeatureCache()
    results: dict[str, list[FoldResult]] = {w: [] for w in MODELS}
    fold1: dict[str, Any] = {}
    for f, split in enumerate(splits):
        for w in MODELS:
            yield Progress(
                fraction=done / total, message=f"fold {f + 1}/{k}: training {MODELS[w][0]}", payload=(done, total)
            )
            torch.manual_seed(cfg.seed)
            model = make_model(w, ds.labels)
            prepared = prepare_all(ds, split, model.front_end, model.patch_frames, cache=cache)
            last = None
            for ev in train_loop(model, prepared, cfg):
                last = ev
                if ev.kind == "epoch":
                    yield Progress(
                        fraction=done / total,
                        message=f"fold {f + 1}/{k}: {MODELS[w][0]} epoch {ev.epoch}/{epochs}, loss {ev.loss:.3f}",
                        payload=(done, total),
                    )
            summary = summary_of(model, prepared, "stft-cnn", last)
            results[w].append(fold_result(model, prepared.sets["test"], summary))
            if f == 0:
                finish_run(
                    model, summary, last, root=ds.root, task="genre", ds=ds, split=split, cfg=cfg,
                    out=folder / "models" / MODELS[w][0],
                )  # fmt: skip
                fold1[w] = model
            done += 1

    acc: dict[str, Any] = {"chance": 1.0 / len(ds.labels)}
    pooled: dict[str, dict[str, np.ndarray]] = {}
    for w, rs in results.items():
        order = np.argsort(np.concatenate([r.tracks for r in rs]))
        pooled[w] = {
            key: np.concatenate([getattr(r, key) for r in rs])[order] for key in ("patches", "correct", "track_ok")
        }
        acc[w] = accuracy_stats(pooled[w]["correct"], pooled[w]["patches"], pooled[w]["track_ok"])
        acc[w]["per_fold"] = {
            "patch_accuracy": [float(r.correct.sum() / max(r.patches.sum(), 1)) for r in rs],
            "track_accuracy": [float(r.track_ok.mean()) if len(r.track_ok) else float("nan") for r in rs],
            "test_tracks": [len(r.tracks) for r in rs],
        }
        acc[w]["fold1_summary"] = {k2: v for k2, v in rs[0].summary.items() if k2 != "test_metrics"}
    if not np.array_equal(pooled["stft"]["patches"], pooled["mel"]["patches"]):
        raise MusicLensError("the two models were tested on different patches; the paired comparison needs the same")
    n_p = pooled["stft"]["patches"]
    acc["difference_patch_accuracy"] = float(
        (pooled["mel"]["correct"].sum() - pooled["stft"]["correct"].sum()) / n_p.sum()
    )
    acc["difference_ci95"] = list(
        _bootstrap(
            lambda a, b, p: (a.sum(-1) - b.sum(-1)) / p.sum(-1),
            pooled["mel"]["correct"],
            pooled["stft"]["correct"],
            n_p,
        )
    )

    sr = fold1["stft"].front_end.sample_rate
    start, start_id = start_clip(ds, splits[0], sr)
    dream_dir = folder / "dreams"
    dream_dir.mkdir(exist_ok=True)
    audio_io.save(dream_dir / "start.wav", start, sr)
    base = start_baselines(fold1, start)
    dreams: dict[str, list[dict[str, Any]]] = {w: [] for w in MODELS}
    rows: dict[str, list[tuple[str, Any, np.ndarray]]] = {w: [] for w in MODELS}
    wavs = ["dreams/start.wav"]
    for w, m in fold1.items():
        for g in genres:
            yield Progress(fraction=done / total, message=f"{MODELS[w][0]}: dreaming toward {g}", payload=(done, total))
            rec, x, audio = dream_one(m, start, g, dream_steps)
            stem = f"{MODELS[w][0]}_{g}"
            audio_io.save(dream_dir / f"{stem}.wav", audio, sr)
            np.save(dream_dir / f"{stem}.npy", x[0].numpy().astype(np.float32))
            rec["wav"], rec["dream_input"] = f"dreams/{stem}.wav", f"dreams/{stem}.npy"
            wavs.append(rec["wav"])
            dreams[w].append(rec)
            rows[w].append((g, x, audio))
            done += 1

    yield Progress(fraction=done / total, message="writing the report", payload=(done, total))
    figs = _figures(folder, acc, dreams, base)
    for w, m in fold1.items():
        with torch.no_grad():
            x0 = m.front_end(torch.as_tensor(start)[None])
        figs.append(_dream_figure(folder, w, m.front_end, x0, rows[w]))
    seconds = [audio_io.info(t.files[0]).duration_s for t in ds.tracks]
    numbers: dict[str, Any] = {
        "study": "dreaming",
        "quick": quick,
        "data": {
            "roots": [str(r) for r in roots],
            "labels": ds.labels,
            "tracks": len(ds.tracks),
            "per_label": {lab: sum(t.labels[0] == i for t in ds.tracks) for i, lab in enumerate(ds.labels)},
            "seconds": float(sum(seconds)),
            "track_seconds": [float(min(seconds)), float(max(seconds))],
            "duplicates_dropped": dropped,
            "skipped": [{"file": p, "reason": r} for p, r in ds.skipped],
        },
        "settings": {
            "folds": k,
            "epochs": epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "dream_steps": dream_steps,
            "dream_lr": {"mel_db": MEL_LR_DB, "stft_relative_to_mean_abs": STFT_REL_LR},
            "griffin_lim_iterations": GRIFFIN_LIM_ITERS,
            "genres_dreamed": genres,
            "models": {w: {"folder": f"models/{MODELS[w][0]}", "what": MODELS[w][1]} for w in MODELS},
        },
        "start": {"track": start_id, "seconds": PATCH_SECONDS, "wav": "dreams/start.wav"},
        "accuracy": acc,
        "folds_test_tracks": [r.tracks for r in results["stft"]],
        "baselines": base,
        "dreams": dreams,
        "claims": {key: {"claim": c, "source": s} for key, (c, s) in _CLAIMS.items()},
        "open_in_window": {"models": [f"models/{MODELS[w][0]}" for w in MODELS], "audio": wavs, "midi": []},
    }
    numbers["verdict"] = verdict(acc, dreams)
    if quick:
        numbers["left_out"] = (
            f"{FOLDS - QUICK_FOLDS} of {FOLDS} folds ({QUICK_FOLDS}-fold), {EPOCHS - QUICK_EPOCHS} of {EPOCHS} epochs, "
            f"dreams toward {len(ds.labels) - len(genres)} of {len(ds.labels)} genres (only the first {QUICK_GENRES}), "
            f"{DREAM_STEPS - QUICK_DREAM_STEPS} of {DREAM_STEPS} dream steps"
        )
    numbers["seconds"] = time.perf_counter() - t_start
    text = _report(numbers, figs)
    report = write_report("dreaming", folder, text, numbers, figs, [folder / p for p in wavs])
    yield Progress(fraction=1.0, message=f"wrote {folder}", payload=(total, total))
    return report
