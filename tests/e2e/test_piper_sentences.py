"""piper-streaming speaks a text as piper itself does: with the voice's noise off,
the samples it streams for whole sentences and paragraphs are the ones piper's own
`PiperVoice.synthesize` gives for the same text, to float rounding, apart from
piper's per-sentence level normalisation, which the Truss leaves out (docs/models.md,
piper-streaming). tests/tools/piper_sentence_check.py measures; these tests assert."""

import pytest
from conftest import REPO
from reports import run_report

SNR_FLOOR_DB = 90.0  # float rounding gives well over 100 dB
MAX_ERR = 1e-4  # of full scale


@pytest.fixture(scope="module")
def report(piper_python):
    return run_report(str(piper_python), str(REPO / "tests/tools/piper_sentence_check.py"))


def test_every_text_was_checked(report):
    names = {case["name"] for case in report["cases"]}
    assert {"seed", "short", "comma", "paragraph", "abbreviations"} <= names
    speeds = {case["speed"] for case in report["cases"] if case["name"] == "seed"}
    assert speeds == {1.0, 1.5}


def test_same_samples_as_piper_whole(report):
    for case in report["cases"]:
        label = (case["name"], case["speed"])
        assert case["length"] == case["piper_length"], label
        assert case["snr_db"] >= SNR_FLOOR_DB, label
        assert case["max_err"] < MAX_ERR, label


def test_streamed_in_several_chunks_not_one_piece(report):
    # the equality above is of a stream, not of one whole-sentence run
    for case in report["cases"]:
        assert case["chunks"] >= 3, case["name"]


def test_a_paragraph_is_piper_s_sentences_back_to_back(report):
    paragraph = next(c for c in report["cases"] if c["name"] == "paragraph")
    assert paragraph["piper_sentences"] == 3


def test_only_piper_s_level_normalisation_differs(report):
    for case in report["cases"]:
        # piper's default output is ours times one gain per sentence, no more
        assert case["normalised_max_err"] < 1e-3, case["name"]
        assert len(case["normalisation_gains"]) == case["piper_sentences"], case["name"]
