"""Packaging: the desktop entry, the icon, the per-user install script (in a temp
XDG_DATA_HOME), resources in a frozen bundle, and the bundle smoke test.

The bundle itself is never built here (packaging/build_bundle.sh takes minutes and ~1 GB):
``test_built_bundle_starts_and_shows_the_demo`` runs against dist/musiclens (or
$MUSICLENS_BUNDLE) when one has been built and is skipped with that reason otherwise.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
DESKTOP = PACKAGING / "musiclens.desktop"
INSTALL = PACKAGING / "install-desktop.sh"
ICONS = REPO / "resources" / "icons"
BASH = shutil.which("bash")
sys.path.insert(0, str(PACKAGING))

import smoke_test_bundle  # noqa: E402

AUDIO_TYPES = {"audio/x-wav", "audio/flac", "audio/ogg", "audio/mpeg", "audio/x-aiff"}
MIDI_TYPES = {"audio/midi", "audio/x-midi"}


def read_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def exec_argv(exec_value: str, file: str) -> list[str]:
    """The argv a desktop runs for ``Exec`` and one file (Desktop Entry spec, "Exec key")."""
    # 1. the value is a string: \\ \s \n \t \r are escapes
    value, i = "", 0
    while i < len(exec_value):
        c = exec_value[i]
        if c == "\\" and i + 1 < len(exec_value):
            value += {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(exec_value[i + 1], exec_value[i + 1])
            i += 2
        else:
            value += c
            i += 1
    # 2. split into arguments; double quotes, inside them \" \` \$ \\ are escapes
    args, cur, quoted, started, i = [], "", False, False, 0
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\" and value[i + 1] in '"`$\\':
                cur += value[i + 1]
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur += c
        elif c == '"':
            quoted = started = True
        elif c == " ":
            if started:
                args.append(cur)
            cur, started = "", False
        else:
            cur += c
            started = True
        i += 1
    if started:
        args.append(cur)
    return [file if a == "%f" else a for a in args]


# ---------------------------------------------------------------------- desktop entry
def test_desktop_entry_has_the_required_keys_and_file_associations():
    entry = read_entry(DESKTOP)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "MusicLens" and entry["Comment"]
    assert entry["Icon"] == "musiclens"  # a themed icon name, not a path
    assert entry["Terminal"] == "false"
    assert exec_argv(entry["Exec"], "/music/a b.wav") == ["musiclens", "gui", "/music/a b.wav"]
    mime = entry["MimeType"].split(";")
    assert mime[-1] == "" and len(set(mime)) == len(mime)  # ';'-terminated, no repeats
    assert AUDIO_TYPES | MIDI_TYPES <= set(mime)
    assert all(t.startswith("audio/") for t in mime[:-1])
    assert entry["Categories"].endswith(";") and "AudioVideo" in entry["Categories"]


def test_desktop_entry_mime_types_are_known_to_shared_mime_info():
    known = Path("/usr/share/mime/types")
    if not known.exists():
        pytest.skip("shared-mime-info is not installed (/usr/share/mime/types)")
    names = set(known.read_text().split())
    aliases = Path("/usr/share/mime/aliases")
    if aliases.exists():
        names |= {line.split()[0] for line in aliases.read_text().splitlines() if line.strip()}
    mime = [t for t in read_entry(DESKTOP)["MimeType"].split(";") if t]
    assert [t for t in mime if t not in names] == []


def test_desktop_entry_passes_desktop_file_validate(tmp_path):
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip(
            "desktop-file-validate is not installed (Debian: desktop-file-utils); the key check above still ran"
        )
    out = subprocess.run([tool, str(DESKTOP)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stdout.lower()
    broken = tmp_path / "broken.desktop"
    broken.write_text(DESKTOP.read_text().replace("Type=Application\n", ""))
    assert subprocess.run([tool, str(broken)], capture_output=True).returncode != 0


# ---------------------------------------------------------------------- icon
def test_icon_svg_is_reproducible_and_its_pngs_are_drawn_at_their_sizes():
    import make_icons
    from PIL import Image

    assert (ICONS / "musiclens.svg").read_text(encoding="utf-8") == make_icons.svg()
    for n in make_icons.SIZES:
        png = ICONS / "hicolor" / f"{n}x{n}" / "apps" / "musiclens.png"
        image = np.asarray(Image.open(png).convert("RGBA"))
        assert image.shape == (n, n, 4), png
        alpha = image[..., 3]
        assert alpha[n // 2, n // 2] == 255 and alpha[0, 0] == 0  # opaque tile, round corners
        assert len(np.unique(image.reshape(-1, 4), axis=0)) > (20 if n >= 32 else 8)
    assert "CC0" in (ICONS / "README.md").read_text()


# ---------------------------------------------------------------------- install script
def fake_program(folder: Path) -> Path:
    """A stand-in for `musiclens` that records its arguments."""
    folder.mkdir(parents=True)
    prog = folder / "musiclens"
    prog.write_text(f'#!{BASH}\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv.txt"\n')
    prog.chmod(0o755)
    return prog


def run_install(args: list[str], *, data: Path, home: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "XDG_DATA_HOME": str(data), "PATH": path or os.environ["PATH"], "LANG": "C.UTF-8"}
    out = subprocess.run([BASH, str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def minimal_path(tmp_path: Path) -> str:
    """A PATH with only the coreutils the script needs: no desktop tools at all."""
    bin_dir = tmp_path / "minimal-bin"
    if bin_dir.is_dir():
        return str(bin_dir)
    bin_dir.mkdir()
    for tool in ("dirname", "basename", "mkdir", "cp", "rm", "rmdir", "touch", "sed"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def check_installed(data: Path, prog: Path) -> dict[str, str]:
    entry = read_entry(data / "applications" / "musiclens.desktop")
    assert entry["TryExec"] == str(prog)
    assert exec_argv(entry["Exec"], "/x/y z.mid") == [str(prog), "gui", "/x/y z.mid"]
    assert entry["MimeType"] == read_entry(DESKTOP)["MimeType"]
    for n in (16, 32, 48, 256):
        png = data / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "musiclens.png"
        assert png.read_bytes() == (ICONS / "hicolor" / f"{n}x{n}" / "apps" / "musiclens.png").read_bytes()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "musiclens.svg").is_file()
    return entry


def test_install_then_uninstall_without_desktop_tools_leaves_nothing(tmp_path):
    home, data = tmp_path / "home", tmp_path / "home" / "xdg-data"
    home.mkdir()
    prog = fake_program(tmp_path / "app")
    out = run_install(["--exec", str(prog)], data=data, home=home, path=minimal_path(tmp_path))
    assert "installed 10 file(s)" in out.stderr
    check_installed(data, prog)
    assert not (data / "applications" / "mimeinfo.cache").exists()  # no tool, just the files
    assert (data / "musiclens" / "installed-files").is_file()
    run_install(["--uninstall"], data=data, home=home, path=minimal_path(tmp_path))
    assert tree(home) == []  # even the folders it had to create are gone


def test_install_runs_update_desktop_database_when_present_and_uninstall_cleans_its_cache(tmp_path):
    """A stand-in update-desktop-database that writes the cache as the real one does."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    prog = fake_program(tmp_path / "app")
    bin_dir = Path(minimal_path(tmp_path))
    log = tmp_path / "udd.log"
    (bin_dir / "update-desktop-database").write_text(
        f"#!{BASH}\n"
        f'echo "$@" >> {log}\n'
        'dir=${@: -1}; out="[MIME Cache]"\n'
        'for f in "$dir"/*.desktop; do [ -e "$f" ] && out="$out\naudio/midi=$(basename "$f");"; done\n'
        'printf "%b\\n" "$out" > "$dir/mimeinfo.cache"\n'
    )
    (bin_dir / "update-desktop-database").chmod(0o755)
    run_install(["--exec", str(prog)], data=data, home=home, path=str(bin_dir))
    assert log.read_text().split() == ["-q", str(data / "applications")]
    assert "audio/midi=musiclens.desktop;" in (data / "applications" / "mimeinfo.cache").read_text()
    run_install(["--uninstall"], data=data, home=home, path=str(bin_dir))
    assert len(log.read_text().splitlines()) == 2  # refreshed after the removal too
    assert not data.exists() and tree(home) == []


def test_real_desktop_tools_register_the_file_types(tmp_path):
    udd = shutil.which("update-desktop-database")
    if udd is None:
        pytest.skip("update-desktop-database is not installed (Debian: desktop-file-utils)")
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    prog = fake_program(tmp_path / "app")
    run_install(["--exec", str(prog)], data=data, home=home)
    cache = (data / "applications" / "mimeinfo.cache").read_text()
    for t in AUDIO_TYPES | MIDI_TYPES:
        assert f"{t}=musiclens.desktop;" in cache
    xdg_mime = shutil.which("xdg-mime")
    if xdg_mime:  # the type a desktop gives a .mid file is one we registered
        song = tmp_path / "song.mid"
        song.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
        kind = subprocess.run(
            [xdg_mime, "query", "filetype", str(song)],
            capture_output=True,
            text=True,
            env=dict(os.environ, XDG_DATA_HOME=str(data), HOME=str(home)),
        ).stdout.strip()
        assert kind.split(";")[0] in MIDI_TYPES
    run_install(["--uninstall"], data=data, home=home)
    assert not data.exists()


def test_uninstall_keeps_what_other_apps_put_there(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    (data / "applications").mkdir(parents=True)
    (data / "icons" / "hicolor" / "48x48" / "apps").mkdir(parents=True)
    other = data / "applications" / "other.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    other_icon = data / "icons" / "hicolor" / "48x48" / "apps" / "other.png"
    other_icon.write_bytes(b"png")
    home.mkdir()
    before = tree(data)
    prog = fake_program(tmp_path / "app")
    run_install(["--exec", str(prog)], data=data, home=home)
    run_install(["--exec", str(prog)], data=data, home=home)  # again: replaces, no duplicates
    manifest = (data / "musiclens" / "installed-files").read_text().splitlines()
    assert len(manifest) == len(set(manifest))
    run_install(["--uninstall"], data=data, home=home)
    after = [p for p in tree(data) if p != "applications/mimeinfo.cache"]  # the other app's cache
    assert after == before and other.read_text().startswith("[Desktop Entry]")


def test_open_with_passes_the_file_to_a_program_in_an_awkward_folder(tmp_path):
    """Spaces, quotes and $ in the program's path survive the Exec quoting."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    prog = fake_program(tmp_path / "My Apps" / 'it\'s "$HOME"')
    run_install(["--exec", str(prog)], data=data, home=home, path=minimal_path(tmp_path))
    entry = check_installed(data, prog)
    song = tmp_path / "my song (live).wav"
    argv = exec_argv(entry["Exec"], str(song))
    subprocess.run(argv, check=True, timeout=30)
    assert (prog.parent / "argv.txt").read_text().splitlines() == ["gui", str(song)]
    desktop_file_validate = shutil.which("desktop-file-validate")
    if desktop_file_validate:
        out = subprocess.run(
            [desktop_file_validate, str(data / "applications" / "musiclens.desktop")], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout


def test_install_honours_xdg_data_home_and_falls_back_to_local_share(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    prog = fake_program(tmp_path / "app")
    for value in ("", "relative/path"):  # empty or relative means ~/.local/share (XDG spec)
        env = {"HOME": str(home), "XDG_DATA_HOME": value, "PATH": minimal_path(tmp_path)}
        out = subprocess.run(
            [BASH, str(INSTALL), "--exec", str(prog)], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        assert (home / ".local" / "share" / "applications" / "musiclens.desktop").is_file()
        assert not (tmp_path / "relative").exists()
        subprocess.run([BASH, str(INSTALL), "--uninstall"], env=env, check=True, capture_output=True)
        assert tree(home) == []


def test_install_refuses_a_missing_program(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "PATH": os.environ["PATH"]}
    out = subprocess.run(
        [BASH, str(INSTALL), "--exec", str(tmp_path / "nope")], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1 and "is not an executable program" in out.stderr
    assert not (tmp_path / "data").exists()


def test_install_finds_the_checkout_venv_program_by_default(tmp_path):
    venv_prog = REPO / ".venv" / "bin" / "musiclens"
    if not venv_prog.exists():
        pytest.skip("no .venv/bin/musiclens in this checkout")
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    run_install([], data=data, home=home, path=minimal_path(tmp_path))
    entry = read_entry(data / "applications" / "musiclens.desktop")
    assert exec_argv(entry["Exec"], "f.wav") == [str(venv_prog.resolve().parent / "musiclens"), "gui", "f.wav"]
    run_install(["--uninstall"], data=data, home=home, path=minimal_path(tmp_path))
    assert tree(home) == [] and not data.exists()


# ---------------------------------------------------------------------- frozen resources
def test_resources_dir_in_a_frozen_bundle(tmp_path, monkeypatch):
    from musiclens.core import resources

    monkeypatch.delenv("MUSICLENS_RESOURCES", raising=False)
    internal = tmp_path / "bundle" / "_internal"
    (internal / "resources" / "models" / "m").mkdir(parents=True)
    (internal / "resources" / "models" / "m" / "model.json").write_text("{}")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(internal), raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bundle" / "musiclens"))
    assert resources.resources_dir() == internal / "resources"
    assert resources.available() == ["m"]
    assert resources.demo_recording() == internal / "resources" / "demo" / "demo.ogg"
    # without _MEIPASS (another freezer): resources/ next to the executable
    monkeypatch.delattr(sys, "_MEIPASS")
    beside = tmp_path / "bundle" / "resources"
    beside.mkdir()
    assert resources.resources_dir() == beside
    # the environment variable still wins
    monkeypatch.setenv("MUSICLENS_RESOURCES", str(tmp_path))
    assert resources.resources_dir() == tmp_path


def test_resources_dir_from_the_checkout_is_the_repo_folder(monkeypatch):
    from musiclens.core import resources

    monkeypatch.delenv("MUSICLENS_RESOURCES", raising=False)
    assert not getattr(sys, "frozen", False)
    assert resources.resources_dir() == REPO / "resources"


def test_bundle_recipe_ships_the_resources_the_app_reads():
    spec = (PACKAGING / "musiclens.spec").read_text()
    for sub in ("models", "demo", "icons"):
        assert f'"{sub}"' in spec and (REPO / "resources" / sub).is_dir()
    assert 'name="musiclens"' in spec


# ---------------------------------------------------------------------- smoke test
def test_screenshot_check_rejects_blank_and_small_pictures(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (1500, 900), (239, 239, 239)).save(blank)
    problems = smoke_test_bundle.check_screenshot(blank)
    assert any("blank" in p for p in problems) and any("warm" in p for p in problems)
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 256, size=(900, 1500, 3), dtype=np.uint8)
    busy[100:400, 50:900] = (230, 90, 40)  # a warm "spectrogram"
    good = tmp_path / "good.png"
    Image.fromarray(busy).save(good)
    assert smoke_test_bundle.check_screenshot(good) == []
    small = tmp_path / "small.png"
    Image.fromarray(busy[:300, :400]).save(small)
    assert any("400 x 300" in p for p in smoke_test_bundle.check_screenshot(small))
    assert smoke_test_bundle.check_screenshot(tmp_path / "none.png") == [f"no screenshot at {tmp_path / 'none.png'}"]


def built_bundle() -> Path | None:
    env = os.environ.get("MUSICLENS_BUNDLE")
    bundle = Path(env) if env else smoke_test_bundle.DEFAULT_BUNDLE
    return bundle if smoke_test_bundle.program(bundle).is_file() else None


def test_built_bundle_starts_and_shows_the_demo(tmp_path):
    bundle = built_bundle()
    if bundle is None:
        pytest.skip(
            "no app bundle built: run packaging/build_bundle.sh (minutes, ~1 GB) or point $MUSICLENS_BUNDLE at one"
        )
    out = tmp_path / "bundle.png"
    assert smoke_test_bundle.main([str(bundle), "--out", str(out)]) == 0
    assert smoke_test_bundle.check_screenshot(out) == []
    assert (bundle / "install-desktop.sh").is_file() and (bundle / "musiclens.desktop").is_file()
