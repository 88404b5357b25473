"""Set-up on a fresh machine: the system packages ``./run-app`` installs (scripts/system-deps),
the interpreter and torch build it picks (scripts/find-python, scripts/setup-venv), the
Python versions pyproject accepts, and the xcb preflight that replaces Qt's abort with one
clear line (musiclens.app.preflight). Every system tool is faked: nothing here runs apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
BASH = shutil.which("bash") or "/bin/bash"
PYENV = Path("/root/.pyenv/versions")

XCB_PACKAGES = ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxkbcommon-x11-0")


def tool(bindir: Path, name: str, body: str) -> Path:
    """Write an executable bash script ``bindir/name``."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text("#!" + BASH + "\n" + body + "\n")
    path.chmod(0o755)
    return path


def fake_bin(
    tmp_path: Path,
    *,
    installed: set[str] | frozenset[str] = frozenset(),
    uid: int = 0,
    sudo: str | None = None,
    apt_ok: bool = True,
) -> Path:
    """A PATH of fakes: dpkg-query (``installed`` are installed), apt-get (logs its argv),
    id (prints ``uid``) and, when ``sudo`` is given, sudo (``"ok"``: runs its command,
    ``"password"``: ``sudo -n`` fails). Plus bash itself, which the scripts run under."""
    b = tmp_path / "bin"
    log = tmp_path / "calls.log"
    (b).mkdir(parents=True, exist_ok=True)
    os.symlink(BASH, b / "bash")
    listed = " ".join(sorted(installed))
    tool(
        b,
        "dpkg-query",
        f"""
for a in "$@"; do case "$a" in -*|'${{'*) ;; *)
  case " {listed} " in *" $a "*) echo "install ok installed $a";;
    *) echo "dpkg-query: no packages found matching $a" >&2; echo "unknown ok not-installed $a";; esac;;
esac; done
exit 0""",
    )
    tool(b, "apt-get", f'echo "apt-get $*" >> {log}; exit {0 if apt_ok else 100}')
    tool(b, "id", f'[ "$1" = -u ] && echo {uid}')
    if sudo == "ok":
        tool(b, "sudo", f'echo "sudo $*" >> {log}; [ "$1" = -n ] && shift; [ "$1" = true ] && exit 0; "$@"')
    elif sudo == "password":
        tool(b, "sudo", f'echo "sudo $*" >> {log}; [ "$1" = -n ] && exit 1; "$@"')
    return b


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def run_system_deps(
    tmp_path: Path, bindir: Path, *args: str, env: dict | None = None, venv_ok: bool = True
) -> subprocess.CompletedProcess:
    """scripts/system-deps in a copy of scripts/ whose checkout has (or lacks) a working .venv."""
    root = tmp_path / "checkout"
    if not root.exists():
        shutil.copytree(SCRIPTS, root / "scripts")
        if venv_ok:
            tool(root / ".venv" / "bin", "python", "exit 0")
    e = {"PATH": str(bindir), "HOME": str(tmp_path), **(env or {})}
    return subprocess.run(
        [BASH, str(root / "scripts" / "system-deps"), *args],
        env=e,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


ALL_WANTED = {
    "libportaudio2",
    "libsndfile1",
    *XCB_PACKAGES,
    "libxcb-image0",
    "libxcb-render-util0",
    "libxcb-randr0",
    "libxcb-shape0",
    "libxcb-xkb1",
    "libxkbcommon0",
    "libegl1",
    "libgl1",
    "libfontconfig1",
    "libdbus-1-3",
    "libx11-xcb1",
}


# ------------------------------------------------------------------ system packages
def test_system_deps_as_root_installs_the_missing_xcb_packages(tmp_path):
    b = fake_bin(tmp_path, installed=ALL_WANTED - {"libxcb-icccm4", "libxcb-keysyms1"}, uid=0)
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 0, out.stderr
    log = calls(tmp_path)
    assert log[0].startswith("apt-get update")
    assert log[-1].split()[:3] == ["apt-get", "install", "-y"]
    assert set(log[-1].split()[3:]) >= {"libxcb-icccm4", "libxcb-keysyms1"}
    assert not set(log[-1].split()[3:]) & (ALL_WANTED - {"libxcb-icccm4", "libxcb-keysyms1"})
    assert "MusicLens set-up: installing system packages" in out.stderr


def test_system_deps_is_silent_when_nothing_is_missing(tmp_path):
    b = fake_bin(tmp_path, installed=ALL_WANTED, uid=1000)
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 0 and out.stderr == "" and out.stdout == ""
    assert calls(tmp_path) == []


def test_system_deps_uses_sudo_without_a_password_when_not_root(tmp_path):
    b = fake_bin(tmp_path, installed=ALL_WANTED - {"libxcb-cursor0"}, uid=1000, sudo="ok")
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 0, out.stderr
    log = calls(tmp_path)
    assert "sudo -n apt-get install -y libxcb-cursor0" in log
    assert "apt-get install -y libxcb-cursor0" in log


@pytest.mark.parametrize("sudo", [None, "password"])
def test_system_deps_without_root_stops_with_the_exact_command(tmp_path, sudo):
    b = fake_bin(tmp_path, installed=ALL_WANTED - {"libxcb-icccm4", "libxcb-keysyms1"}, uid=1000, sudo=sudo)
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 1
    assert not [c for c in calls(tmp_path) if c.startswith("apt-get")]
    expected = (
        "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1"
        if sudo
        else "su -c 'apt-get update && apt-get install -y libxcb-icccm4 libxcb-keysyms1'"
    )
    assert expected in out.stderr, out.stderr
    assert "MUSICLENS_NO_APT=1" in out.stderr


def test_system_deps_can_be_skipped(tmp_path):
    b = fake_bin(tmp_path, installed=set(), uid=0)
    out = run_system_deps(tmp_path, b, env={"MUSICLENS_NO_APT": "1"})
    assert out.returncode == 0 and calls(tmp_path) == []


def test_system_deps_installs_extra_packages_for_ci(tmp_path):
    b = fake_bin(tmp_path, installed=ALL_WANTED, uid=0)
    out = run_system_deps(tmp_path, b, "xvfb", "desktop-file-utils")
    assert out.returncode == 0, out.stderr
    assert calls(tmp_path)[-1] == "apt-get install -y xvfb desktop-file-utils"


def test_system_deps_reports_a_failed_install(tmp_path):
    b = fake_bin(tmp_path, installed=ALL_WANTED - {"libportaudio2"}, uid=0, apt_ok=False)
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 1 and "apt-get install -y libportaudio2" in out.stderr


def test_system_deps_does_nothing_off_debian(tmp_path):
    b = tmp_path / "bin"
    b.mkdir()
    os.symlink(BASH, b / "bash")
    out = run_system_deps(tmp_path, b)
    assert out.returncode == 0 and out.stderr == ""


@pytest.mark.parametrize(
    "python3, expected",
    [
        ("echo 3.12 1 0", "python3.12-venv"),  # Ubuntu 24.04 without python3-venv
        ("echo 3.13 1 0", "python3.13-venv"),  # Debian 13
        ("echo 3.10 0 1", "python3.11 python3.11-venv"),  # Ubuntu 22.04: python3 is 3.10
        (None, "python3 python3-venv"),  # no Python at all
    ],
)
def test_system_deps_adds_the_venv_package_when_no_python_can_make_the_venv(tmp_path, python3, expected):
    b = fake_bin(tmp_path, installed=ALL_WANTED, uid=0)
    if python3:
        tool(b, "python3", python3)
    out = run_system_deps(tmp_path, b, venv_ok=False)
    assert out.returncode == 0, out.stderr
    assert calls(tmp_path)[-1] == f"apt-get install -y {expected}"


# ------------------------------------------------------------------ the interpreter
def fake_pythons(tmp_path: Path, versions: dict[str, str]) -> Path:
    """``versions``: name -> probe answer "X.Y ok venv" (see scripts/find-python)."""
    b = tmp_path / "bin"
    b.mkdir(parents=True, exist_ok=True)
    if not (b / "bash").exists():
        os.symlink(BASH, b / "bash")
    for name, answer in versions.items():
        tool(b, name, f"echo {answer}")
    return b


@pytest.mark.parametrize(
    "versions, chosen",
    [
        ({"python3.11": "3.11 1 1", "python3.13": "3.13 1 1", "python3": "3.13 1 1"}, "python3.11"),
        ({"python3.12": "3.12 1 1", "python3": "3.12 1 1"}, "python3.12"),  # Ubuntu 24.04
        ({"python3": "3.13 1 1"}, "python3"),  # Debian 13
        ({"python3.11": "3.11 1 0", "python3.13": "3.13 1 1"}, "python3.13"),  # 3.11 has no venv
    ],
)
def test_find_python_picks_a_supported_interpreter(tmp_path, versions, chosen):
    b = fake_pythons(tmp_path, versions)
    out = subprocess.run([BASH, str(SCRIPTS / "find-python")], env={"PATH": str(b)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == chosen


@pytest.mark.parametrize(
    "versions, says",
    [
        ({"python3": "3.10 0 1"}, "3.11, 3.12 or 3.13"),
        ({"python3": "3.12 1 0"}, "python3.12-venv"),
        ({}, "3.11, 3.12 or 3.13"),
    ],
)
def test_find_python_explains_what_is_missing(tmp_path, versions, says):
    b = fake_pythons(tmp_path, versions)
    out = subprocess.run([BASH, str(SCRIPTS / "find-python")], env={"PATH": str(b)}, capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert says in out.stderr and "PYTHON=" in out.stderr


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_find_python_accepts_real_newer_interpreters(version):
    exe = next(iter(sorted(PYENV.glob(f"{version}.*/bin/python{version}"))), None) if PYENV.exists() else None
    exe = exe or shutil.which(f"python{version}")
    if not exe or subprocess.run([exe, "-c", ""], capture_output=True).returncode:
        pytest.skip(f"no Python {version} on this machine")
    out = subprocess.run(
        [BASH, str(SCRIPTS / "find-python")], env={**os.environ, "PYTHON": str(exe)}, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == str(exe), out.stderr


# ------------------------------------------------------------------ setup-venv
FAKE_PYTHON = r"""
# A stand-in for CPython {version}: `-m venv DIR` copies itself, `-m pip` logs and marks
# torch as installed, `-c CODE` answers the probes scripts/find-python and setup-venv use.
here=$(cd "${{0%/*}}" && pwd)
if [ "$1" = -m ] && [ "$2" = venv ]; then
  d=${{@: -1}}; mkdir -p "$d/bin"; cp "$0" "$d/bin/python"; exit 0
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "pip ${{*:3}}" >> "{log}"
  case " $* " in *" --dry-run "*) exit {local_torch};; esac
  case " $* " in *" torch"*) touch "$here/.torch";; esac
  exit 0
fi
if [ "$1" = -c ]; then
  case "$2" in
    *"import torch"*) [ -f "$here/.torch" ] && exit 0 || exit 1;;
    *ensurepip*) echo "{version} 1 1"; exit 0;;
    *version_info*) echo "{version}"; exit 0;;
    *) exit 0;;
  esac
fi
exit 0
"""


def fake_checkout(tmp_path: Path, version: str, *, local_torch: bool) -> tuple[Path, Path, Path]:
    root = tmp_path / "checkout"
    shutil.copytree(SCRIPTS, root / "scripts")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    b = tmp_path / "bin"
    log = tmp_path / "pip.log"
    tool(b, f"python{version}", FAKE_PYTHON.format(version=version, log=log, local_torch=0 if local_torch else 1))
    for t in ("bash", "sha256sum", "mkdir", "cp", "touch"):
        if shutil.which(t) and not (b / t).exists():
            os.symlink(shutil.which(t), b / t)
    return root, b, log


@pytest.mark.parametrize(
    "version, local_torch, torch_args",
    [
        ("3.11", True, "torch==2.13.0"),  # the local CPU wheel on these machines
        ("3.12", False, "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"),
        ("3.13", False, "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"),
        ("3.11", False, "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"),
    ],
)
def test_setup_venv_installs_the_cpu_torch_for_the_interpreter_and_shows_progress(
    tmp_path, version, local_torch, torch_args
):
    root, b, log = fake_checkout(tmp_path, version, local_torch=local_torch)
    env = {"PATH": str(b), "HOME": str(tmp_path)}
    out = subprocess.run(
        [BASH, str(root / "scripts" / "setup-venv")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    pip = log.read_text().splitlines()
    installs = [p for p in pip if " install " in p and "--dry-run" not in p]
    assert installs[0].endswith(torch_args), installs
    assert "-e .[test]" in installs[1]
    progress = out.stderr
    assert f"MusicLens set-up: creating .venv with python{version} (Python {version})" in progress
    assert "MusicLens set-up: installing torch" in progress
    assert "MusicLens set-up: installing MusicLens" in progress
    assert "MusicLens set-up: ready" in progress
    # the second start has nothing to do, and says nothing
    again = subprocess.run(
        [BASH, str(root / "scripts" / "setup-venv")], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and again.stderr == ""
    assert len(log.read_text().splitlines()) == len(pip)


def test_setup_venv_keeps_the_users_torch_requirement(tmp_path):
    root, b, log = fake_checkout(tmp_path, "3.12", local_torch=False)
    env = {
        "PATH": str(b),
        "HOME": str(tmp_path),
        "MUSICLENS_TORCH": "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124",
    }
    out = subprocess.run(
        [BASH, str(root / "scripts" / "setup-venv")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    installs = [p for p in log.read_text().splitlines() if " install " in p and "--dry-run" not in p]
    assert installs[0].endswith("torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124")


# ------------------------------------------------------------------ run-app
def test_run_app_installs_system_packages_then_sets_up_then_starts(tmp_path):
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "run-app", root / "run-app")
    log = tmp_path / "order.log"
    tool(root / "scripts", "system-deps", f'echo "system-deps $*" >> {log}')
    tool(root / "scripts", "setup-venv", f'echo "setup-venv" >> {log}; echo noise')
    tool(root / ".venv" / "bin", "musiclens", f'echo "musiclens $*" >> {log}')
    out = subprocess.run(
        [BASH, str(root / "run-app"), "gui", "--demo"], capture_output=True, text=True, env={**os.environ}
    )
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == ["system-deps ", "setup-venv", "musiclens gui --demo"]
    assert out.stdout == ""


# ------------------------------------------------------------------ Python versions
def test_pyproject_accepts_the_pythons_current_debian_and_ubuntu_ship():
    import tomllib

    from packaging.specifiers import SpecifierSet

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = SpecifierSet(meta["requires-python"])
    assert [v for v in ("3.10", "3.11", "3.12", "3.13", "3.14") if v + ".0" in spec] == ["3.11", "3.12", "3.13"]
    assert "PySide6-Essentials==6.11.3" in meta["dependencies"]


def test_readme_quick_start_covers_the_supported_pythons_and_needs_no_sudo():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "3.11" in quick and "3.12" in quick and "3.13" in quick
    assert "python3.11-venv" not in quick
    assert "sudo apt-get" not in quick.split("./run-app")[0]  # run-app installs what it needs itself


# ------------------------------------------------------------------ xcb preflight
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibfoo-bar.so.3 => not found
"""


def test_preflight_names_the_debian_packages_and_the_exact_command():
    from musiclens.app import preflight

    missing = preflight.parse_ldd(LDD_MISSING)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo-bar.so.3"]
    assert preflight.debian_packages(missing) == ["libxcb-icccm4", "libxcb-keysyms1", "libfoo-bar3"]
    msg = preflight.message(missing, root=False, apt=True)
    assert "\n" not in msg
    assert "libxcb-icccm.so.4" in msg and "libxcb-keysyms.so.1" in msg
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1 libfoo-bar3" in msg
    assert "apt-get install -y libxcb-icccm4" in preflight.message(missing, root=True, apt=True)
    assert "sudo" not in preflight.message(missing, root=True, apt=True)
    other = preflight.message(missing, root=False, apt=False)  # not Debian: name the libraries
    assert "apt-get" not in other and "libxcb-icccm.so.4" in other
    assert preflight.parse_ldd(LDD_MISSING.replace("not found", "/lib/x.so (0x1)")) == []


@pytest.mark.parametrize(
    "env, xcb",
    [
        ({"DISPLAY": ":0"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb:nomitshm"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland"}, False),
        ({"QT_QPA_PLATFORM": "xcb"}, False),  # no display: Qt says so itself
        ({}, False),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, False),
    ],
)
def test_preflight_runs_only_when_qt_will_use_xcb(env, xcb):
    from musiclens.app import preflight

    assert preflight.will_use_xcb(env) is xcb


def test_preflight_finds_the_real_plugin_without_importing_qt():
    code = (
        "import sys; from musiclens.app import preflight; p = preflight.find_qxcb(); "
        "print(p.is_file(), p.name, [m for m in sys.modules if m.startswith('PySide6')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "libqxcb.so", "[]"]


@pytest.mark.parametrize("argv", [["gui", "--demo"], []])
def test_app_stops_with_one_line_instead_of_qts_abort(tmp_path, argv):
    """A fake ldd says two xcb libraries are missing: one clear line and status 2, before Qt."""
    b = tmp_path / "bin"
    tool(b, "ldd", f"cat <<'EOF'\n{LDD_MISSING}EOF")
    exe = Path(sys.executable).parent / "musiclens"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(PATH=f"{b}:{env['PATH']}", DISPLAY=":97531", MUSICLENS_SETTINGS=str(tmp_path / "s.ini"))
    out = subprocess.run([str(exe), *argv], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musiclens: error:"), out.stderr
    assert "libxcb-icccm4 libxcb-keysyms1" in lines[0] and "apt-get install -y" in lines[0]
