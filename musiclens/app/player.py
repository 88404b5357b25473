"""Playback through sounddevice (PortAudio) with a moving playhead.

The player owns one output stream at a fixed device rate (44,100 Hz by default); audio at
any other rate is resampled once, before playback starts (polyphase, scipy). Position is
polled by a QTimer and emitted as ``position_changed(seconds)`` in the *source's* time base,
so the spectrogram's playhead needs no conversion. Without PortAudio or an output device
the player reports one clear message through ``error`` and everything else keeps working.
"""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

DEVICE_RATE = 44100


def to_device_rate(audio: np.ndarray, sr: int, rate: int = DEVICE_RATE) -> np.ndarray:
    """Mono float audio (samples,) at ``sr`` -> float32 at ``rate`` (polyphase resampling)."""
    audio = np.asarray(audio, dtype=np.float32)
    if sr == rate:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(rate, sr).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


class Player(QObject):
    position_changed = Signal(float)  # seconds in the source's time base
    state_changed = Signal(bool)  # playing?
    error = Signal(str)

    def __init__(self, parent: QObject | None = None, *, rate: int = DEVICE_RATE) -> None:
        super().__init__(parent)
        self.rate = rate
        self.label = ""
        self._buffer = np.zeros(0, np.float32)
        self._pos = 0  # next frame to play, device rate
        self._lock = threading.Lock()
        self._stream = None
        self._timer = QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self._tick)

    # ------------------------------------------------------------------ state
    @property
    def playing(self) -> bool:
        return self._stream is not None and self._stream.active

    @property
    def duration_s(self) -> float:
        return len(self._buffer) / self.rate

    @property
    def position_s(self) -> float:
        return self._pos / self.rate

    def load(self, audio: np.ndarray, sr: int, *, label: str = "") -> None:
        """Replace what plays next (stops current playback)."""
        self.stop()
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"the player takes mono audio, got shape {audio.shape}")
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if not np.isfinite(peak):
            self.error.emit(f"not playing {label or 'audio'}: it contains NaN or infinite samples")
            audio = np.zeros(0, np.float32)
        elif peak > 1.0:  # auralisations can exceed full scale: normalise instead of clipping
            audio = audio / peak
        with self._lock:
            self._buffer = to_device_rate(audio, sr, self.rate)
            self._pos = 0
        self.label = label

    def play(
        self, audio: np.ndarray | None = None, sr: int | None = None, *, start_s: float = 0.0, label: str = ""
    ) -> bool:
        """Start playing (new audio if given) from ``start_s``. False if no device."""
        if audio is not None:
            self.load(audio, int(sr), label=label)
        if not len(self._buffer):
            return False
        self.seek(start_s)
        return self._start()

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        elif len(self._buffer):
            if self._pos >= len(self._buffer):
                self._pos = 0
            self._start()

    def pause(self) -> None:
        self._close_stream()
        self.state_changed.emit(False)

    def stop(self) -> None:
        self._close_stream()
        with self._lock:
            self._pos = 0
        self.state_changed.emit(False)

    def seek(self, seconds: float) -> None:
        with self._lock:
            self._pos = int(np.clip(seconds * self.rate, 0, len(self._buffer)))
        self.position_changed.emit(self.position_s)

    # ------------------------------------------------------------------ stream
    def _start(self) -> bool:
        self._close_stream()
        try:
            import sounddevice as sd

            self._stream = sd.OutputStream(
                samplerate=self.rate, channels=1, dtype="float32", callback=self._callback, finished_callback=None
            )
            self._stream.start()
        # no PortAudio (OSError), no device (PortAudioError) or anything else: a message, never a crash
        except Exception as exc:  # noqa: BLE001
            self._stream = None
            detail = " ".join(str(exc).split())
            self.error.emit(
                f"no audio output: {detail}. Everything else works; export the audio as WAV to listen elsewhere."
            )
            self.state_changed.emit(False)
            return False
        self._timer.start()
        self.state_changed.emit(True)
        return True

    def _callback(self, outdata, frames, _time, _status) -> None:  # PortAudio thread
        with self._lock:
            chunk = self._buffer[self._pos : self._pos + frames]
            self._pos += len(chunk)
        outdata[: len(chunk), 0] = chunk
        if len(chunk) < frames:
            outdata[len(chunk) :, 0] = 0.0
            import sounddevice as sd

            raise sd.CallbackStop()

    def _close_stream(self) -> None:
        self._timer.stop()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # noqa: BLE001 - a stream that fails to stop is dropped all the same
                pass
            self._stream = None

    def _tick(self) -> None:
        self.position_changed.emit(self.position_s)
        if self._stream is not None and not self._stream.active:
            self._close_stream()
            self.state_changed.emit(False)

    def close(self) -> None:
        self._close_stream()
