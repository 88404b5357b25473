"""musiclens.core must import and run without Qt (napari's rule, checked for real)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import musiclens.core

BLOCK_QT = """
import sys, importlib.abc
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6', 'sounddevice'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, BlockQt())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]
assert not bad, bad
print('ok', len(sys.argv) - 1)
"""


def core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(musiclens.core.__path__, "musiclens.core.")]


def test_every_core_module_imports_without_qt():
    modules = core_modules()
    assert "musiclens.core.features" in modules and "musiclens.core.audio" in modules
    r = subprocess.run([sys.executable, "-c", BLOCK_QT, *modules], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ok {len(modules)}"
