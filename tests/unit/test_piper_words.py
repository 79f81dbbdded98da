"""piper's word times: phoneme durations (frames per id) mapped back to the words
of the text as sent, including where espeak's words are not the text's."""

import numpy as np
import pytest

from piper_engine.words import id_spans, word_alignment

SPF = 0.01  # seconds per frame, for round numbers


def id_map(phonemes) -> dict[str, list[int]]:
    """piper's layout: BOS, EOS and PAD, and one id per phoneme."""
    ids = {"_": [0], "^": [1], "$": [2]}
    for p in phonemes:
        ids.setdefault(p, [len(ids)])
    return ids


def sentence(phonemes: list[str], frames: dict[int, int] | None = None):
    """(phonemes, ids, durations): each id 1 frame unless `frames` says otherwise."""
    ids_of = id_map(phonemes)
    ids = [1, 0]
    for p in phonemes:
        ids += [ids_of[p][0], 0]
    ids.append(2)
    durations = np.ones(len(ids), dtype=np.int64)
    for index, count in (frames or {}).items():
        durations[index] = count
    return phonemes, ids, durations, ids_of


def align(text, said, alone, frames=None):
    phonemes, ids, durations, ids_of = sentence(said, frames)
    for word in alone.values():
        for p in word:
            ids_of.setdefault(p, [len(ids_of)])
    return Times(word_alignment(text, [(phonemes, ids, durations)], lambda w: alone[w], ids_of, SPF))


class Times:
    """The word times as columns, for short assertions."""

    def __init__(self, times):
        assert times is not None
        self.words = [t.word for t in times]
        self.word_start_times_seconds = [t.start_s for t in times]
        self.word_end_times_seconds = [t.end_s for t in times]


def test_id_spans_follow_piper_layout():
    spans, count = id_spans(["h", "i"], id_map(["h", "i"]))
    # BOS PAD h PAD i PAD EOS: each phoneme owns its id and the pad after it
    assert spans == [(2, 4), (4, 6)] and count == 7


def test_one_to_one_words_get_their_phonemes_exact_times():
    said = list("ha") + [" "] + list("ˈbo") + ["."]
    # ids: 0 BOS, 1 PAD, 2 h, 3 pad, 4 a, 5 pad, 6 space, 7 pad, 8 stress, 9 pad, 10 b, 11 pad,
    # 12 o, 13 pad, 14 ".", 15 pad, 16 EOS
    result = align("ha bo.", said, {"ha": list("ha"), "bo.": list("ˈbo") + ["."]}, frames={2: 5, 10: 3})
    assert result.words == ["ha", "bo."]
    # frames: BOS 1, PAD 1, h 5, then 1 each but b 3
    assert result.word_start_times_seconds == [0.02, 0.12]  # "bo." starts at its stress mark
    assert result.word_end_times_seconds == [0.10, 0.20]  # "ha" ends with a's pad; the space is no word's


def test_words_espeak_runs_together_are_split_at_their_phonemes():
    # "of the" is said as one word, "ʌvðə"
    said = list("ʌvðə") + [" "] + list("kæt")
    result = align("of the cat", said, {"of": list("ʌv"), "the": list("ðə"), "cat": list("kæt")})
    assert result.words == ["of", "the", "cat"]
    assert result.word_start_times_seconds == [0.02, 0.06, 0.12]
    assert result.word_end_times_seconds == [0.06, 0.10, 0.18]


def test_a_number_espeak_expands_keeps_its_words_span():
    said = list("faɪv") + [" "] + list("dɑlɚz") + [" "] + list("nau")
    result = align("$5 now", said, {"$5": list("faɪv") + [" "] + list("dɑlɚz"), "now": list("nau")})
    assert result.words == ["$5", "now"]
    assert result.word_start_times_seconds[0] == 0.02
    assert result.word_end_times_seconds[0] == pytest.approx(0.02 + 0.02 * 10)  # 4 + 5 phonemes and a space
    assert result.word_start_times_seconds[1] > result.word_end_times_seconds[0]


def test_a_word_said_differently_in_context_keeps_its_place():
    # "e.g." alone is "iːdʒiː"; in a sentence espeak says "for example"
    said = list("fɔɹ") + [" "] + list("ɛɡzæmpəl") + [" "] + list("ðɪs")
    result = align("e.g. this", said, {"e.g.": list("iːdʒiː"), "this": list("ðɪs")})
    assert result.words == ["e.g.", "this"]
    assert result.word_start_times_seconds[0] == 0.02
    assert result.word_end_times_seconds[0] < result.word_start_times_seconds[1]


def test_punctuation_on_its_own_joins_the_word_before():
    said = list("wet") + [";", " "] + list("nau")
    result = align("wait — now", said, {"wait": list("wet"), "—": [], "now": list("nau")})
    assert result.words == ["wait —", "now"]


def test_times_are_increasing_and_inside_the_audio():
    said = list("ðɪs") + [" "] + list("ɪz") + [" "] + list("ɐ") + [" "] + list("tɛst") + ["."]
    alone = {"This": list("ðɪs"), "is": list("ɪz"), "a": list("ɐ"), "test.": list("tɛst") + ["."]}
    phonemes, ids, durations, _ = sentence(said, {i: 1 + i % 4 for i in range(31)})
    result = align("This is a test.", said, alone, {i: 1 + i % 4 for i in range(31)})
    starts, ends = result.word_start_times_seconds, result.word_end_times_seconds
    assert all(s < e for s, e in zip(starts, ends, strict=True)) and all(
        e <= s for e, s in zip(ends, starts[1:], strict=False)
    )
    assert ends[-1] <= durations.sum() * SPF


def test_ids_that_do_not_fit_the_phonemes_give_no_times():
    phonemes, ids, durations, ids_of = sentence(list("ha"))
    assert (
        word_alignment("ha", [(phonemes, ids[:-1], durations[:-1])], lambda w: list("ha"), ids_of, SPF)
        is None
    )
    assert word_alignment("ha", [(phonemes, ids, None)], lambda w: list("ha"), ids_of, SPF) is None


def test_several_espeak_sentences_in_one_unit_add_up():
    first = sentence(list("dɑk") + ["."])
    second = sentence(list("hi"))
    ids_of = {**first[3], **second[3]}
    result = Times(
        word_alignment(
            "Dr. Hi",
            [first[:3], second[:3]],
            lambda w: {"Dr.": list("dɑk") + ["."], "Hi": list("hi")}[w],
            ids_of,
            SPF,
        )
    )
    assert result.words == ["Dr.", "Hi"]
    assert result.word_start_times_seconds[1] == pytest.approx((len(first[1]) + 2) * SPF)
