"""The ``musiclens`` command: one sub-command per analysis, JSON on stdout where asked.

Each sub-command lives in its own module under ``musiclens.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``. Add a new module's name to ``COMMAND_MODULES`` to expose it.

Errors a user can cause (:class:`musiclens.core.errors.MusicLensError`, missing files,
bad values) are printed as one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from musiclens import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "musiclens.cli.gui",
    "musiclens.cli.info",
    "musiclens.cli.spectrogram",
    "musiclens.cli.layers",
    "musiclens.cli.tag",
    "musiclens.cli.kernels",
    "musiclens.cli.activations",
    "musiclens.cli.auralise",
    "musiclens.cli.cam",
    "musiclens.cli.dream",
    "musiclens.cli.similarity",
    "musiclens.cli.deconv",
    "musiclens.cli.saliency",
    "musiclens.cli.sanity",
    "musiclens.cli.faithfulness",
    "musiclens.cli.flip",
    "musiclens.cli.train",
    "musiclens.cli.evaluate",
    "musiclens.cli.predict",
    "musiclens.cli.midi_classify",
    "musiclens.cli.midi_flip",
    "musiclens.cli.batch",
    "musiclens.cli.hear_explanation",
    "musiclens.cli.study",
)


class _ShowDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").strip()
        default = action.default
        if (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or "%(default)" in text
            or not action.option_strings
            or text == argparse.SUPPRESS
        ):
            return text
        if isinstance(default, (list, tuple)):
            shown = ",".join(str(v) for v in default)
        else:
            shown = str(default)
        if "default" in text and shown in text:
            return text
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        if (
            not (action.help and action.help.strip())
            and action.help != argparse.SUPPRESS
            and self._get_help_string(action)
        ):  # an option without help still shows its default
            import copy

            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


class _RawDescriptionShowDefaults(argparse.RawDescriptionHelpFormatter, _ShowDefaults):
    pass


class _Parser(argparse.ArgumentParser):
    """Every sub-command's parser: defaults in ``--help`` and one-line usage errors."""

    def __init__(self, *args, formatter_class=None, **kwargs):
        raw = formatter_class is not None and issubclass(formatter_class, argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, formatter_class=_RawDescriptionShowDefaults if raw else _ShowDefaults, **kwargs)

    def error(self, message: str):  # argparse prints the usage first; one line is enough
        one_line = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {one_line} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="musiclens",
        description="See, hear and edit what neural networks do with music.",
    )
    parser.add_argument("--version", action="version", version=f"musiclens {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON on stdout (one document, newline-terminated)."""
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def fail(message: str, status: int = 2) -> int:
    """Print one line ``musiclens: error: message`` on stderr and return ``status``."""
    one_line = " ".join(str(message).split())
    print(f"musiclens: error: {one_line}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    from musiclens.core.errors import MusicLensError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:  # no sub-command: open the window
        from musiclens.cli import gui

        args = (
            parser.parse_args(["gui", *(argv or [])])
            if argv
            else argparse.Namespace(file=None, model=None, demo=True, screenshot=None)
        )
        return gui.run(args)
    try:
        return int(args.func(args) or 0)
    except MusicLensError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", status=130)
    except BrokenPipeError:  # e.g. `musiclens tag … --json | head`: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # files and folders (an output folder that cannot be made, ...)
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return fail(f"{exc.strerror or exc}{where}")
    except MemoryError:
        return fail("out of memory; try a shorter file or a smaller batch")
    except Exception as exc:  # a bug or a library's error we did not foresee: still one line
        import os

        if os.environ.get("MUSICLENS_DEBUG"):
            raise
        return fail(f"{type(exc).__name__}: {exc} (set MUSICLENS_DEBUG=1 to see the traceback)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
