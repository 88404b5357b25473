"""Real-data tier: MusiCNN's published top tags on its two demo clips (../shared/data)."""

from __future__ import annotations

import pytest

from musiclens.core import tagging
from musiclens.core.models import registry

pytestmark = pytest.mark.realdata

JORAM = "audio/musicnn/joram-moments_of_clarity-08-solipsism-59-88.mp3"
TRWJAZW = "audio/musicnn/TRWJAZW128F42760DD_test.mp3"


@pytest.fixture(scope="module")
def mtt():
    return registry.load("MTT_musicnn")


def test_joram_top10_as_published(shared_data, mtt):
    tg = tagging.tag_file(shared_data / JORAM, mtt)
    assert tg.probabilities.shape == (9, 50)  # 29.3 s -> 9 full 3 s patches
    assert [t for t, _ in tg.top(10)] == [
        "techno",
        "electronic",
        "synth",
        "fast",
        "beat",
        "drums",
        "no vocals",
        "no vocal",
        "dance",
        "ambient",
    ]


def test_trwjazw_top3_as_published(shared_data, mtt):
    tg = tagging.tag_file(shared_data / TRWJAZW, mtt)  # 22.05 kHz stereo -> 16 kHz mono
    assert tg.probabilities.shape == (10, 50)
    assert [t for t, _ in tg.top(3)] == ["guitar", "piano", "fast"]
