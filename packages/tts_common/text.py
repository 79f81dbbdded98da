"""Text plan: sentences, each spoken whole.

A model synthesizes one sentence at a time, exactly as written: no sentence is cut
into separately spoken pieces and no punctuation is added or removed. Only a
sentence longer than the model takes in one piece is split, at its own clause
punctuation (or, where even a clause is too long, between words).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Abbreviations whose trailing period does not end a sentence.
_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "mt",
    "no",
    "fig",
    "approx",
    "dept",
    "inc",
    "ltd",
    "co",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "u.s",
    "a.m",
    "p.m",
}
# A sentence's end: its punctuation (and closing quotes or brackets), then whitespace.
# Linear time on any input: a match only starts at the first mark of a run, and the
# possessive quantifiers never backtrack into the run (plain `+` took 1.9 s on 10,000
# dots without a space: each dot began a match that scanned the rest of the run).
_SENTENCE_END = re.compile(r"(?<![.!?\u2026])([.!?\u2026]++[\"')\]]*+)(\s+)")
# The last word before a period is looked for this far back: an abbreviation is short.
_WORD_WINDOW = 32
# A clause break the text has: the space after a comma, semicolon, colon or dash.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014])\s+")


def _sentence_ends(block: str) -> Iterator[tuple[int, int]]:
    """Where each sentence of a block (no line breaks) ends, and where the next one
    starts: at each sentence-ending punctuation and the whitespace after it, but
    not after an abbreviation's or a single letter's period."""
    for match in _SENTENCE_END.finditer(block):
        end = match.end(1)
        if match.group(1) == "." and _abbreviated(
            block[max(0, end - _WORD_WINDOW) : end], end > _WORD_WINDOW
        ):
            continue
        yield end, match.end()


def _abbreviated(before: str, cut: bool) -> bool:
    """Whether the word that `before` ends with (its period included) is an
    abbreviation or a single letter. `cut`: the text goes on before `before`, so a
    word filling all of it is longer than any abbreviation."""
    words = before.rstrip(".!?\u2026\"')]").rsplit(None, 1)
    if not words or (cut and len(words) == 1 and not before[0].isspace()):
        return False
    word = words[-1].lower()
    return word in _ABBREVIATIONS or len(word) == 1


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, keeping abbreviations and decimals intact."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n|\r?\n", text):
        start = 0
        for end, after in _sentence_ends(block):
            pieces.append(block[start:end])
            start = after
        pieces.append(block[start:])
    return [p.strip() for p in pieces if p.strip()]


def split_long(sentence: str, max_chars: int) -> list[str]:
    """A sentence of at most max_chars as it is; a longer one in as few pieces
    of at most max_chars as its clause breaks allow, a clause still too long
    cut between words. Every character but the spaces at a cut is kept."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    current = ""
    for piece in _CLAUSE_BREAK.split(sentence):
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if current:
                parts.append(current)
                current = ""
            parts.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if current and len(current) + 1 + len(piece) > max_chars:
            parts.append(current)
            current = piece
        else:
            current = f"{current} {piece}".strip()
    if current:
        parts.append(current)
    return [p for p in parts if p]


def plan_segments(text: str, max_chars: int) -> list[str]:
    """The pieces a model synthesizes one at a time, in text order: each
    sentence whole, unless it is longer than max_chars (split_long)."""
    return [part for sentence in split_sentences(text) for part in split_long(sentence, max_chars)]


def _complete_end(text: str) -> int:
    """Where the complete sentences at the start of `text` end: after the
    whitespace that follows a sentence's end (its abbreviations and decimals kept
    as split_sentences keeps them), or after a line break; 0 if none is complete."""
    end = 0
    block_start = 0
    for block in re.split(r"(\r?\n)", text):
        if block in ("\n", "\r\n"):
            block_start += len(block)
            end = block_start
            continue
        for _, after in _sentence_ends(block):
            end = block_start + after
        block_start += len(block)
    return end


class IncrementalText:
    """Text arriving in pieces (an LLM's tokens) cut into speakable units as soon
    as the buffer holds one: each complete sentence, planned as `plan_segments`
    plans the HTTP path's text; and, when `eager` (the listener is about to run
    out of audio), a sentence still arriving up to the last clause break it
    already has. Breaks are only ever the text's own: nothing is cut where the
    text has no punctuation, but a sentence past `max_chars`."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self._pending = ""

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, text: str) -> None:
        self._pending += text

    def units(self, eager: bool = False) -> list[str]:
        """The units now complete, in order; what remains waits for more text."""
        end = _complete_end(self._pending)
        units = plan_segments(self._pending[:end], self.max_chars)
        rest = self._pending[end:]
        if eager or len(rest) > self.max_chars:
            breaks = [m.end() for m in _CLAUSE_BREAK.finditer(rest)]
            if eager and breaks:
                units += split_long(rest[: breaks[-1]].strip(), self.max_chars)
                rest = rest[breaks[-1] :]
            if len(rest) > self.max_chars:
                *ready, rest = split_long(rest.strip(), self.max_chars)
                units += ready
        self._pending = rest
        return [unit for unit in units if unit]

    def flush(self) -> list[str]:
        """Everything still buffered, as units (input.done)."""
        units = plan_segments(self._pending, self.max_chars)
        self._pending = ""
        return units
