"""Shared fixtures. Corpus builders live in ``tests/corpus_builders.py``."""
from __future__ import annotations

import pytest

from corpus_builders import SpeechCache


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> SpeechCache:
    """Synthetic speech generated once per session (flite, espeak-ng, pyopenjtalk)."""
    return SpeechCache(str(tmp_path_factory.mktemp("speech")))
