"""File > Open model…: open the user's own network (a ``.py`` + weights, a ``.pt2`` torch.export
program, a TorchScript file, or a model folder). When the folder has no ``model.json`` the dialog
writes it: the session guesses what it can from the network (label count from the output size, a
front end from the first layer's expected input), the user gives the rest (labels, sample rate,
patch length, multi-label), and the folder is written and opened.

Running a user's Python code is their explicit choice: a ``.py`` (or a folder whose ``model.json``
names one) opens only with the "Run the Python code" box ticked; weights alone never run code.
The torch work (guessing, writing and checking the folder) runs on the session's worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

META_FILE = "model.json"  # musiclens.core.resources.META_FILE (the core is not imported here: no torch)
PYTHON = (".py",)
EXPORTED = (".pt2",)
TORCHSCRIPT = (".ts", ".torchscript", ".jit", ".pt", ".pth")  # .pt/.pth: TorchScript, or weights beside a .py
WEIGHTS = (".safetensors", ".pt", ".pth", ".bin")
MODEL_FILTER = (
    "Models (*.py *.pt2 *.ts *.torchscript *.jit *.pt *.pth);;Python network (*.py);;"
    "torch.export program (*.pt2);;TorchScript (*.ts *.torchscript *.jit *.pt *.pth);;All files (*)"
)
WEIGHTS_FILTER = "Weights (*.safetensors *.pt *.pth *.bin);;All files (*)"
INPUT_KINDS = (("audio", "audio: a spectrogram (front end)"), ("waveform", "waveform: raw samples"))


def python_file(source: Path) -> Path | None:
    """The Python file whose code opening ``source`` would run, or None (nothing of the user's runs).

    A ``.py``; a folder whose ``model.json`` names ``"architecture": {"python": "net.py:Net"}``;
    a folder without ``model.json`` that holds one ``.py`` file."""
    if source.is_file():
        return source if source.suffix.lower() in PYTHON else None
    if not source.is_dir():
        return None
    meta_path = source / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None  # the load says what is wrong with it
        arch = meta.get("architecture") if isinstance(meta, dict) else None
        code = arch.get("python") if isinstance(arch, dict) else None
        if not code:
            return None
        name = str(code).split(":", 1)[0]
        return source / name if name.endswith(".py") else Path(name.replace(".", "/") + ".py")
    found = sorted(source.glob("*.py"))
    return found[0] if len(found) == 1 else (found[0] if found else None)


def weights_beside(source: Path) -> Path | None:
    """The one weights file next to a ``.py`` (or inside a folder), if there is exactly one."""
    where = source if source.is_dir() else source.parent
    found = sorted(p for p in where.iterdir() if p.is_file() and p.suffix.lower() in WEIGHTS)
    return found[0] if len(found) == 1 else None


TORCHSCRIPT_NOTE = (
    "TorchScript: predictions and input attributions (saliency, dream) work; its layers cannot be hooked "
    "(no layer maps, CAM or filter listening): export it with torch.export (.pt2) to look inside"
)
#: model.json fields as the dialog names them
FIELD_NAMES = {
    "labels": "the labels",
    "sample_rate": "the sample rate",
    "multilabel": "multi-label or not",
    "patch_frames": "the patch length",
    "front_end": "the front end",
    "weights": "the weights",
    "params": "the network's arguments",
}


def default_folder(source: Path) -> Path:
    """Where the dialog writes a model folder: a folder as it is; beside a ``.py`` (its code and
    weights are there, nothing is copied); a new ``<name>-model`` folder beside a single file."""
    if source.is_dir():
        return source
    return source.parent if source.suffix.lower() in PYTHON else source.parent / f"{source.stem}-model"


def parse_labels(text: str) -> list[str]:
    """Comma-separated labels (a text file's lines joined with commas works too)."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class OpenModelDialog(QDialog):
    """Pick a model; write its ``model.json`` when it has none; ``opened(folder, trust_code)``
    once there is a model folder to load (the window loads it and lists it in the picker)."""

    opened = Signal(str, bool)  # model folder, trust_code (the user ticked "Run the Python code")

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open a model")
        self.session = session
        self.source: Path | None = None
        self.meta: dict[str, Any] | None = None  # the guessed model.json (None until guessed)
        self._guessed_for: tuple[str, bool] | None = None  # the choice guessed (or being guessed)
        self._in_flight: tuple[str, bool] | None = None  # the choice of the guess running now
        self._busy = False
        self._write_trust = False  # the trust box when "Write and open" was pressed

        self.path = QLineEdit()
        self.path.setPlaceholderText("a .py file, a .pt2, a TorchScript file or a model folder")
        self.path.editingFinished.connect(lambda: self.set_source(self.path.text()))
        file_button = QPushButton("File…")
        file_button.clicked.connect(self._pick_file)
        folder_button = QPushButton("Folder…")
        folder_button.clicked.connect(self._pick_folder)
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("its trained weights: .safetensors, or a .pt/.pth state dict")
        self.weights.editingFinished.connect(self._update)
        self.weights_button = QPushButton("Browse…")
        self.weights_button.clicked.connect(self._pick_weights)
        self.trust = QCheckBox("Run the Python code in net.py (only open code you trust)")
        self.trust.setToolTip(
            "Opening this model imports its Python file, which can do anything your account can. "
            "A weights file alone never runs code; .pt2 and TorchScript files run none of yours."
        )
        self.trust.toggled.connect(lambda _on: self._update())

        pick = QHBoxLayout()
        pick.addWidget(self.path, 1)
        pick.addWidget(file_button)
        pick.addWidget(folder_button)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights, 1)
        weights_row.addWidget(self.weights_button)
        self.weights_row = QWidget()
        self.weights_row.setLayout(weights_row)
        weights_row.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.addRow("Model", pick)
        top.addRow("Weights", self.weights_row)
        top.addRow("", self.trust)

        # what model.json will say: guessed fields shown, the rest asked
        self.outputs = QLabel("")
        self.kind = QComboBox()
        for key, text in INPUT_KINDS:
            self.kind.addItem(text, key)
        self.kind.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.front_end = QLabel("")
        self.front_end.setWordWrap(True)
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("comma-separated, in output order")
        self.labels.textChanged.connect(lambda _t: self._update())
        labels_file = QPushButton("From a text file…")
        labels_file.setToolTip("one label per line (or comma-separated)")
        labels_file.clicked.connect(self._pick_labels)
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels, 1)
        labels_row.addWidget(labels_file)
        self.sample_rate = QSpinBox()
        self.sample_rate.setRange(1000, 192000)
        self.sample_rate.setSuffix(" Hz")
        self.sample_rate.valueChanged.connect(lambda _v: self._update_seconds())
        self.patch = QSpinBox()
        self.patch.setRange(1, 10_000_000)
        self.patch.valueChanged.connect(lambda _v: self._update_seconds())
        self.seconds = QLabel("")
        patch_row = QHBoxLayout()
        patch_row.addWidget(self.patch)
        patch_row.addWidget(self.seconds, 1)
        self.multilabel = QCheckBox("several labels at once (sigmoid outputs: tags)")
        self.name = QLineEdit()
        self.out = QLineEdit()
        self.out.setToolTip("model.json (and the weights, as weights.safetensors) are written here")
        out_button = QPushButton("Browse…")
        out_button.clicked.connect(self._pick_out)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(out_button)
        form = QFormLayout()
        self.asked = QLabel("")
        self.asked.setWordWrap(True)
        form.addRow(self.asked)
        form.addRow("Outputs", self.outputs)
        form.addRow("Input", self.kind)
        form.addRow("Front end", self.front_end)
        form.addRow("Labels", labels_row)
        form.addRow("Sample rate", self.sample_rate)
        form.addRow("Patch length", patch_row)
        form.addRow("Multi-label", self.multilabel)
        form.addRow("Name", self.name)
        form.addRow("Write to", out_row)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: palette(mid)")
        form.addRow("", self.notes)
        self.describe = QGroupBox("model.json is missing: describe the model")
        self.describe.setLayout(form)
        self.describe.hide()

        self.message = QLabel("Choose a model file or folder.")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        self.open_button = self.buttons.button(QDialogButtonBox.Open)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.describe)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.resize(640, 200)
        self._update()

    # ------------------------------------------------------------------ choosing
    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", self._start_dir(), MODEL_FILTER)
        if path:
            self.set_source(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder", self._start_dir())
        if path:
            self.set_source(path)

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The network's weights", self._start_dir(), WEIGHTS_FILTER)
        if path:
            self.weights.setText(path)
            self._update()

    def _pick_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labels, one a line", self._start_dir(), "Text (*.txt);;All (*)")
        if path:
            try:
                self.labels.setText(", ".join(parse_labels(Path(path).read_text())))
            except (OSError, UnicodeDecodeError) as exc:
                self._say(f"Could not read {Path(path).name}: {exc}")

    def _pick_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Write the model folder in", self.out.text() or self._start_dir())
        if path:
            self.out.setText(path)

    def _start_dir(self) -> str:
        if self.source is None:
            return ""
        return str(self.source if self.source.is_dir() else self.source.parent)

    def set_source(self, path: str | Path) -> None:
        """The model to open: a file or a folder (also what the File… and Folder… buttons do)."""
        text = str(path).strip()
        source = Path(text).expanduser() if text else None
        if source == self.source and self.path.text() == text:
            return
        self.source = source
        self.path.setText(text)
        self.meta, self._guessed_for = None, None
        self.describe.hide()
        if source is not None and self._needs_weights() and not self.weights.text():
            found = weights_beside(source) if source.exists() else None
            if found is not None:
                self.weights.setText(str(found))
        if source is not None:
            self.name.setText(source.stem if source.is_file() else source.name)
            self.out.setText(str(default_folder(source)))
        self._update()

    # ------------------------------------------------------------------ state
    def code_file(self) -> Path | None:
        """The Python file that opening the chosen model runs (None: no code of the user's)."""
        return python_file(self.source) if self.source is not None else None

    def _has_meta(self) -> bool:
        return self.source is not None and self.source.is_dir() and (self.source / META_FILE).is_file()

    def _needs_weights(self) -> bool:
        """A .py (or a folder of code without model.json) needs a weights file."""
        return self.source is not None and not self._has_meta() and self.code_file() is not None

    def _say(self, text: str) -> None:
        self.message.setText(text)

    def _update(self) -> None:
        """Show what applies to the chosen model; start guessing once everything needed is there."""
        source, code = self.source, self.code_file()
        self.trust.setVisible(code is not None)
        if code is not None:
            self.trust.setText(f"Run the Python code in {code.name} (only open code you trust)")
        self.weights_row.setEnabled(self._needs_weights())
        ready = False
        if self._busy:
            pass
        elif source is None:
            self._say("Choose a model file or folder.")
        elif not source.exists():
            self._say(f"{source} does not exist.")
        elif code is not None and not self.trust.isChecked():
            self._say(
                f"This model is Python code ({code.name}): tick the box to run it, or choose a .pt2 "
                "(torch.export) or TorchScript file, which runs none of your code."
            )
        elif self._needs_weights() and not Path(self.weights.text()).is_file():
            self._say("Choose the network's weights (.safetensors, or a .pt/.pth state dict).")
        elif self._has_meta():
            self._say(f"{source.name} has a {META_FILE}: Open loads it.")
            ready = True
        elif self.meta is None:
            self._guess()
        else:
            ready = self._check_form()
        self.open_button.setEnabled(ready and not self._busy)
        self.open_button.setText("Open" if self.meta is None else "Write and open")

    def _check_form(self) -> bool:
        """The asked-for fields are complete: say what is missing otherwise."""
        unknown = set((self.meta or {}).get("_unknown", []))
        if self.kind.currentData() == "audio" and not (self.meta or {}).get("front_end"):
            self._say(
                "MusicLens could not guess this network's input (its first layer is not a convolution over a "
                "spectrogram or a waveform): choose 'waveform' if it reads raw samples, or write model.json by hand."
            )
            return False
        if "params" in unknown:
            self._say("The network cannot be made from this file as it is: " + "; ".join(self.meta.get("_notes", [])))
            return False
        n = self.n_outputs()
        labels = parse_labels(self.labels.text())
        if not labels:
            self._say(f"Give the {n} labels, comma-separated or from a text file." if n else "Give the labels.")
            return False
        if n and len(labels) != n:
            self._say(f"The network has {n} outputs but {len(labels)} labels are given.")
            return False
        self._say(f"{META_FILE} will be written to {self.out.text()}, then the model opens.")
        return True

    def n_outputs(self) -> int:
        """The network's output size, measured by the guess (0: not measured)."""
        return len((self.meta or {}).get("labels") or [])

    # ------------------------------------------------------------------ guessing (worker)
    def _guess(self) -> None:
        assert self.source is not None
        trust = self.trust.isChecked()
        key = (str(self.source), trust)
        if self._guessed_for == key:
            return
        self._guessed_for = self._in_flight = key
        self._set_busy(True, f"Reading {self.source.name} to guess its model.json…")
        self.session.user_model("guess", (self.source,), self._guessed, self._failed, trust_code=trust)

    def _stale(self) -> bool:
        """The guess that ended was for another choice (the user changed it meanwhile): start
        the guess for the new one instead of showing it."""
        self._set_busy(False)
        if self._in_flight == self._guessed_for:
            return False
        self._update()
        return True

    def _guessed(self, meta: dict[str, Any]) -> None:
        if self._stale():
            return
        self.meta = dict(meta)
        self._fill(self.meta)
        self.describe.show()
        self.resize(max(self.width(), 640), self.sizeHint().height())
        self._update()

    def _failed(self, message: str) -> None:
        if self._stale():
            return
        self._guessed_for = None  # the user may change something and try again
        self._say(f"⚠ {message}")
        self.open_button.setEnabled(False)

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self._busy = busy
        if text:
            self._say(text)
        self.open_button.setEnabled(not busy)

    def _fill(self, meta: dict[str, Any]) -> None:
        """Show the guessed fields; the ones in ``_unknown`` are marked for the user."""
        unknown = set(meta.get("_unknown", []))
        n = self.n_outputs()
        self.outputs.setText(f"{n} (from the size of the network's output)" if n else "not measured: give the labels")
        kind = meta.get("input", "audio")
        self.kind.setCurrentIndex(max(0, self.kind.findData(kind)))
        labels = meta.get("labels") or []
        self.labels.setText("" if "labels" in unknown else ", ".join(map(str, labels)))
        self.labels.setPlaceholderText(f"{n} labels, comma-separated, in output order" if n else "comma-separated")
        self.multilabel.setChecked(bool(meta.get("multilabel", False)))
        guessed = [
            what
            for what, known in (
                ("the number of outputs", n > 0),
                ("the input", bool(meta.get("front_end") or meta.get("waveform")) and "front_end" not in unknown),
                (
                    "the patch length",
                    "patch_frames" not in unknown and bool(meta.get("patch_frames") or meta.get("waveform")),
                ),
            )
            if known
        ]
        asked = [FIELD_NAMES.get(field, field) for field in meta.get("_unknown", [])]
        self.asked.setText(
            f"Guessed from the network: {', '.join(guessed) or 'nothing'}. Please check them and give: "
            f"{', '.join(asked)}."
        )
        notes = list(meta.get("_notes") or [])
        if "torchscript" in (meta.get("architecture") or {}):
            notes.append(TORCHSCRIPT_NOTE)
        self.notes.setText("; ".join(notes))
        self.notes.setVisible(bool(notes))
        if meta.get("name"):
            self.name.setText(str(meta["name"]))
        self._kind_changed()
        for field, widget in (
            ("labels", self.labels),
            ("sample_rate", self.sample_rate),
            ("patch_frames", self.patch),
            ("multilabel", self.multilabel),
        ):
            widget.setToolTip("to give: not found in the network" if field in unknown else "guessed")

    def _kind_changed(self) -> None:
        meta = self.meta or {}
        kind = self.kind.currentData()
        if kind == "waveform":
            spec = meta.get("waveform") or {}
            self.front_end.setText("none: the network reads raw samples (B, 1, samples)")
            self.sample_rate.setValue(
                int(spec.get("sample_rate") or (meta.get("front_end") or {}).get("sample_rate") or 16000)
            )
            self.patch.setSuffix(" samples")
            self.patch.setValue(int(spec.get("patch_samples") or self.sample_rate.value()))
        else:
            fe = meta.get("front_end") or {}
            self.front_end.setText(describe_front_end(fe, "guessed from the first layer's input" if fe else ""))
            self.sample_rate.setValue(int(fe.get("sample_rate") or 22050))
            self.patch.setSuffix(" frames")
            self.patch.setValue(int(meta.get("patch_frames") or 128))
        self._update_seconds()

    def _update_seconds(self) -> None:
        rate = self.sample_rate.value()
        if self.kind.currentData() == "waveform":
            seconds = self.patch.value() / rate
        else:
            hop = int((self.meta or {}).get("front_end", {}).get("hop") or 0)
            seconds = self.patch.value() * hop / rate if hop else 0.0
        self.seconds.setText(f"≈ {seconds:.2f} s" if seconds else "")

    # ------------------------------------------------------------------ writing (worker) and opening
    def meta_to_write(self) -> dict[str, Any]:
        """The guessed ``model.json`` with what the user gave (the ``_`` keys, e.g. ``_source``, the
        folder the network's files are copied from, are read by the writer and not written)."""
        assert self.meta is not None
        meta = dict(self.meta)
        kind = self.kind.currentData()
        meta["input"] = kind
        meta["name"] = self.name.text().strip() or (self.source.stem if self.source else "model")
        meta["labels"] = parse_labels(self.labels.text())
        meta["multilabel"] = self.multilabel.isChecked()
        if kind == "waveform":
            meta.pop("front_end", None)
            meta.pop("patch_frames", None)
            meta["waveform"] = {
                **(self.meta.get("waveform") or {}),
                "sample_rate": self.sample_rate.value(),
                "patch_samples": self.patch.value(),
            }
        else:
            meta.pop("waveform", None)
            meta["front_end"] = {**(self.meta.get("front_end") or {}), "sample_rate": self.sample_rate.value()}
            meta["patch_frames"] = self.patch.value()
        return meta

    def _accept(self) -> None:
        if not self.open_button.isEnabled() or self.source is None:
            return
        trust = self._write_trust = self.code_file() is not None and self.trust.isChecked()
        if self.meta is None:  # a folder with model.json
            self._open(str(self.source), trust)
            return
        weights = Path(self.weights.text()) if self._needs_weights() else None
        folder = Path(self.out.text()).expanduser()
        self._set_busy(True, f"Writing {folder}…")
        self.session.user_model(
            "write",
            (self.meta_to_write(), folder),
            self._written,
            self._write_failed,
            weights=weights,
            trust_code=trust,
        )

    def _write_failed(self, message: str) -> None:
        self._set_busy(False)
        self._say(f"⚠ {message}")
        self.open_button.setEnabled(True)

    def _written(self, folder: Path) -> None:
        self._open(str(folder), self._write_trust)

    def _open(self, folder: str, trust: bool) -> None:
        self._set_busy(False)
        self.opened.emit(folder, trust)
        self.accept()


def describe_front_end(fe: dict[str, Any], why: str = "") -> str:
    """One line for a front-end dict: ``logmel, 96 mel bands, n_fft 512, hop 256``."""
    if not fe:
        return "unknown"
    parts = [str(fe.get("kind", "?"))]
    if fe.get("n_mels"):
        parts.append(f"{fe['n_mels']} mel bands")
    if fe.get("n_fft"):
        parts.append(f"n_fft {fe['n_fft']}")
    if fe.get("hop"):
        parts.append(f"hop {fe['hop']}")
    text = ", ".join(parts)
    return f"{text} ({why})" if why else text


def headline(reason: str) -> str:
    """A limit's first clause, capitalised, for a one-line place (a tree row, a placeholder):
    ``"a TorchScript network runs compiled code, so its layers cannot be hooked (outputs …); …"``
    -> ``"A TorchScript network runs compiled code, so its layers cannot be hooked"``."""
    first = reason.split(" (", 1)[0].split(";", 1)[0].split(": ", 1)[0].strip()
    return first[:1].upper() + first[1:]
