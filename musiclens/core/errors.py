"""The one exception type users can cause (librosa's ``ParameterError`` style)."""


class MusicLensError(Exception):
    """A problem with the user's input or settings.

    The message says what was wrong and what is allowed; the CLI prints it as one
    line and exits non-zero, the GUI shows it in the status bar or a dialog.
    """


class ParameterError(MusicLensError, ValueError):
    """A parameter value is outside what the function accepts."""


class AudioFileError(MusicLensError):
    """An audio file cannot be read (missing, empty, truncated, not audio, too long)."""
