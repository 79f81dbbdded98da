"""Word times for piper, exact: from the frames the prior gave each phoneme id.

piper feeds its graph `BOS PAD p1 PAD p2 PAD ... EOS` (each phoneme's ids followed
by a pad); the duration predictor gives every id a whole number of frames (the
graph's `w_ceil`), and the audio is exactly those frames, `hop` samples each. So
each phoneme's time span is known exactly; what is left is to say which words of
the text as sent each phoneme belongs to.

espeak's phonemes are not the text's words one for one: it expands numbers and
abbreviations ("$42.50" is six words), and runs short words together ("of the"
is one, "ʌvðə"). So each word of the text (a whitespace-separated token) is
phonemized alone too, and those phonemes are aligned with the sentence's
(difflib, on the phonemes that sound: no stress marks, spaces or punctuation).
Matched phonemes take their word; a run espeak said differently in context
("e.g." alone is "iːdʒiː", in a sentence "for example") goes, in order, to the
words of the matching run of the text's phonemes; a word espeak did not say at
all gets an empty span where it would have been. Punctuation on its own
("—") joins the word before it. A word's span runs from its first phoneme's
first frame (its stress mark included) to its last phoneme's pad; pauses at
spaces and punctuation belong to no word.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tts_common.synthesis import WordTime

BOS, EOS, PAD = "^", "$", "_"  # piper.const's, as its phonemes_to_ids uses them
_STRESS = frozenset("ˈˌ")


def sounding(phoneme: str) -> bool:
    """A phoneme that is a sound: not a space, stress mark, punctuation or symbol."""
    return (
        phoneme not in _STRESS and not phoneme.isspace() and unicodedata.category(phoneme[0])[0] not in "PSZ"
    )


def id_spans(phonemes: Sequence[str], id_map: dict[str, list[int]]) -> tuple[list[tuple[int, int]], int]:
    """Each phoneme's [first, last) index among the ids piper makes of `phonemes`
    (its own ids and the pad after them; empty for one the map lacks, which piper
    skips), and how many ids there are in all."""
    pad = len(id_map[PAD])
    index = len(id_map[BOS]) + pad
    spans = []
    for phoneme in phonemes:
        width = len(id_map[phoneme]) + pad if phoneme in id_map else 0
        spans.append((index, index + width))
        index += width
    return spans, index + len(id_map[EOS])


@dataclass
class _Sound:
    phoneme: str
    start: float  # seconds from the unit's start
    end: float


def _sounds(
    sentences: Sequence[tuple[Sequence[str], Sequence[int], np.ndarray]],
    id_map: dict[str, list[int]],
    seconds_per_frame: float,
) -> list[_Sound] | None:
    """The sounding phonemes of the unit's espeak sentences with their exact times;
    None if the ids or durations do not match what piper made of the phonemes."""
    sounds: list[_Sound] = []
    offset = 0  # frames before this sentence
    for phonemes, ids, durations in sentences:
        spans, count = id_spans(phonemes, id_map)
        if count != len(ids) or len(durations) != len(ids):
            return None
        edges = np.concatenate([[0], np.cumsum(durations)]) + offset
        stress_from: int | None = None  # a stress mark's frames go to the sound after it
        for phoneme, (first, last) in zip(phonemes, spans, strict=True):
            if phoneme in _STRESS:
                stress_from = first if stress_from is None else stress_from
            elif sounding(phoneme):
                begin = first if stress_from is None else stress_from
                sounds.append(
                    _Sound(
                        phoneme,
                        float(edges[begin]) * seconds_per_frame,
                        float(edges[last]) * seconds_per_frame,
                    )
                )
                stress_from = None
            else:
                stress_from = None
        offset = int(edges[-1])
    return sounds


def _text_words(text: str, phonemize: Callable[[str], list[str]]) -> list[tuple[str, list[str]]]:
    """The text's words as sent, each with its sounding phonemes said alone; a
    token with none (punctuation on its own) joins the word before (or after) it."""
    words: list[tuple[str, list[str]]] = []
    carry = ""
    for token in text.split():
        sounds = [p for p in phonemize(token) if sounding(p)]
        if not sounds:
            if words:
                words[-1] = (f"{words[-1][0]} {token}", words[-1][1])
            else:
                carry = f"{carry} {token}".strip()
            continue
        words.append((f"{carry} {token}".strip(), sounds))
        carry = ""
    if carry and words:
        words[-1] = (f"{words[-1][0]} {carry}", words[-1][1])
    return words


def _owners(alone: list[int], said: int, opcodes: Sequence[tuple[str, int, int, int, int]]) -> list[int]:
    """For each of the `said` phonemes, the index of the word it belongs to, given
    the word of each phoneme said alone and difflib's opcodes between the two."""
    owner = [0] * said
    for tag, a1, a2, b1, b2 in opcodes:
        for k in range(b2 - b1):
            if tag == "equal":
                owner[b1 + k] = alone[a1 + k]
            elif tag == "replace":
                owner[b1 + k] = alone[a1 + k * (a2 - a1) // (b2 - b1)]
            else:  # insert: a sound only the sentence has goes with the one before it
                owner[b1 + k] = owner[b1 - 1] if b1 > 0 else alone[min(a1, len(alone) - 1)]
    return owner


def word_alignment(
    text: str,
    sentences: Sequence[tuple[Sequence[str], Sequence[int], np.ndarray | None]],
    phonemize: Callable[[str], list[str]],
    id_map: dict[str, list[int]],
    seconds_per_frame: float,
) -> list[WordTime] | None:
    """Times of the words of `text` (one unit), from its espeak sentences'
    phonemes, ids and frames per id; None when durations are missing or do not fit."""
    known = [(p, i, d) for p, i, d in sentences if d is not None]
    if len(known) != len(sentences):
        return None
    sounds = _sounds(known, id_map, seconds_per_frame)
    words = _text_words(text, phonemize)
    if sounds is None or not words:
        return None
    alone = [index for index, (_, phonemes) in enumerate(words) for _ in phonemes]
    matcher = difflib.SequenceMatcher(
        None, [p for _, phonemes in words for p in phonemes], [s.phoneme for s in sounds], autojunk=False
    )
    owner = _owners(alone, len(sounds), matcher.get_opcodes()) if sounds else []
    starts: list[float] = []
    ends: list[float] = []
    for index in range(len(words)):
        mine = [s for s, o in zip(sounds, owner, strict=True) if o == index]
        previous_end = ends[-1] if ends else 0.0
        start = mine[0].start if mine else previous_end
        starts.append(round(max(start, previous_end), 4))
        ends.append(round(max(mine[-1].end if mine else start, starts[-1]), 4))
    return [WordTime(word, start, end) for (word, _), start, end in zip(words, starts, ends, strict=True)]
