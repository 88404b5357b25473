"""Headless engine of MusicLens: numpy, torch, librosa, soundfile. Never imports Qt."""
