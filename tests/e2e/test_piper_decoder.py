"""piper-streaming runs each sentence's flow and decoder in chunks
(packages/piper_engine/chunked_vits.py): proven on the real en_US-joe-medium voice
against the shipped one-shot graph; and its opt-in int8 stages (piper_engine/int8.py)
against the float32 ones and against themselves in one piece.

tests/tools/piper_decoder_check.py runs once in the Truss's environment and reports; these
tests assert on the report (correctness only, never wall-clock).
"""

import pytest
from conftest import REPO
from reports import run_report

SNR_FLOOR_DB = 90.0  # measured ~120 dB: float rounding


@pytest.fixture(scope="module")
def report(piper_python):
    return run_report(str(piper_python), str(REPO / "tests/tools/piper_decoder_check.py"))


def schedules(report):
    for case in report["cases"]:
        for schedule in case["schedules"]:
            yield case, schedule


def test_the_voice_graph_splits_at_its_decoder(report):
    assert report["streams"]
    for case in report["cases"]:
        # prior, flow and decoder in one piece each are the shipped graph up to float
        # rounding: the decoder's convolutions run 2-D (piper_engine/conv2d.py)
        assert case["split_equals_graph_max_err"] < 1e-5, case["name"]
        assert case["split_snr_db"] >= SNR_FLOOR_DB, case["name"]
        # a run on two threads (a stream alone) gives the same audio
        assert case["two_threads_max_err"] < 1e-4, case["name"]


def test_no_stage_run_spans_more_than_its_limit(report):
    """A whole sentence in one decode still runs each stage in bounded pieces, so
    a run's activations (which onnxruntime's arena keeps) stay bounded."""
    limit = report["constants"]["max_run_positions"]
    scale = 1
    for stage in report["stages"]:
        for case in report["cases"]:
            runs = case["one_shot_runs"][stage["name"]]
            assert max(runs) <= limit, (case["name"], stage["name"], runs)
            positions = case["frames"] * scale  # the stage's whole input
            if positions <= limit:
                assert runs == [positions], (case["name"], stage["name"], runs)
            else:
                assert len(runs) >= -(-positions // limit), (case["name"], stage["name"], runs)
        scale *= stage["ratio"]


def test_the_graph_is_cut_between_flow_layers_and_decoder_stages(report):
    names = [stage["name"] for stage in report["stages"]]
    # the voice's four coupling layers, its three upsampling stages
    assert names == [f"flow.{i}" for i in range(4)] + [f"decoder.{i}" for i in range(3)]
    ratios = [stage["ratio"] for stage in report["stages"]]
    assert ratios == [1, 1, 1, 1, 8, 8, 4]  # 256 samples a frame
    # the decoder's stages run as 2-D convolutions (piper_engine/conv2d.py), the flow's not
    assert [stage["two_d"] for stage in report["stages"]] == [False] * 4 + [True] * 3


def test_contexts_cover_the_receptive_fields_of_real_values(report):
    fields = report["receptive_fields"]
    for stage in report["stages"]:
        field = fields[stage["name"]]
        assert field["ratio"] == stage["ratio"], stage
        assert 0 < field["left"] < stage["context"], stage
        assert 0 < field["right"] < stage["context"], stage


def test_chunks_join_to_the_one_shot_decode(report):
    for case, schedule in schedules(report):
        label = (case["name"], schedule["first"])
        assert schedule["length"] == case["graph_length"], label
        assert sum(schedule["chunk_samples"]) == case["graph_length"], label
        assert schedule["snr_db"] >= SNR_FLOOR_DB, label
        assert schedule["max_err"] < 1e-4, label


def test_no_seams(report):
    for _case, schedule in schedules(report):
        # the step across each seam is the one-shot signal's own step there
        assert abs(schedule["seam_jump_max"] - schedule["graph_jump_at_seams_max"]) < 1e-4


def test_too_little_context_shows(report):
    for case in report["cases"]:
        assert case["flow_context_1_snr_db"] < SNR_FLOOR_DB / 2, case["name"]
        assert case["decoder_context_1_snr_db"] < SNR_FLOOR_DB / 2, case["name"]


def test_a_sentence_starts_small_and_streams_in_several_chunks(report):
    constants = report["constants"]
    sentence = next(c for c in report["cases"] if c["name"] == "sentence")
    default = next(s for s in sentence["schedules"] if s["first"] == constants["first"])
    sizes = [b - a for a, b in default["plan"]]
    assert len(sizes) >= 3
    assert sizes[0] == constants["first"]
    assert sizes[0] < sizes[1] and max(sizes) <= constants["largest"] + constants["smallest_last"]
    assert sizes[-1] >= constants["smallest_last"]


def test_int8_stages_are_the_flow_and_the_decoder_but_its_last(report):
    """`PIPER_INT8`: the engine's int8 stages (piper_engine/int8.py), built as it loads."""
    stages = report["int8"]["stages"]
    assert [name for name, int8 in stages.items() if int8] == list(stages)[:-1]
    assert not any(s.get("int8") for s in report["stages"])  # the default stays float32


def test_int8_audio_differs_from_float32_by_quantization_noise_only(report):
    for case in report["int8"]["cases"]:
        # the prior stays float32: the same durations, the same length
        assert case["length"] == case["graph_length"], case["name"]
        # different audio (int8 ran), its log spectrum within a few dB of float32's
        # (measured 4.8 to 5.7 dB; a quantized last stage was 9 to 13 dB off)
        assert case["snr_db_to_float32"] < SNR_FLOOR_DB / 2, case["name"]
        assert 0 < case["log_spectrum_mad_db_to_float32"] < 7.5, case["name"]


def test_int8_chunks_join_to_its_one_shot_decode(report):
    for case in report["int8"]["cases"]:
        assert case["chunked_snr_db"] >= SNR_FLOOR_DB, case["name"]
        assert case["two_threads_snr_db"] >= 60.0, case["name"]
