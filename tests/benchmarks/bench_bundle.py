"""Benchmark the stand-alone app bundle against `musiclens` from the venv, in one run.

    .venv/bin/python tests/benchmarks/bench_bundle.py [BUNDLE_DIR] [--repeat N]

BUNDLE_DIR defaults to dist/musiclens (build it with packaging/build_bundle.sh). Both are
started the same way, alternately, N times each (default 3), as fresh processes:
``<program> gui --demo --screenshot OUT.png``, offscreen, with an empty settings file and a
clean environment (packaging/smoke_test_bundle.py), each program keeping its own cache
folder across its runs like a user's ~/.cache. The bundle's very first start (empty cache:
librosa's numba code compiles once) is run first and reported apart. Prints the bundle's size (and its
largest parts), then per program the medians of: the whole command (spawn to exit, which
includes the app's fixed 0.5 s wait before the screenshot and shutting down) and the app's
own "window shown after / analysed after" times (counted from musiclens.app.main's
import), with bundle/venv ratios. Every screenshot is checked like the smoke test does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))

import smoke_test_bundle as smoke  # noqa: E402


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=smoke.DEFAULT_BUNDLE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--venv-program", type=Path, default=REPO / ".venv" / "bin" / "musiclens")
    args = parser.parse_args(argv)
    bundle_exe = smoke.program(args.bundle)
    if not bundle_exe.is_file():
        raise SystemExit(f"no bundle at {args.bundle}: build it with packaging/build_bundle.sh")
    if not args.venv_program.is_file():
        raise SystemExit(f"no {args.venv_program}: run ./run-app or scripts/setup-venv first")

    total = du(args.bundle)
    internal = args.bundle / "_internal"
    parts = sorted(((du(p) if p.is_dir() else p.stat().st_size, p.name) for p in internal.iterdir()), reverse=True)
    print(f"bundle {args.bundle}: {mib(total)} on disk in {sum(1 for _ in args.bundle.rglob('*')):,} files")
    print("  largest parts: " + ", ".join(f"{name} {mib(n)}" for n, name in parts[:6]))

    programs = {"venv": [str(args.venv_program)], "bundle": [str(bundle_exe)]}
    runs: dict[str, list[dict]] = {k: [] for k in programs}
    with tempfile.TemporaryDirectory(prefix="musiclens-bench-") as tmp:
        tmp = Path(tmp)

        def run(name: str, label: str) -> dict:
            work = tmp / f"{name}-{label}"
            work.mkdir()
            out = work / "shot.png"
            # one cache folder and one working folder per program across its runs, as a user's
            # ~/.cache and a launcher that starts programs in ~ (the bundle's numba cache is
            # keyed by the working folder: a new one compiles again)
            home = tmp / f"{name}-home"
            home.mkdir(exist_ok=True)
            env = smoke.clean_env(work, {"XDG_CACHE_HOME": str(tmp / f"{name}-cache")})
            r = smoke.screenshot(programs[name], out, env=env, cwd=home)
            problems = smoke.check_screenshot(out) if r["returncode"] == 0 else [r["stderr"][-800:]]
            if problems:
                raise SystemExit(f"{name} {label} failed: {problems}")
            print(
                f"  {name:6s} {label:13s} command {r['wall_s']:.2f} s, window shown {r['shown_s']:.2f} s, "
                f"analysed {r['analysed_s']:.2f} s",
                flush=True,
            )
            return r

        # The bundle's first start compiles librosa's numba code into the user's cache
        # (the venv keeps that cache in its site-packages from its first use): shown apart.
        first = run("bundle", "first start")
        for i in range(args.repeat):
            for name in programs:  # alternate, so drift hits both alike
                runs[name].append(run(name, f"run {i + 1}"))

    print(f"\nmedians of {args.repeat} run(s), `<program> gui --demo --screenshot OUT.png`:")
    print(f"{'':8s}{'command (s)':>14s}{'window shown (s)':>20s}{'analysed (s)':>16s}")
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "shown_s", "analysed_s")}
        for name, rs in runs.items()
    }
    for name, m in med.items():
        print(f"{name:8s}{m['wall_s']:>14.2f}{m['shown_s']:>20.2f}{m['analysed_s']:>16.2f}")
    ratio = {k: med["bundle"][k] / med["venv"][k] for k in ("wall_s", "shown_s", "analysed_s")}
    print(
        f"{'ratio':8s}{ratio['wall_s']:>14.2f}{ratio['shown_s']:>20.2f}{ratio['analysed_s']:>16.2f}"
        "   (bundle / venv; < 1 means the bundle is faster)"
    )
    print(
        f"bundle's first start with an empty cache (numba compiles once): command {first['wall_s']:.2f} s, "
        f"window shown {first['shown_s']:.2f} s, analysed {first['analysed_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
