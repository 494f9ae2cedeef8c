"""Shared fixtures. Corpus builders live in ``tests/corpus_builders.py``."""
from __future__ import annotations

import pytest

from corpus_builders import SpeechCache


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> SpeechCache:
    """Synthetic speech generated once per session (flite, espeak-ng, pyopenjtalk)."""
    return SpeechCache(str(tmp_path_factory.mktemp("speech")))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second OpenMP thread that gets descheduled
    makes every op wait for it (measured 10-40x slower steps under load), so model tests pin
    torch to one thread for their module and restore the setting after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
