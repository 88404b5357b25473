"""musiclens.core.audio: formats, rates, channels, patching and every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from musiclens.core import audio
from musiclens.core.errors import AudioFileError, ParameterError

SR = 22050


def write(path, data, sr=SR, **kw):
    sf.write(str(path), data, sr, **kw)
    return path


@pytest.mark.parametrize(
    "ext,subtype,tol",
    [
        ("wav", "PCM_U8", 1 / 64),
        ("wav", "PCM_16", 1e-4),
        ("wav", "PCM_24", 1e-6),
        ("wav", "PCM_32", 1e-7),
        ("wav", "FLOAT", 0.0),
        ("wav", "DOUBLE", 1e-7),
        ("flac", "PCM_16", 1e-4),
        ("flac", "PCM_24", 1e-6),
    ],
)
def test_lossless_formats_read_back_the_samples(tmp_path, ext, subtype, tol):
    y = tone((220.0, 330.0), sr=SR, seconds=0.5)
    path = write(tmp_path / f"x.{ext}", y, subtype=subtype)
    got, sr = audio.load(path)
    assert sr == SR and got.dtype == np.float32 and got.shape == y.shape
    assert np.abs(got - y).max() <= tol + 1e-9


@pytest.mark.parametrize("ext", ["ogg", "mp3"])
def test_lossy_formats_keep_the_signal(tmp_path, ext):
    y = tone((440.0,), sr=44100, seconds=1.0, amp=0.5)
    path = write(tmp_path / f"x.{ext}", y, sr=44100)
    got, sr = audio.load(path)
    assert sr == 44100
    assert abs(len(got) - len(y)) < 0.05 * len(y)
    # the 440 Hz tone dominates the spectrum and keeps its level
    spectrum = np.abs(np.fft.rfft(got[:44100] * np.hanning(min(len(got), 44100))))
    assert abs(np.argmax(spectrum) * 44100 / min(len(got), 44100) - 440) < 2
    assert abs(np.sqrt(np.mean(got**2)) - 0.5 / np.sqrt(2)) < 0.05


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_mixed_to_the_mean(tmp_path, channels):
    y = np.stack([tone((110.0 * (c + 1),), seconds=0.25) * (c + 1) / channels for c in range(channels)], axis=1)
    path = write(tmp_path / "multi.wav", y, subtype="FLOAT")
    mono, _ = audio.load(path)
    np.testing.assert_allclose(mono, y.mean(axis=1), atol=1e-7)
    multi, _ = audio.load(path, mono=False)
    assert multi.shape == (channels, len(y))
    np.testing.assert_allclose(multi, y.T, atol=0)


@pytest.mark.parametrize("orig,target", [(8000, 16000), (11025, 22050), (44100, 16000), (96000, 22050)])
def test_resampling_keeps_frequency_and_duration(tmp_path, orig, target):
    y = tone((1000.0,), sr=orig, seconds=1.0, amp=0.5)
    path = write(tmp_path / "r.wav", y, sr=orig, subtype="FLOAT")
    got, sr = audio.load(path, sr=target)
    assert sr == target and len(got) == target
    spectrum = np.abs(np.fft.rfft(got * np.hanning(len(got))))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins for 1 s of audio
    assert abs(np.sqrt(np.mean(got[100:-100] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


def test_offset_and_duration_read_only_that_part(tmp_path):
    y = np.arange(SR * 4, dtype=np.float32) / (SR * 4)
    path = write(tmp_path / "ramp.wav", y, subtype="FLOAT")
    part, _ = audio.load(path, offset=1.0, duration=0.5)
    np.testing.assert_array_equal(part, y[SR : SR + SR // 2])


def test_stream_yields_the_whole_file_in_blocks(tmp_path):
    y = tone((300.0,), seconds=3.3)
    path = write(tmp_path / "s.wav", y, subtype="FLOAT")
    blocks = list(audio.stream(path, block_seconds=1.0))
    assert [round(t, 6) for t, _ in blocks] == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), y)


def test_info_reads_the_header(tmp_path):
    path = write(tmp_path / "i.wav", np.zeros((SR * 2, 3), np.float32), subtype="PCM_16")
    meta = audio.info(path)
    assert (meta.sample_rate, meta.channels, meta.frames) == (SR, 3, SR * 2)
    assert meta.duration_s == pytest.approx(2.0)


# --------------------------------------------------------------------- patching
def test_gtzan_clip_cuts_into_ten_three_second_patches():
    y = np.arange(30 * SR, dtype=np.float32)
    patches = audio.segment(y, length=3.0, rate=SR)
    assert patches.shape == (10, 3 * SR)
    np.testing.assert_array_equal(patches[3], y[9 * SR : 12 * SR])


def test_segment_hop_drop_and_pad():
    x = np.arange(11)
    assert audio.segment(x, length=4, hop=3).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert audio.segment(x, length=4, hop=3, pad_last=True).tolist() == [
        [0, 1, 2, 3],
        [3, 4, 5, 6],
        [6, 7, 8, 9],
        [9, 10, 0, 0],
    ]
    assert audio.segment(x, length=4, pad_last=True).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 0]]
    assert audio.segment(np.arange(8), length=4, pad_last=True).shape == (2, 4)  # nothing left over
    assert audio.segment(np.arange(3), length=4).shape == (0, 4)
    frames = np.arange(2 * 500).reshape(2, 500)  # (F, T) spectrogram frames
    assert audio.segment(frames, length=187).shape == (2, 2, 187)
    with pytest.raises(ParameterError, match="positive"):
        audio.segment(x, length=0)


# --------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        audio.load(tmp_path / "nothing.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty"):
        audio.load(tmp_path / "empty.wav")


def test_header_only_wav_has_no_audio(tmp_path):
    path = write(tmp_path / "h.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioFileError, match="no audio"):
        audio.load(path)


def test_text_file_is_not_audio(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not a recording\n" * 20)
    with pytest.raises(AudioFileError, match="not a readable audio file"):
        audio.load(tmp_path / "notes.wav")


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(AudioFileError, match="folder"):
        audio.load(tmp_path)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3"])
def test_truncated_files_are_reported(tmp_path, ext):
    path = write(tmp_path / f"full.{ext}", tone((440.0,), seconds=2.0))
    data = path.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=r"truncated|decoded"):
        audio.load(cut)


def test_truncated_wav_can_be_read_on_request(tmp_path):
    y = tone((440.0,), seconds=2.0)
    path = write(tmp_path / "full.wav", y, subtype="FLOAT")
    data = path.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 4 * SR])  # header + 1 s
    got, _ = audio.load(tmp_path / "cut.wav", allow_truncated=True)
    np.testing.assert_array_equal(got, y[: len(got)])
    assert abs(len(got) - SR) < 64


def test_nan_samples_are_refused(tmp_path):
    y = tone((440.0,), seconds=0.1)
    y[10] = np.nan
    path = write(tmp_path / "nan.wav", y, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="non-finite"):
        audio.load(path)


def test_long_files_are_refused_before_reading(tmp_path):
    path = write(tmp_path / "long.wav", np.zeros(SR * 5, np.float32))
    with pytest.raises(AudioFileError, match="min long"):
        audio.load(path, max_seconds=2.0)
    part, _ = audio.load(path, max_seconds=2.0, duration=1.0)  # a part within the limit is fine
    assert len(part) == SR


def test_offset_past_the_end(tmp_path):
    path = write(tmp_path / "short.wav", np.zeros(SR, np.float32))
    with pytest.raises(ParameterError, match="past the end"):
        audio.load(path, offset=2.0)


def test_save_refuses_nan(tmp_path):
    with pytest.raises(ParameterError, match="NaN"):
        audio.save(tmp_path / "o.wav", np.array([0.0, np.nan], np.float32), SR)


# --------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_every_shared_recording_loads(shared_data):
    files = [p for p in (shared_data / "audio").rglob("*") if p.suffix.lower() in (".wav", ".ogg", ".mp3", ".flac")]
    assert len(files) > 150
    for path in files:
        y, sr = audio.load(path, sr=16000)
        assert y.ndim == 1 and sr == 16000 and len(y) > 1000 and np.isfinite(y).all(), path


def test_resampling_equals_librosa_soxr_hq():
    import librosa

    x = np.random.default_rng(3).standard_normal((2, 22051)).astype(np.float32)
    for orig, target in ((22050, 16000), (8000, 44100)):
        ours = audio.resample(x, orig_sr=orig, target_sr=target)
        theirs = librosa.resample(x, orig_sr=orig, target_sr=target, res_type="soxr_hq")
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["loud.wav", "loud.flac"])
def test_save_never_clips(tmp_path, name):
    y = 1.8 * tone((440.0,), seconds=0.2, amp=1.0)  # peaks at 1.8, like a strong dream
    path = audio.save(tmp_path / name, y, SR)
    back, _ = sf.read(path, dtype="float32")
    flat = np.isclose(np.abs(back), np.abs(back).max(), atol=1e-4).sum()
    assert flat < 0.01 * len(back)  # no run of samples stuck at the ceiling
    if name.endswith(".wav"):
        np.testing.assert_allclose(back, y, atol=1e-6)  # float WAV keeps the level exactly
    else:
        assert abs(np.abs(back).max() - 0.99) < 1e-3
        np.testing.assert_allclose(back, y * (0.99 / np.abs(y).max()), atol=1e-4)


# --------------------------------------------------------------------- hostile headers (issue 18)
def _ogg(tmp_path, seconds=2.0, sr=16000):
    y = tone((440.0,), sr=sr, seconds=seconds)
    return write(tmp_path / "a.ogg", np.stack([y, y[::-1]], 1), sr, subtype="VORBIS")


def test_stream_ends_where_the_data_ends_when_the_header_promises_more(tmp_path):
    """An Ogg whose last page's granule says 2**40 samples (19,000 hours): the stream ends
    after the real 8 s, without stale samples, and equals what load reads."""
    import struct

    from fuzz_loaders import fix_ogg_crcs, ogg_pages

    path = _ogg(tmp_path, seconds=8.0)
    good = np.concatenate([b for _, b in audio.stream(path)])
    buf = bytearray(path.read_bytes())
    last = ogg_pages(buf)[-1][0]
    buf[last + 6 : last + 14] = struct.pack("<q", 2**40)
    bad = tmp_path / "granule.ogg"
    bad.write_bytes(fix_ogg_crcs(buf))
    meta = audio.info(bad)
    assert meta.frames == 2**40 and not meta.plausible and "hours" in meta.warning and "bytes can hold" in meta.warning
    streamed = np.concatenate([b for _, b in audio.stream(bad, block_seconds=0.25)])
    np.testing.assert_array_equal(streamed, good)
    whole, _ = audio.load(bad, allow_truncated=True)
    np.testing.assert_array_equal(whole, good)
    with pytest.raises(AudioFileError, match="truncated"):
        audio.load(bad)


@pytest.mark.parametrize("block_seconds", [0.07, 1.0, 100.0])
def test_streamed_mp3_puts_together_to_what_load_reads(tmp_path, block_seconds):
    """An mp3 whose Xing header promises 3 frames more than it holds (the demo MP3 of MusiCNN
    promises 2,356 samples too many): the stream ends at the decoded data, and its blocks put
    together are load's samples, bit for bit (the decoder's last bit depends on where reads
    split: both read the same grid)."""
    path = write(tmp_path / "t.mp3", tone((330.0, 660.0), sr=16000, seconds=3.0), 16000)
    buf = bytearray(path.read_bytes())
    at = buf.find(b"Xing")
    assert at > 0 and buf[at + 7] & 1  # the frame count is there
    frames = int.from_bytes(buf[at + 8 : at + 12], "big")
    buf[at + 8 : at + 12] = (frames + 3).to_bytes(4, "big")
    path.write_bytes(buf)
    meta = audio.info(path)
    y, _ = audio.load(path)
    assert len(y) < meta.frames  # the header promised more than there is
    z = np.concatenate([b for _, b in audio.stream(path, block_seconds=block_seconds)])
    np.testing.assert_array_equal(z, y)


@pytest.mark.realdata
def test_the_musicnn_demo_mp3_streams_exactly_what_load_reads(shared_data):
    path = shared_data / "audio" / "musicnn" / "joram-moments_of_clarity-08-solipsism-59-88.mp3"
    if not path.exists():
        pytest.skip(f"{path.name} is not in ../shared/data")
    y, _ = audio.load(path)
    z = np.concatenate([b for _, b in audio.stream(path, block_seconds=7.0)])
    assert len(z) == len(y) < audio.info(path).frames
    np.testing.assert_array_equal(z, y)


def _peak_traced(fn):
    """(result or exception, peak bytes numpy and Python allocated while ``fn`` ran)."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the test to check
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_ogg_claiming_240_channels_allocates_nothing_big(tmp_path):
    from fuzz_loaders import fix_ogg_crcs

    buf = bytearray(_ogg(tmp_path, seconds=8.0).read_bytes())
    at = buf.find(b"\x01vorbis")
    buf[at + 11] = 240
    bad = tmp_path / "ch240.ogg"
    bad.write_bytes(fix_ogg_crcs(buf))
    for call in (lambda: audio.load(bad), lambda: audio.load(bad, mono=False), lambda: list(audio.stream(bad))):
        out, peak = _peak_traced(call)
        assert isinstance(out, AudioFileError) and peak < 20 * 2**20, (out, peak)
        assert "Internal error" not in str(out) and "SF_INFO" not in str(out)


def test_an_aiff_claiming_32_channels_at_1_hz_is_refused_before_allocating(tmp_path):
    """16 kHz mono PCM relabelled 32 channels at 1 Hz: loaded at 16 kHz without mixing it would
    take 7.6 GB; refused with the reason, before decoding; info calls the header implausible."""
    import struct

    path = write(tmp_path / "a.aiff", tone((440.0,), sr=16000, seconds=8.0), 16000, subtype="PCM_16")
    buf = bytearray(path.read_bytes())
    c = buf.find(b"COMM")
    buf[c + 8 : c + 10] = struct.pack(">h", 32)
    buf[c + 16 : c + 26] = struct.pack(">HQ", 16383, 1 << 63)  # 80-bit extended 1.0
    bad = tmp_path / "ch32.aiff"
    bad.write_bytes(buf)
    meta = audio.info(bad)
    assert (meta.channels, meta.sample_rate) == (32, 1) and not meta.plausible and "1 Hz" in meta.warning
    out, peak = _peak_traced(lambda: audio.load(bad, sr=16000, mono=False, max_seconds=None))
    assert isinstance(out, AudioFileError) and "GB" in str(out) and "1 Hz" in str(out)
    assert peak < 20 * 2**20
    with pytest.raises(AudioFileError, match="sample rate of 1 Hz"):
        list(audio.stream(bad))


def test_decoding_more_than_the_file_can_hold_is_refused(tmp_path, monkeypatch):
    """The bound on decoded samples per byte is applied while decoding (a decoder that keeps
    giving samples is stopped); real files are far below it."""
    path = write(tmp_path / "z.flac", np.zeros(SR * 4, np.float32), subtype="PCM_16")  # silence: ~340 samples/byte
    assert audio.load(path)[0].shape == (SR * 4,)
    monkeypatch.setattr(audio, "COMPRESSED_SAMPLES_PER_BYTE", 20.0)
    with pytest.raises(AudioFileError, match=r"more audio than its \d+ bytes can hold"):
        list(audio.stream(path))


def test_plausible_headers_are_not_flagged(tmp_path):
    for ext, sub in (("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")):
        meta = audio.info(write(tmp_path / f"p.{ext}", tone(seconds=1.0), subtype=sub))
        assert meta.plausible and meta.warning is None, (ext, meta)
        assert meta.size == (tmp_path / f"p.{ext}").stat().st_size


def test_pipes_devices_and_folders_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path, what in ((fifo, "named pipe"), ("/dev/zero", "device"), (tmp_path, "folder")):
        for call in (audio.info, audio.load, lambda p: list(audio.stream(p))):
            with pytest.raises(AudioFileError, match=what):
                call(path)


def test_a_misleading_decoder_message_is_not_passed_on(tmp_path):
    path = tmp_path / "x.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(range(256)) * 8)  # a frame sync, then nonsense
    with pytest.raises(AudioFileError) as err:
        audio.load(path)
    assert "does not exist" not in str(err.value) and "not a regular file" not in str(err.value)
