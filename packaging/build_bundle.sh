#!/usr/bin/env bash
# Build the stand-alone one-folder MusicLens app bundle with PyInstaller, then smoke-test it.
#
#   packaging/build_bundle.sh [--no-smoke]
#
# Makes its own build venv (build/bundle/venv: Python 3.11, the pinned CPU torch, MusicLens
# installed from this checkout as a normal package, PyInstaller), so ./.venv is never
# touched. Output: dist/musiclens/ — copy or move that folder anywhere and run
# dist/musiclens/musiclens; no Python installation is needed on the target machine
# (glibc Linux x86-64, as new as or newer than the build machine's).
# Finally runs packaging/smoke_test_bundle.py (starts the bundle with
# `gui --demo --screenshot` and checks the picture). Slow (several minutes) and big (~1 GB);
# the regular test suite never runs it.
#
# Environment: PYTHON (a python3.11), MUSICLENS_TORCH (torch requirement, as in
# scripts/setup-venv), MUSICLENS_BUILD_DIR (default build/bundle), MUSICLENS_DIST_DIR
# (default dist).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${MUSICLENS_BUILD_DIR:-$repo/build/bundle}
dist=${MUSICLENS_DIST_DIR:-$repo/dist}
smoke=1
for arg in "$@"; do
  case $arg in
    --no-smoke) smoke=0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build_bundle: unknown option $arg" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "build_bundle: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

venv=$build/venv
mkdir -p "$build"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "build_bundle: installing torch into the build venv" >&2
  # shellcheck disable=SC2086
  "${pip[@]}" install ${MUSICLENS_TORCH:-torch==2.13.0}
fi
echo "build_bundle: installing MusicLens and PyInstaller into the build venv" >&2
"${pip[@]}" install "pyinstaller==6.22.3" "pyinstaller-hooks-contrib==2026.9"
# A normal (not editable) install of this checkout, rebuilt every time so the bundle has
# the current code; its dependencies are only fetched when missing.
"${pip[@]}" install --upgrade --force-reinstall --no-deps "$repo"
"${pip[@]}" install "$repo"

echo "build_bundle: running PyInstaller (takes a few minutes)" >&2
start=$(date +%s)
(cd "$repo" && nice "$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "$build/work" packaging/musiclens.spec)
bundle=$dist/musiclens
# The desktop integration travels with the bundle: run install-desktop.sh from there.
cp "$repo/packaging/install-desktop.sh" "$repo/packaging/musiclens.desktop" "$bundle/"
chmod +x "$bundle/install-desktop.sh"
echo "build_bundle: built $bundle in $(( $(date +%s) - start )) s, $(du -sh "$bundle" | cut -f1)" >&2

if [ "$smoke" = 1 ]; then
  "$venv/bin/python" "$repo/packaging/smoke_test_bundle.py" "$bundle"
fi
