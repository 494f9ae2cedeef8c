"""Text front-ends: transcript → tokens → symbol ids for the acoustic model.

Usage::

    from tacowave.text import get_frontend
    fe = get_frontend("english_arpabet")
    tokens, unknown = fe.text_to_tokens("Dr. Smith paid $3.50.")
    ids = fe.tokens_to_ids(tokens)

Front-ends (``get_frontend(name)``):

==================  ==========================================================  =======
name                tokens                                                      symbols
==================  ==========================================================  =======
english_chars       lowercase letters, ``!'(),-.:;?``, ``<sp>``, ``<eos>``          39
english_arpabet     the above plus '@'-prefixed CMUdict phones (``@S @P @IY1``)     108
english_nvidia      NVIDIA/tacotron2's table (``" "`` spelt ``<sp>``), no EOS        148
japanese            pyopenjtalk g2p phonemes, ``pau``, ``<eos>``                     48
japanese_prosody    phonemes plus ``^ $ ? # [ ] _`` marks (ESPnet-style), no EOS      53
mandarin_pinyin     pinyin initials, tonal finals (``zh ong1``), pauses, ``<eos>``  227
==================  ==========================================================  =======

Every front-end has ``name``, ``symbols`` (id 0 = padding), ``text_to_tokens``,
``tokens_to_ids``, ``text_to_sequence``, ``ids_to_tokens``, ``sequence_to_text`` and
``check_symbols``; see :class:`~tacowave.text.symbols.Frontend`. The Mandarin one also
has ``pinyin_to_tokens`` for corpora that ship pinyin transcriptions. Heavy resources
(CMUdict, pyopenjtalk, pypinyin) load on first use, so importing this package is cheap
and needs none of the language extras.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from tacowave.text.symbols import (
    EOS,
    NVIDIA_SYMBOLS,
    PAD,
    SPACE,
    Frontend,
    join_tokens,
    split_tokens,
)


def _english_chars(**kw: Any) -> Frontend:
    from tacowave.text.english import EnglishCharsFrontend
    return EnglishCharsFrontend(**kw)


def _english_arpabet(**kw: Any) -> Frontend:
    from tacowave.text.english import EnglishArpabetFrontend
    return EnglishArpabetFrontend(**kw)


def _english_nvidia(**kw: Any) -> Frontend:
    from tacowave.text.english import EnglishNvidiaFrontend
    return EnglishNvidiaFrontend(**kw)


def _japanese(**kw: Any) -> Frontend:
    from tacowave.text.japanese import JapaneseFrontend
    return JapaneseFrontend(**kw)


def _japanese_prosody(**kw: Any) -> Frontend:
    from tacowave.text.japanese import JapaneseProsodyFrontend
    return JapaneseProsodyFrontend(**kw)


def _mandarin_pinyin(**kw: Any) -> Frontend:
    from tacowave.text.mandarin import MandarinPinyinFrontend
    return MandarinPinyinFrontend(**kw)


_REGISTRY: dict[str, Callable[..., Frontend]] = {
    "english_chars": _english_chars,
    "english_arpabet": _english_arpabet,
    "english_nvidia": _english_nvidia,
    "japanese": _japanese,
    "japanese_prosody": _japanese_prosody,
    "mandarin_pinyin": _mandarin_pinyin,
}

FRONTEND_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_frontend(name: str, **options: Any) -> Frontend:
    """Build the front-end called ``name``.

    Args:
        name: one of :data:`FRONTEND_NAMES`.
        **options: front-end specific options, e.g. ``arpabet_probability`` and ``seed`` for
            ``english_arpabet``, ``drop_unvoiced_vowels`` for ``japanese_prosody``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or an option the
            front-end does not take.
    """
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown text front-end {name!r}; valid names: "
                         + ", ".join(FRONTEND_NAMES)) from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"bad option for text front-end {name!r}: {exc}") from None


def frontend_from_config(text_config: Any, *, training: bool = False,
                         seed: Optional[int] = None) -> Frontend:
    """Build the front-end a preset's ``text`` section (:class:`tacowave.hparams.TextConfig`) names.

    ``arpabet_probability`` only applies while ``training`` is true: synthesis and
    preprocessing always use the dictionary pronunciation when there is one.
    """
    name = text_config.frontend
    if name == "english_arpabet":
        p = float(text_config.arpabet_probability) if training else 1.0
        return get_frontend(name, arpabet_probability=p, seed=seed)
    return get_frontend(name)


__all__ = [
    "EOS",
    "FRONTEND_NAMES",
    "Frontend",
    "NVIDIA_SYMBOLS",
    "PAD",
    "SPACE",
    "frontend_from_config",
    "get_frontend",
    "join_tokens",
    "split_tokens",
]
