"""Help menu: the About box (versions, device, licences and provenance of what we bundle)
and the short first-run guide ("what you are looking at").

Light at import: no torch, no numpy. Torch is asked only when the About box opens, and
then in the worker thread, which owns the model (``Session.model`` is touched only there).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from musiclens import __version__

GUIDE_KEY = "guide/dismissed"  # in musiclens.app.window.settings()
NO_GUIDE_ENV = "MUSICLENS_NO_GUIDE"


# ---------------------------------------------------------------------- facts
def package_version(dist: str, module: str | None = None) -> str:
    """Installed version of ``dist``: its metadata, else the module's ``__version__``
    (a frozen bundle may lack the metadata), else "not installed"."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
    try:
        import importlib

        return str(importlib.import_module(module or dist).__version__)
    except Exception:  # noqa: BLE001 - any failure means we cannot tell
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of MusicLens and the libraries that do the work (no heavy imports)."""
    import PySide6
    from PySide6.QtCore import qVersion

    return {
        "MusicLens": __version__,
        "Python": sys.version.split()[0],
        "PyTorch": package_version("torch"),
        "PySide6": f"{PySide6.__version__} (Qt {qVersion()})",
        "librosa": package_version("librosa"),
        "NumPy": package_version("numpy"),
    }


def device_info(model: Any = None) -> dict[str, Any]:
    """Where torch runs: the loaded model's device, CUDA availability, worker threads.

    Imports torch: call it in the worker thread (or where torch is already loaded).
    """
    import torch

    cuda = bool(torch.cuda.is_available())
    info: dict[str, Any] = {
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "threads": torch.get_num_threads(),
        "model_device": None,
    }
    net = getattr(model, "net", None)
    if net is not None:
        with contextlib.suppress(StopIteration):  # a model without parameters
            info["model_device"] = str(next(net.parameters()).device)
    return info


def short_device(info: dict[str, Any]) -> str:
    """The device's name as the status bar shows it: "CPU" or "GPU (name)" (the start of
    :func:`describe_device`'s line, so the About box and the status bar agree)."""
    used = info.get("model_device")
    if used and used.startswith("cuda"):
        return f"GPU ({info.get('gpu') or used})"
    return "CPU"


def describe_device(info: dict[str, Any]) -> str:
    """One line for people: "CPU" or "GPU (name)", and whether a GPU sits unused."""
    used = info.get("model_device")
    if used and used.startswith("cuda"):
        return short_device(info)
    text = f"CPU ({info.get('threads')} torch thread(s) in the worker" + (")" if used else "; no model loaded yet)")
    if info.get("cuda_available"):
        text += f"; a CUDA GPU is available ({info.get('gpu')}) but the model runs on the CPU (Model > Device)"
    else:
        text += "; no CUDA GPU available"
    return text


def bundled_models() -> list[dict[str, Any]]:
    """Name, provenance and licence of every bundled model (resources/models/*/model.json)."""
    from musiclens.core.resources import META_FILE, available, bundled_models_dir

    models = []
    for name in available():
        try:
            meta = json.loads((bundled_models_dir() / name / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            models.append({"name": name, "provenance": {}, "error": str(exc)})
            continue
        models.append({"name": name, "provenance": meta.get("provenance") or {}})
    return models


def _licence_files(models: list[dict[str, Any]]) -> dict[str, str]:
    """Texts of the licence files the models' provenance names, by file name."""
    from musiclens.core.resources import resources_dir

    texts: dict[str, str] = {}
    for m in models:
        rel = m["provenance"].get("licence_file")
        if not rel:
            continue
        name = Path(rel).name
        # the path is written relative to the repo ("resources/models/LICENSE-…");
        # look it up under the resources folder the app uses (the repo's or a bundle's)
        parts = Path(rel).parts
        path = resources_dir().joinpath(*parts[1:]) if parts[:1] == ("resources",) else resources_dir() / rel
        if name not in texts:
            try:
                texts[name] = path.read_text(encoding="utf-8").strip()
            except OSError:
                texts[name] = f"(licence file {rel} is missing from this installation)"
    return texts


def demo_readme() -> str:
    from musiclens.core.resources import resources_dir

    try:
        return (resources_dir() / "demo" / "README.md").read_text(encoding="utf-8").strip()
    except OSError:
        return "(resources/demo/README.md is missing from this installation)"


def md_escape(text: Any) -> str:
    """``text`` shown literally in Markdown (``*.abc`` is not an emphasis)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", " ".join(str(text).split()))


def about_markdown(device: str | None = None) -> str:
    """The whole About text as Markdown (what the dialog shows; testable without a window).

    ``device``: the device line, or None while the worker has not answered yet.
    """
    lines = [
        f"# MusicLens {__version__}",
        "See, hear and edit what neural networks do with music.",
        "",
        "## Versions",
        "",
        "| Component | Version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in versions().items()]
    lines += [
        "",
        f"**Device in use:** {device or 'asking the worker…'}",
        "",
        "MusicLens itself is MIT-licensed. Its icon is our own work (CC0 1.0).",
        "",
        "## Bundled models",
        "",
    ]
    models = bundled_models()
    if not models:
        lines.append("No bundled models were found in this installation.")
    for m in models:
        p = m["provenance"]
        licence = p.get("licence") or p.get("licence_note") or "not stated"
        lines.append(f"### {md_escape(m['name'])}")
        lines.append("")
        for label, key in (
            ("What", "description"),
            ("Source", "source"),
            ("Trained on", "training_data"),
            ("Copyright", "copyright"),
            ("Paper", "paper"),
        ):
            if p.get(key):
                lines.append(f"- {label}: {md_escape(p[key])}")
        lines.append(
            f"- Licence: {md_escape(licence)}"
            + (f" (full text below: {Path(p['licence_file']).name})" if p.get("licence_file") else "")
        )
        made_by = p.get("converter") or p.get("training_script")
        if made_by:
            lines.append(f"- Made by: `{made_by}`")
        if m.get("error"):
            lines.append(f"- model.json could not be read: {m['error']}")
        lines.append("")
    for name, text in _licence_files(models).items():
        lines += [f"### Licence text: {name}", ""] + [f"> {line}" for line in text.splitlines()] + [""]
    lines += ["## Demo input", ""]
    # its own Markdown, without its title (ours says the same), headings under ours
    lines += [
        "###" + line[1:] if line.startswith("#") else line
        for line in demo_readme().splitlines()
        if not line.startswith("# ")
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- About box
class AboutDialog(QDialog):
    """Versions, device, and the licences and provenance of the bundled weights and demo."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About MusicLens")
        self.resize(720, 640)
        self.device: str | None = None
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.refresh()

    def markdown(self) -> str:
        return about_markdown(self.device)

    def refresh(self) -> None:
        self.text.setMarkdown(self.markdown())

    def set_device(self, device: str) -> None:
        self.device = device
        self.refresh()


def show_about(window) -> AboutDialog:
    """Open (or raise) the About box of ``window`` and ask its worker which device runs."""
    dialog = getattr(window, "_about_dialog", None)
    if dialog is None:
        dialog = AboutDialog(window)
        window._about_dialog = dialog
    session = getattr(window, "session", None)
    worker = getattr(window, "worker", None)
    if worker is not None:
        worker.run(
            "about: device",
            lambda ctx: describe_device(device_info(getattr(session, "model", None))),
            on_result=dialog.set_device,
            on_error=lambda message: dialog.set_device(f"unknown ({message})"),
        )
    else:  # no worker (a bare window): asking torch here is fine at About time
        dialog.set_device(describe_device(device_info()))
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


# ---------------------------------------------------------------------- first-run guide
GUIDE_AUDIO_INTRO = """<p>MusicLens opened {opened} and ran <b>{model}</b>, a pretrained network that tags
music, on it. Everything below is what that network does with the sound.</p>"""
GUIDE_MIDI_INTRO = """<p>MusicLens opened {opened} in the <b>Piano roll</b> and read every note of it
with the MIDI model named above the roll: each note is coloured by its saliency for the
class (the line beside the roll says which method and how to read its colours), <b>Flip to
class</b> finds a small change to the notes that changes its mind, and <b>Train on a folder
of your own</b> makes a model for your music. The audio
panels below wait for a recording; they show what <b>{model}</b> does with sound.</p>"""
GUIDE_HTML = """
<h3>What you are looking at</h3>
{intro}
<ul>
<li><b>Spectrogram</b> (top left): the sound as the network receives it: time runs to
the right, pitch upwards, colour is loudness. Click to move the playhead, <b>Space</b>
plays. The overlay marks where a Grad-CAM found evidence for the top tag.</li>
<li><b>Predictions</b> (right): the tags the network gives the clip, and the
<i>taggram</i>: how each tag's probability changes over time.</li>
<li><b>Layers and filters</b> (bottom left): every layer of the network. Pick one to see
what each of its filters responds to; click a filter to <i>hear</i> it.</li>
<li><b>CAM and saliency</b>: which parts of the spectrogram drove a tag; <b>Score this
map</b> and <b>Compare methods</b> say which map to believe, <b>Hear the explanation</b>
plays what the network used and what it ignored.</li>
<li>The <b>Dream</b>, <b>Similarity</b>, <b>Kernels</b> and <b>Training</b> tabs: make the
network dream, compare its layers on two sounds, inspect its weights, train your own.</li>
</ul>
<p>Open your own recording with <b>File &gt; Open</b> or by dropping it on the window, and
your own PyTorch network with <b>File &gt; Open model</b>.
This guide stays in <b>Help &gt; What am I looking at?</b></p>
"""


class GuideDialog(QDialog):
    """A small non-modal panel; dismissing it (button or window close) is remembered."""

    def __init__(self, parent: QWidget | None = None, *, model: str | None = None, opened: str | None = None) -> None:
        super().__init__(parent, Qt.Tool)
        self.setWindowTitle("MusicLens: what you are looking at")
        self.setModal(False)
        is_midi = bool(opened) and Path(str(opened)).suffix.lower() in (".mid", ".midi")
        intro = (GUIDE_MIDI_INTRO if is_midi else GUIDE_AUDIO_INTRO).format(
            model=html.escape(model or "a model"),
            opened=f"<b>{html.escape(opened)}</b>" if opened else "a 30-second demo groove",
        )
        self.label = QLabel(GUIDE_HTML.format(intro=intro))
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.RichText)
        self.ok_button = QPushButton("Got it")
        self.ok_button.setDefault(True)
        self.ok_button.clicked.connect(self.close)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.ok_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addLayout(row)
        self.label.setFixedWidth(420)  # wrapped text gets its full height at this width
        layout.setSizeConstraint(QLayout.SetFixedSize)
        self.finished.connect(lambda _code: mark_guide_dismissed())

    def closeEvent(self, event) -> None:  # noqa: N802 - the title bar's close is a dismissal too
        mark_guide_dismissed()
        super().closeEvent(event)


def guide_dismissed() -> bool:
    from musiclens.app.window import settings

    return settings().value(GUIDE_KEY, False, type=bool)


def mark_guide_dismissed() -> None:
    from musiclens.app.window import settings

    st = settings()
    st.setValue(GUIDE_KEY, True)
    st.sync()


def show_guide(window, *, model: str | None = None, opened: str | None = None) -> GuideDialog:
    """Show the guide beside ``window``'s top right corner (Help menu: always).

    ``model``, ``opened``: what the window loads (default: what its session has)."""
    dialog = getattr(window, "_guide_dialog", None)
    if dialog is None:
        session = getattr(window, "session", None)
        summary = getattr(session, "summary", None)
        recording = getattr(session, "recording", None)
        dialog = GuideDialog(
            window,
            model=model or getattr(summary, "name", None),
            opened=opened or (recording.path.name if recording is not None else None),
        )
        window._guide_dialog = dialog
    dialog.adjustSize()
    top_right = window.mapToGlobal(window.rect().topRight())
    dialog.move(max(0, top_right.x() - dialog.width() - 40), top_right.y() + 80)
    dialog.show()
    dialog.raise_()
    return dialog


def maybe_show_first_run_guide(
    window, *, screenshot: bool = False, model: str | None = None, opened: str | None = None
) -> GuideDialog | None:
    """On a first start only: never in --screenshot mode, with ``$MUSICLENS_NO_GUIDE`` set,
    or once the user has dismissed it. ``opened``: the file's name (None: the demo)."""
    if screenshot or os.environ.get(NO_GUIDE_ENV) or guide_dismissed():
        return None
    return show_guide(window, model=model, opened=opened)


def app_icon():
    """The MusicLens icon (resources/icons), for windows and the task bar."""
    from PySide6.QtGui import QIcon

    from musiclens.core.resources import resources_dir

    icon = QIcon()
    root = resources_dir() / "icons"
    for png in sorted((root / "hicolor").glob("*/apps/musiclens.png")):
        icon.addFile(str(png))
    if icon.isNull() and (root / "musiclens.svg").is_file():
        icon.addFile(str(root / "musiclens.svg"))
    return icon
