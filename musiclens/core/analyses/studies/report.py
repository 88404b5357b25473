"""What every study shares: the report it writes and the small helpers that write it.

A study writes ``REPORT_DIR/report.md`` (the study's claims on the left, ours on the right),
the figures as ``REPORT_DIR/*.png`` and the numbers as ``REPORT_DIR/numbers.json``, and
returns a :class:`StudyReport`. matplotlib is imported lazily (Agg backend), only when a
figure is drawn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musiclens.core.errors import ParameterError

ISSUE = "issue 21"


@dataclass
class StudyReport:
    """What a study wrote: the folder, the files (report.md, figures, numbers.json) and the numbers."""

    name: str
    folder: Path
    files: list[Path]
    numbers: dict[str, Any]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def make_folder(out: str | os.PathLike[str]) -> Path:
    """The report folder, made (with its parents) when missing; a clear error when it cannot be."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"cannot make the report folder {folder}: {exc.strerror or exc}") from None
    return folder


def claims_table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """Markdown lines of the claims-beside-ours table: rows of (quantity, the study's claim,
    source of the claim, ours)."""
    lines = ["| quantity | the study's claim | source of the claim | ours |", "| --- | --- | --- | --- |"]
    lines += [f"| {q} | {claim} | {source} | {ours} |" for q, claim, source, ours in rows]
    return lines


def write_report(
    name: str, folder: Path, text: str, numbers: dict[str, Any], figures: list[Path], extra: list[Path] | None = None
) -> StudyReport:
    """Write ``report.md`` and ``numbers.json`` into ``folder`` (figures already written) and
    return the report; ``extra`` lists other files the study wrote (e.g. WAV, .mid)."""
    (folder / "report.md").write_text(text)
    (folder / "numbers.json").write_text(json.dumps(numbers, indent=1))
    files = [folder / "report.md", *figures, *(extra or []), folder / "numbers.json"]
    return StudyReport(name, folder, files, numbers)
