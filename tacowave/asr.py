"""Offline English speech recognition (pocketsphinx) and word error rate for intelligibility.

The recogniser is pocketsphinx's bundled US-English model: the ``en-us`` acoustic model, the
``en-us.lm.bin`` trigram language model and ``cmudict-en-us.dict``, all shipped inside the
pocketsphinx wheel, so nothing is downloaded. Audio is resampled to the model's 16 kHz.

WER is word-level Levenshtein distance ``(S + D + I) / N`` after :func:`normalize_text` on both
sides. Normalisation is deliberately simple: Unicode NFKC, lowercase, every character that is
not a letter, digit or apostrophe becomes a space, apostrophes at word edges are dropped.
:func:`normalize_text` does not spell out numbers; :func:`spoken_reference` does (the
recogniser only ever outputs words, so a reference "45" must become "forty five" before it is
compared, or a perfect "forty five" costs two errors). ``evaluate.py`` scores against
:func:`spoken_reference` of the transcripts.

Edge silence: the recogniser drops or mangles the first words of audio that starts with speech
at once (the demo's 20 held-out flite recordings cut to their speech scored 17.2% WER instead of
9.4%, and Tacotron-2 output, which starts within ~30 ms because training audio is trimmed, lost
its leading "the" in four of twenty sentences). :meth:`Recognizer.transcribe` therefore frames
every input alike before recognition (:func:`frame_for_recognition`: edge silence cut, then the
same fixed silence added on both sides), so that two sources of the same words are compared on
their speech, not on how much silence their files happen to carry.

Order: pocketsphinx's feature front end keeps state from one utterance to the next (its
cepstral-mean estimate, among others), so a reused decoder's hypothesis depended on what it had
heard before: in a demo evaluation 1 in 40 hypotheses changed with the utterance decoded just
before it. :meth:`Recognizer.transcribe` resets that state first, so each hypothesis is what a
fresh decoder would give (measured: 40 of 40 identical), whatever the order of the files.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

_NON_WORD = re.compile(r"[^\w']+|_")


def normalize_text(text: str) -> str:
    """Lowercase, strip punctuation, collapse spaces: ``"Hello, World!"`` -> ``"hello world"``."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    words = (w.strip("'") for w in _NON_WORD.sub(" ", text).split())
    return " ".join(w for w in words if w)


def spoken_reference(text: str) -> str:
    """The words a reader says for ``text``: numbers, ordinals, years, currency and
    abbreviations spelled out by the English text cleaners (what the English front-ends
    speak), then :func:`normalize_text`. "It took us 45 minutes on May 3rd." ->
    "it took us forty five minutes on may third". Raises ImportError without the ``en`` extra."""
    from tacowave.text.english import english_cleaners

    return normalize_text(english_cleaners(text))


def frame_for_recognition(wav: np.ndarray, sample_rate: int, top_db: float = 40.0,
                          pad_s: float = 0.25) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``top_db`` below the loudest 20 ms frame (10 ms
    hop; cut at frame edges), then add ``pad_s`` seconds of digital silence on each side.
    All-silent input comes back as the padding alone."""
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    frame, hop = max(1, int(0.02 * sample_rate)), max(1, int(0.01 * sample_rate))
    pad = np.zeros(int(round(pad_s * sample_rate)), dtype=np.float32)
    if x.size == 0 or not np.any(x):
        return np.concatenate([pad, pad])
    starts = np.arange(0, max(1, x.size - frame + 1), hop)
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    power = (energy[np.minimum(starts + frame, x.size)] - energy[starts]) / frame
    loud = np.flatnonzero(10.0 * np.log10(np.maximum(power, 1e-20) / power.max()) > -top_db)
    speech = x[starts[loud[0]]:min(x.size, starts[loud[-1]] + frame)]
    return np.concatenate([pad, speech, pad])


@dataclass(frozen=True)
class WordErrors:
    """Edit counts of a hypothesis against a reference of ``reference_words`` words."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """``errors / reference_words`` (may exceed 1 with many insertions)."""
        if self.reference_words == 0:
            raise ValueError("WER is undefined for an empty reference")
        return self.errors / self.reference_words


def word_errors(reference: str, hypothesis: str, normalize: bool = True) -> WordErrors:
    """Minimum-edit alignment of hypothesis words to reference words.

    Among alignments with the same number of edits, the backtrace prefers a match or
    substitution, then a deletion, then an insertion.
    """
    if normalize:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    ref, hyp = reference.split(), hypothesis.split()
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]),
                             cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            subs += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return WordErrors(substitutions=int(subs), deletions=dels, insertions=ins, reference_words=n)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after :func:`normalize_text` on both."""
    return word_errors(reference, hypothesis).wer


class Recognizer:
    """pocketsphinx US-English decoder with the bundled model; reuse one for many files."""

    SAMPLE_RATE = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError:
            raise ImportError("pocketsphinx is needed for WER: pip install 'tacowave[eval]'") from None
        self._decoder = Decoder(hmm=get_model_path("en-us/en-us"), lm=get_model_path("en-us/en-us.lm.bin"),
                                dict=get_model_path("en-us/cmudict-en-us.dict"),
                                samprate=float(self.SAMPLE_RATE), loglevel="FATAL")

    def transcribe(self, wav: np.ndarray, sample_rate: int, reframe: bool = True) -> str:
        """Recognise one utterance: ``(T,)`` float samples in [-1, 1] -> lowercase words.
        ``reframe``: pass it through :func:`frame_for_recognition` first (see the module doc)."""
        from tacowave.audio import resample

        x = resample(np.asarray(wav, dtype=np.float32), sample_rate, self.SAMPLE_RATE)
        if reframe:
            x = frame_for_recognition(x, self.SAMPLE_RATE)
        pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
        self._decoder.reinit_feat()  # forget the previous utterance (module doc: Order)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    def transcribe_file(self, path: str, reframe: bool = True) -> str:
        """Recognise a wav file (any rate; mixed to mono)."""
        from tacowave.audio import load_wav

        return self.transcribe(load_wav(path, self.SAMPLE_RATE), self.SAMPLE_RATE, reframe)
