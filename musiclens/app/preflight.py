"""Check, before Qt loads it, that Qt's xcb platform plugin (a window on an X display) has
its system libraries. Without them Qt aborts the whole process (status 134) and names the
wrong library ("xcb-cursor0 … is needed" when libxcb-icccm4 is the one missing). This
module imports no Qt: it finds PySide6's ``plugins/platforms/libqxcb.so`` on disk, asks
``ldd`` what is missing, and maps the sonames to Debian/Ubuntu package names.

``python -m musiclens.app.preflight`` prints the problem (or "ok") for any platform.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# soname -> Debian/Ubuntu package (the names are the same on Debian 12/13, Ubuntu 22.04/24.04;
# the few t64-renamed ones are still installable under the old name on 64-bit systems)
PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libpng16.so.16": "libpng16-16",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libexpat.so.1": "libexpat1",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
    "libsystemd.so.0": "libsystemd0",
    "libcap.so.2": "libcap2",
    "libgcrypt.so.20": "libgcrypt20",
    "libgpg-error.so.0": "libgpg-error0",
    "liblzma.so.5": "liblzma5",
    "liblz4.so.1": "liblz4-1",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


def will_use_xcb(environ: Mapping[str, str] | None = None) -> bool:
    """True when Qt is about to load the xcb plugin: ``$QT_QPA_PLATFORM`` unset (Qt's default
    on Linux, except in a Wayland session) or naming xcb first, and ``$DISPLAY`` set."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") and environ is None:
        return False
    if not env.get("DISPLAY"):
        return False  # no X display: Qt says so itself ("could not connect to display")
    platform = env.get("QT_QPA_PLATFORM", "").strip()
    if platform:
        first = platform.split(";")[0]
        return first.split(":")[0].strip() == "xcb"
    # Qt 6 prefers Wayland in a Wayland session; the xcb libraries are then not needed
    return not (env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"))


def find_qxcb() -> Path | None:
    """PySide6's ``Qt/plugins/platforms/libqxcb.so``, found without importing PySide6."""
    roots: list[Path] = []
    try:
        spec = importlib.util.find_spec("PySide6")  # a top-level package: found, not imported
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    bundle = getattr(sys, "_MEIPASS", None)  # a PyInstaller bundle
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    for root in roots:
        for candidate in (
            root / "Qt" / "plugins" / "platforms" / "libqxcb.so",
            root / "plugins" / "platforms" / "libqxcb.so",
        ):
            if candidate.is_file():
                return candidate
    return None


def parse_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", in order, each once."""
    missing: list[str] = []
    for line in output.splitlines():
        m = _NOT_FOUND.match(line)
        if m and m.group(1) not in missing:
            missing.append(m.group(1))
    return missing


def missing_libraries(plugin: Path, ldd: str | None = None) -> list[str] | None:
    """Sonames ``plugin`` (and what it loads) needs but the system lacks; None if ``ldd``
    is unavailable or fails (then we cannot tell, and let Qt try)."""
    exe = ldd or shutil.which("ldd")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_ldd(out.stdout + "\n" + out.stderr)


def debian_package(soname: str) -> str | None:
    """The Debian package that ships ``soname`` (None for Qt's own libraries, which come
    with PySide6). Unknown names follow Debian's policy: libfoo.so.3 -> libfoo3."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    if soname.startswith(("libQt6", "libicu")):
        return None
    m = re.match(r"^(lib[\w.+-]+?)\.so\.(\d+)", soname)
    if not m:
        return None
    name, major = m.group(1).lower(), m.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def debian_packages(sonames: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in sonames:
        p = debian_package(s)
        if p and p not in out:
            out.append(p)
    return out


def message(missing: Sequence[str], *, root: bool | None = None, apt: bool | None = None) -> str:
    """One line: what is missing and the exact command that installs it."""
    if root is None:
        root = hasattr(os, "geteuid") and os.geteuid() == 0
    if apt is None:
        apt = shutil.which("apt-get") is not None
    libs = ", ".join(missing)
    head = (
        f"cannot open a window on this X display: Qt's xcb platform plugin needs "
        f"system libraries that are missing ({libs})."
    )
    packages = debian_packages(missing)
    tail = " Or run without a window: QT_QPA_PLATFORM=offscreen."
    if any(debian_package(s) is None for s in missing):
        head += " PySide6 itself looks incomplete: reinstall it (scripts/setup-venv)."
    if not packages:
        return head + tail
    if apt:
        command = ("" if root else "sudo ") + "apt-get install -y " + " ".join(packages)
        return f"{head} Install them with: {command} (./run-app does this itself).{tail}"
    return f"{head} Install your distribution's packages that provide them.{tail}"


def xcb_problem(environ: Mapping[str, str] | None = None, *, ldd: str | None = None) -> str | None:
    """The one-line problem that would make Qt abort on the xcb platform, or None (also
    when the platform is not xcb, or when it cannot be checked)."""
    if not will_use_xcb(environ):
        return None
    plugin = find_qxcb()
    if plugin is None:
        return None
    missing = missing_libraries(plugin, ldd)
    return message(missing) if missing else None


def main() -> int:  # pragma: no cover - a diagnostic for users
    plugin = find_qxcb()
    if plugin is None:
        print("PySide6's xcb plugin (libqxcb.so) was not found")
        return 1
    missing = missing_libraries(plugin)
    if missing is None:
        print(f"{plugin}: cannot run ldd")
        return 1
    print(message(missing) if missing else f"ok: {plugin} has all its libraries")
    return 1 if missing else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
