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


def texts(segments):
    return [s.text for s in segments]


def test_first_phrase_splits_at_punctuation_with_enough_words():
    assert texts(split_first_phrase("Well, that is fine.")) == ["Well, that is fine."]
    split = split_first_phrase("When the sun sets, we all go home.")
    assert texts(split) == ["When the sun sets,", "we all go home."]
    assert [s.continues for s in split] == [True, False]
    assert texts(split_first_phrase("No pause in this sentence at all.")) == [
        "No pause in this sentence at all."
    ]


def test_unpunctuated_first_phrase_splits_before_a_phrase_starter():
    sentence = "This is a test of the real-time text-to-speech synthesis system."
    assert texts(split_first_phrase(sentence, max_head_words=5)) == [
        "This is a test,",  # comma: spoken as a continuation, not a sentence end
        "of the real-time text-to-speech synthesis system.",
    ]
    # No phrase starter early enough: the sentence stays whole.
    whole = "The quick brown fox jumps over the lazy dog."
    assert texts(split_first_phrase(whole, max_head_words=4)) == [whole]
    # Too short a tail: no split.
    assert texts(split_first_phrase("This is a test of it.", max_head_words=5)) == [
        "This is a test of it."
    ]


def test_long_sentences_are_bounded_and_lose_no_words():
    sentence = ", ".join(["word " * 12] * 10).strip()
    parts = split_long(sentence, 100)
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == sentence.split()


def test_plan_keeps_text_order_and_every_word():
    text = "First sentence here, with a phrase break. Second one! And a third?"
    segments = plan_segments(text)
    assert segments[0].text == "First sentence here,"
    assert " ".join(texts(segments)).split() == text.split()
    assert [s.continues for s in segments] == [True, False, False, False]


def test_long_sentence_parts_continue_their_sentence():
    sentence = ", ".join(["word " * 12] * 10).strip() + "."
    segments = plan_segments(sentence + " Next.", max_chars=100, early_phrase=False)
    assert all(s.continues for s in segments[:-2]) and not segments[-2].continues
