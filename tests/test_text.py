"""Sentence and phrase splitting."""

from tts_common.text import plan_segments, split_first_phrase, split_long, split_sentences


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


def test_first_phrase_splits_only_at_punctuation_with_enough_words():
    assert split_first_phrase("Well, that is fine.") == ["Well, that is fine."]
    assert split_first_phrase("When the sun sets, we all go home.") == [
        "When the sun sets,",
        "we all go home.",
    ]
    assert split_first_phrase("No pause in this sentence at all.") == [
        "No pause in this sentence at all."
    ]


def test_long_sentences_are_bounded_and_lose_no_words():
    sentence = ", ".join(["word " * 12] * 10).strip()
    parts = split_long(sentence, 100)
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == sentence.split()


def test_plan_keeps_text_order_and_every_word():
    text = "First sentence here, with a phrase break. Second one! And a third?"
    segments = plan_segments(text)
    assert segments[0] == "First sentence here,"
    assert " ".join(segments).split() == text.split()
