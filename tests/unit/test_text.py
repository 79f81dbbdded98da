"""The text plan: sentences spoken whole, split only past the model's limit."""

import time

import pytest

from tts_common.text import IncrementalText, plan_segments, split_long, split_sentences


def test_sentences_keep_abbreviations_and_decimals():
    text = "Dr. Smith paid $3.50 at 5 p.m. today. Was it worth it? Yes! Absolutely."
    assert split_sentences(text) == [
        "Dr. Smith paid $3.50 at 5 p.m. today.",
        "Was it worth it?",
        "Yes!",
        "Absolutely.",
    ]


def test_newlines_end_sentences():
    assert split_sentences("Title\nBody text here") == ["Title", "Body text here"]


def test_each_sentence_is_spoken_whole_as_written():
    text = (
        "This is a test of the real-time text-to-speech synthesis system. "
        "When the sun sets, we all go home. Two blue fish swam in the tank."
    )
    assert plan_segments(text, max_chars=400) == [
        "This is a test of the real-time text-to-speech synthesis system.",
        "When the sun sets, we all go home.",
        "Two blue fish swam in the tank.",
    ]


def test_a_sentence_at_the_limit_stays_whole():
    sentence = "Well, this sentence has commas, and it is exactly as long as the limit."
    assert plan_segments(sentence, max_chars=len(sentence)) == [sentence]
    assert len(plan_segments(sentence, max_chars=len(sentence) - 1)) > 1


def test_a_long_sentence_splits_at_its_own_punctuation():
    clauses = [
        "the first clause of a long sentence,",
        "then a second one that goes on;",
        "a third: with a colon inside it,",
        "and a last one to end it.",
    ]
    sentence = " ".join(clauses)
    parts = split_long(sentence, 70)
    assert all(len(p) <= 70 for p in parts)
    # every cut is right after punctuation the sentence has, and nothing is added
    assert all(p[-1] in ",;:." for p in parts)
    assert " ".join(parts) == sentence


def test_a_clause_longer_than_the_limit_is_cut_between_words():
    sentence = ", ".join(["word " * 12] * 10).strip()
    parts = split_long(sentence, 100)
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == sentence.split()
    assert all(not p.endswith(" ") and not p.startswith(" ") for p in parts)


def test_plan_keeps_text_order_and_every_word():
    text = "First sentence here, with a phrase break. Second one! And a third?"
    segments = plan_segments(text, max_chars=400)
    assert segments == ["First sentence here, with a phrase break.", "Second one!", "And a third?"]
    long = ", ".join(["word " * 12] * 10).strip() + "."
    segments = plan_segments(long + " Next.", max_chars=100)
    assert " ".join(segments).split() == (long + " Next.").split()
    assert segments[-1] == "Next."


# Incremental text: units as soon as the buffer holds them (the realtime protocol).

PARAGRAPH = (
    "Dr. Smith paid $3.50 at 5 p.m. today. Was it worth it? Yes! "
    "When the sun sets, we all go home, and the streets go quiet. The end."
)


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\s*\S+", text)


def test_incremental_units_are_the_http_plan_whatever_the_pieces():
    for pieces in (_tokens(PARAGRAPH), list(PARAGRAPH), [PARAGRAPH]):
        buffer = IncrementalText(400)
        units: list[str] = []
        for piece in pieces:
            buffer.push(piece)
            units += buffer.units()
        units += buffer.flush()
        assert units == plan_segments(PARAGRAPH, max_chars=400)


def test_a_sentence_is_ready_once_the_next_word_starts():
    buffer = IncrementalText(400)
    buffer.push("Dr. Smith is here.")
    assert buffer.units() == []  # "here." may still be "here.com": wait for the space
    buffer.push(" Next")
    assert buffer.units() == ["Dr. Smith is here."]
    assert buffer.flush() == ["Next"]


def test_an_abbreviation_does_not_end_a_unit():
    buffer = IncrementalText(400)
    buffer.push("Dr. Smith and Mr. ")
    assert buffer.units() == []


def test_a_line_break_ends_a_unit():
    buffer = IncrementalText(400)
    buffer.push("A title\nThe body")
    assert buffer.units() == ["A title"]
    assert buffer.flush() == ["The body"]


def test_eager_starts_at_a_clause_break_the_text_has():
    buffer = IncrementalText(400)
    buffer.push("When the sun sets, we all go")
    assert buffer.units(eager=False) == []
    assert buffer.units(eager=True) == ["When the sun sets,"]
    assert buffer.flush() == ["we all go"]


def test_eager_never_invents_a_break():
    buffer = IncrementalText(400)
    buffer.push("When the sun sets we all go home")
    assert buffer.units(eager=True) == []
    buffer.push(",")  # the comma has arrived but not the space after it: maybe "home,town"
    assert buffer.units(eager=True) == []


def test_a_sentence_past_the_limit_is_cut_at_its_own_punctuation_while_it_arrives():
    buffer = IncrementalText(40)
    buffer.push("one two three four five six seven, eight nine ten eleven twelve thirteen")
    units = buffer.units()
    assert units == ["one two three four five six seven,"]
    assert all(len(unit) <= 40 for unit in units + buffer.flush())


def _seconds(plan, text: str) -> float:
    started = time.perf_counter()
    plan(text)
    return time.perf_counter() - started


@pytest.mark.parametrize("unit", [".", "!?", "a. ", "e.g. ", ". "])
def test_planning_takes_linear_time_on_runs_of_punctuation(unit):
    """A hostile text (a run of punctuation without whitespace, or endless
    abbreviations) costs time in proportion to its length: ten times the text,
    about ten times the time, never the hundredfold of a backtracking pattern."""

    def plan(text: str) -> None:
        plan_segments(text, max_chars=400)
        incremental = IncrementalText(400)
        incremental.push(text)
        incremental.units()

    small, large = unit * (10_000 // len(unit)), unit * (100_000 // len(unit))
    plan(small)  # warm-up
    ratio = min(_seconds(plan, large) for _ in range(5)) / min(_seconds(plan, small) for _ in range(5))
    assert ratio < 30, ratio
    assert _seconds(plan, "." * 100_000) < 1.0  # a quadratic pattern takes minutes here
