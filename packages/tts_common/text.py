"""Text splitting: sentences first, then an early phrase so audio can start sooner."""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# Words a phrase may start with: splitting just before one keeps the head a
# complete phrase ("This is a test | of the system").
_PHRASE_STARTERS = {
    "of", "in", "on", "at", "for", "with", "from", "to", "by", "about", "into", "over",
    "after", "before", "under", "between", "through", "during", "without", "and", "but",
    "or", "so", "because", "while", "when", "if", "that", "which", "who", "where",
}


@dataclass(frozen=True)
class Segment:
    """One piece a model synthesizes; `continues` when the next piece is the rest
    of the same sentence (so the pause between them should stay short)."""

    text: str
    continues: bool = False


def split_first_phrase(
    sentence: str, min_words: int = 3, max_head_words: int = 0
) -> list[Segment]:
    """Split a sentence after its first phrase, where a speaker could pause.

    First choice: a punctuated break (comma, semicolon, colon, dash) with at least
    `min_words` words on each side. With `max_head_words` > 0 and no punctuation
    early enough: just before a preposition or conjunction within the first
    `max_head_words` words; the head then gets a comma so it is spoken with
    continuation intonation, not as a sentence end. Otherwise: no split.
    """
    for match in _PHRASE_BREAK.finditer(sentence):
        head = sentence[: match.end(1)].strip()
        tail = sentence[match.end():].strip()
        if _words(head) >= min_words and _words(tail) >= min_words:
            return [Segment(head, continues=True), Segment(tail)]
    words = sentence.split()
    for index in range(min_words, min(max_head_words, len(words) - min_words) + 1):
        if words[index].lower().strip("\"'(") in _PHRASE_STARTERS:
            head = " ".join(words[:index]).rstrip(",;:")
            return [Segment(head + ",", continues=True), Segment(" ".join(words[index:]))]
    return [Segment(sentence)]


def plan_segments(
    text: str, max_chars: int = 400, early_phrase: bool = True, max_head_words: int = 0
) -> list[Segment]:
    """The pieces a model synthesizes one at a time, in text order."""
    segments: list[Segment] = []
    for sentence in split_sentences(text):
        parts = split_long(sentence, max_chars)
        segments.extend(Segment(p, continues=i < len(parts) - 1) for i, p in enumerate(parts))
    if early_phrase and segments and not segments[0].continues:
        segments[:1] = split_first_phrase(segments[0].text, max_head_words=max_head_words)
    return segments
