"""Corpus readers by name: ``open_corpus("cmu_arctic", in_dir, speakers="awb,slt").utterances()``.

Each reader lists :class:`~tacowave.corpora.base.Utterance` records from a corpus's own on-disk
layout; ``tacowave.features`` turns them into a data dir.
"""
from __future__ import annotations

from typing import Any

from tacowave.corpora.base import SPLITS, Corpus, CorpusError, SkipReason, Utterance
from tacowave.corpora.cmu_arctic import CMUArctic
from tacowave.corpora.folder import Folder
from tacowave.corpora.jsut import JSUT
from tacowave.corpora.ljspeech import LJSpeech
from tacowave.corpora.thchs30 import THCHS30

CORPORA: dict[str, type[Corpus]] = {cls.name: cls for cls in (LJSpeech, CMUArctic, JSUT, THCHS30, Folder)}

__all__ = ["CORPORA", "SPLITS", "Corpus", "CorpusError", "SkipReason", "Utterance", "get_corpus", "open_corpus"]


def get_corpus(name: str) -> type[Corpus]:
    """The reader class registered as ``name``; an unknown name lists the valid ones."""
    try:
        return CORPORA[name]
    except KeyError:
        raise CorpusError(f"unknown corpus {name!r}; valid corpora: {', '.join(CORPORA)}") from None


def open_corpus(name: str, in_dir: str, **options: Any) -> Corpus:
    """Open ``in_dir`` as corpus ``name``. Options left None are ignored; an option the corpus
    does not take (e.g. ``speakers`` for ljspeech) is a :class:`CorpusError`."""
    cls = get_corpus(name)
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key not in cls.options:
            takes = f"it takes: {', '.join(cls.options)}" if cls.options else "it takes none"
            raise CorpusError(f"option {key!r} does not apply to the {name} corpus ({takes})")
    return cls(in_dir, **given)
