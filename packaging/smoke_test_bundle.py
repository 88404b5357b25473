"""Smoke test of a built MusicLens app bundle (run by build_bundle.sh at its end).

    python packaging/smoke_test_bundle.py [BUNDLE_DIR]        # default: dist/musiclens

Starts ``BUNDLE_DIR/musiclens gui --demo --screenshot OUT.png`` offscreen with no Python
on PATH, no PYTHONPATH/PYTHONHOME, an empty settings file and a working folder outside
the checkout, so the bundle has to find its own Python, libraries, models and demo.
Then checks the screenshot: window-sized, and not blank (many colours, real contrast, and
the warm colours of the spectrogram and predictions). Exit status 0 when all is well.
Needs numpy and Pillow in the Python that runs it (the build venv has both).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "dist" / "musiclens"
MIN_SIZE = (1000, 600)  # the main window opens at 1500 x 900


def program(bundle: Path) -> Path:
    return Path(bundle) / "musiclens"


def clean_env(tmp: Path, extra: dict | None = None) -> dict:
    """An environment without any Python of ours: the bundle must bring its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA", "MUSICLENS_"))}
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin" if Path("/usr/local/bin").is_dir() else "/usr/bin:/bin",
        QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        MUSICLENS_SETTINGS=str(tmp / "settings.ini"),
        XDG_CACHE_HOME=str(tmp / "cache"),
    )
    env.update(extra or {})
    return env


def screenshot(command: list[str], out: Path, *, env: dict, cwd: Path, timeout_s: float = 600.0) -> dict:
    """Run ``command + ['gui', '--demo', '--screenshot', out]``; wall time and the app's own
    "window shown after X s, analysed after Y s" line."""
    start = time.perf_counter()
    proc = subprocess.run(
        [*command, "gui", "--demo", "--screenshot", str(out)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    wall = time.perf_counter() - start
    m = re.search(r"window shown after ([\d.]+) s, analysed after ([\d.]+) s", proc.stderr)
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "stderr": proc.stderr,
        "shown_s": float(m.group(1)) if m else None,
        "analysed_s": float(m.group(2)) if m else None,
    }


def check_screenshot(path: Path, *, min_size=MIN_SIZE) -> list[str]:
    """What is wrong with the screenshot at ``path`` (an empty list when it looks right)."""
    import numpy as np
    from PIL import Image

    if not Path(path).is_file():
        return [f"no screenshot at {path}"]
    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    h, w, _ = image.shape
    problems = []
    if w < min_size[0] or h < min_size[1]:
        problems.append(f"screenshot is {w} x {h}, expected at least {min_size[0]} x {min_size[1]}")
    colours = len(np.unique(image.reshape(-1, 3) // 8, axis=0))  # 32 levels per channel
    if colours < 200:
        problems.append(f"only {colours} distinct colours: the window looks blank")
    grey = image.mean(axis=2)
    if grey.std() < 10:
        problems.append(f"grey-level spread {grey.std():.1f} < 10: the window looks blank")
    r, b = image[..., 0], image[..., 2]
    warm = float(((r - b > 60) & (r > 120)).mean())  # spectrogram / bars colour map
    if warm < 0.01:
        problems.append(f"only {100 * warm:.2f} % warm pixels: no spectrogram or predictions drawn")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--out", type=Path, help="keep the screenshot here")
    args = parser.parse_args(argv)
    exe = program(args.bundle)
    if not exe.is_file():
        print(f"smoke test: no bundle at {args.bundle} (run packaging/build_bundle.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="musiclens-smoke-") as tmp:
        tmp = Path(tmp)
        out = args.out.resolve() if args.out else tmp / "bundle.png"
        result = screenshot([str(exe)], out, env=clean_env(tmp), cwd=tmp)
        if result["returncode"] != 0:
            print(result["stderr"][-4000:], file=sys.stderr)
            print(f"smoke test: FAILED, the bundle exited with status {result['returncode']}", file=sys.stderr)
            return 1
        problems = check_screenshot(out)
    for p in problems:
        print(f"smoke test: {p}", file=sys.stderr)
    print(
        f"smoke test: {'FAILED' if problems else 'OK'}: window shown after {result['shown_s']} s, "
        f"analysed after {result['analysed_s']} s, process {result['wall_s']:.1f} s",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
