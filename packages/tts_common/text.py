"""Text splitting: sentences first, then an early phrase so audio can start sooner."""

from __future__ import annotations

import re

# Abbreviations whose trailing period does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e",
    "mt", "no", "fig", "approx", "dept", "inc", "ltd", "co", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "a.m", "p.m",
}
_SENTENCE_END = re.compile(r"([.!?\u2026]+[\"')\]]*)(\s+)")
_PHRASE_BREAK = re.compile(r"([,;:\u2014]|\s[-\u2013]\s)\s*")


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


def _words(text: str) -> int:
    return len(text.split())


def split_long(sentence: str, max_chars: int) -> list[str]:
    """Split a sentence longer than max_chars at phrase breaks, then at spaces."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    current = ""
    for piece in re.split(r"(?<=[,;:\u2014])\s+", sentence):
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


def split_first_phrase(sentence: str, min_words: int = 3) -> list[str]:
    """Split a sentence at its first punctuated phrase break.

    Only where the speaker would pause anyway (comma, semicolon, colon, dash), and
    only when both halves have at least `min_words` words, so prosody is kept.
    """
    for match in _PHRASE_BREAK.finditer(sentence):
        head = sentence[: match.end(1)].strip()
        tail = sentence[match.end():].strip()
        if _words(head) >= min_words and _words(tail) >= min_words:
            return [head, tail]
    return [sentence]


def plan_segments(
    text: str, max_chars: int = 400, early_phrase: bool = True
) -> list[str]:
    """The pieces a model synthesizes one at a time, in text order."""
    segments: list[str] = []
    for sentence in split_sentences(text):
        segments.extend(split_long(sentence, max_chars))
    if early_phrase and segments:
        segments[:1] = split_first_phrase(segments[0])
    return segments
