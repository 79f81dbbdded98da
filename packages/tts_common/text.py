"""Text plan: sentences, each spoken whole.

A model synthesizes one sentence at a time, exactly as written: no sentence is cut
into separately spoken pieces and no punctuation is added or removed. Only a
sentence longer than the model takes in one piece is split, at its own clause
punctuation (or, where even a clause is too long, between words).
"""

from __future__ import annotations

import re

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
_SENTENCE_END = re.compile(r"([.!?\u2026]+[\"')\]]*)(\s+)")
# A clause break the text has: the space after a comma, semicolon, colon or dash.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014])\s+")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, keeping abbreviations and decimals intact."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n|\r?\n", text):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            end = match.end(1)
            last_word = block[start:end].rstrip(".!?\u2026\"')]").rsplit(None, 1)
            word = last_word[-1].lower() if last_word else ""
            if match.group(1) == "." and (word in _ABBREVIATIONS or len(word) == 1):
                continue
            pieces.append(block[start:end])
            start = match.end()
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
