"""The incremental XTTS streaming decoder (packages/xtts_engine/streaming_decode.py) is the
one-shot decode, chunked: proven on the tiny checkpoint (tiny GPT, real XTTS-v2 HiFi-GAN).

tests/tools/xtts_decoder_check.py runs once in the Truss's environment and reports; these tests
assert on the report (correctness only, never wall-clock), and one compares the served
default path with an in-process run of the same code.
"""

import pytest
import requests
from conftest import REPO
from reports import run_report
from xtts_reference import TEXT, VOICE, in_process_pcm

SNR_FLOOR_DB = 90.0  # ours measures ~140 dB (float rounding); stock inference_stream ~50-60 dB
FLOAT_NOISE_DB = 120.0  # "as close as" up to float rounding (stock is bit-exact when it decodes once)


@pytest.fixture(scope="module")
def report(xtts_python, xtts_checkpoint):
    return run_report(str(xtts_python), str(REPO / "tests/tools/xtts_decoder_check.py"), str(xtts_checkpoint))


def cases(report):
    return {c["name"]: c for c in report["cases"]}


def test_margins_cover_the_measured_receptive_field(report):
    field, consts = report["receptive_field"], report["constants"]
    # Perturbation and layer arithmetic agree on the real generator...
    assert field["generator_frames_left"] == field["architecture"]["frames_left"]
    assert field["generator_frames_right"] == field["architecture"]["frames_right"]
    # ...and the margins cover it.
    assert consts["left_context_frames"] >= field["generator_frames_left"]
    assert consts["right_margin_frames"] >= field["generator_frames_right"]


def test_decode_schedule_small_first_chunk_then_stream_chunk_size(report):
    points = report["decode_points"]
    assert points["20,8"] == [8, 28, 48, 68, 88]
    assert points["20,None"] == [20, 40, 60, 80, 100]  # stock's schedule
    assert points["5,8"] == [5, 10, 15, 20, 25]  # the first chunk is never larger than the others
    assert points["40,8"] == [8, 48, 88, 128, 168]
    assert points["0,8"] == []  # no streaming: decode at the end only, as stock
    for case in report["cases"]:
        assert case["ours"]["chunks"] >= 1


def test_ours_at_least_as_close_to_one_shot_as_stock(report):
    for case in report["cases"]:
        ours, stock = case["ours"]["snr_db"], case["stock"]["snr_db"]
        assert ours >= min(stock, FLOAT_NOISE_DB), case["name"]
        assert ours >= SNR_FLOOR_DB, case["name"]


def test_lengths_equal_the_one_shot_decode(report):
    for case in report["cases"]:
        assert case["ours"]["length"] == case["full_length"], case["name"]
        assert sum(case["ours"]["chunk_samples"]) == case["full_length"], case["name"]


def test_chunks_are_in_order_back_to_back(report):
    """Each chunk equals the one-shot decode at its offset: nothing reordered, lost or repeated."""
    for case in report["cases"]:
        assert case["ours"]["per_chunk_max_err"] < 1e-4, case["name"]
        assert all(n > 0 for n in case["ours"]["chunk_samples"]), case["name"]


def test_no_seams(report):
    for case in report["cases"]:
        seams = case["ours"]["seams"]
        assert seams["boundary_jump_max"] <= seams["signal_jump_max"], case["name"]
        assert seams["boundary_jump_dev_max"] < 1e-4, case["name"]
        assert seams["err_near_boundaries_max"] < 1e-4, case["name"]


def test_a_long_sentence_streams_in_several_chunks(report):
    case = cases(report)["60 tokens"]
    assert case["decode_points"] == [8, 28, 48]
    assert case["ours"]["chunks"] == 4
    assert case["ours"]["chunk_samples"][0] < case["ours"]["chunk_samples"][1]  # small first chunk


def test_streamed_chunks_are_what_the_generators_yield(report):
    """Same seed: Xtts.inference_stream yields exactly the stock loop on recorded latents, and
    inference_stream_incremental exactly IncrementalDecoder on them (so the GPT call, its RNG
    use and the schedule are inference_stream's), at speed 1 and 1.3."""
    e2e = report["end_to_end"]
    assert e2e["stock_equals_inference_stream"]
    assert e2e["ours_equals_inference_stream_incremental"]
    assert e2e["ours_speed_1_3_equals_inference_stream_incremental"]
    assert len(e2e["ours_chunk_samples"]) >= 2
    assert sum(e2e["ours_chunk_samples"]) == sum(e2e["stock_chunk_samples"])


def test_speed_near_one_applies_the_stretch_throughout(report):
    """F.interpolate skips a stretch that does not change the length (T < speed/(1-speed)
    tokens); once streaming has begun the stretch is applied as asked, seamlessly."""
    case = report["speed_near_one"]
    assert case["ours"]["length"] == case["full_length"]
    assert case["ours_vs_always_stretched_snr_db"] >= SNR_FLOOR_DB


def test_full_margins_are_needed_for_exactness(report):
    sweep = {row["right"]: row for row in report["margin_sweep"]}
    assert all(row["length_ok"] for row in sweep.values())
    assert sweep[13]["snr_db"] >= SNR_FLOOR_DB
    assert sweep[2]["snr_db"] < sweep[13]["snr_db"]


def test_served_default_bytes_equal_in_process_incremental_stream(
    xtts, xtts_python, xtts_checkpoint, tmp_path
):
    served = requests.post(xtts.predict_url, json={"text": TEXT, "voice": VOICE, "seed": 7}, timeout=300)
    assert served.status_code == 200, served.text
    reference, chunks = in_process_pcm(
        xtts_python, xtts_checkpoint, tmp_path / "reference.pcm", 7, "incremental"
    )
    assert chunks >= 3
    assert served.content == reference
