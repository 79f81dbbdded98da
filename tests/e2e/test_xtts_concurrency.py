"""Several XTTS streams at once on one shared model (packages/xtts_engine/stream_state.py):
each stream's audio is what it is alone with the same seed. With their GPT steps batched
(packages/xtts_engine/step_batching.py, the default on a GPU, on here): the same tokens (chunks of the same
lengths) and the same samples up to float rounding (SNR_FLOOR_DB); without: sample for sample.

tests/tools/xtts_concurrency_check.py runs the Truss's adapter in-process (precise comparison,
both decoders, 2 and 4 streams, built-in and cloned voices); the last test does the same
over real HTTP against the served Truss.
"""

import base64
import threading
import time

import pytest
import requests
from audio_checks import pcm16, snr_db, tone, wav_b64
from conftest import REPO
from reports import run_report
from xtts_reference import TEXT

SNR_FLOOR_DB = 60.0  # batched steps against the same stream alone


@pytest.fixture(scope="module")
def report(xtts_python, xtts_checkpoint):
    return run_report(
        str(xtts_python), str(REPO / "tests/tools/xtts_concurrency_check.py"), str(xtts_checkpoint)
    )


@pytest.mark.parametrize("decoder", ["incremental", "stock"])
@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_streams_equal_their_alone_runs(report, decoder, n):
    runs = report["decoders"][decoder]
    assert runs["alone_errors"] == [None] * 4
    assert min(runs["alone_chunks"]) >= 2  # streamed, not one chunk
    assert runs["alone_all_differ"]  # a stream can only match its own output
    case = runs[f"together_{n}"]
    assert case["errors"] == [None] * n
    assert case["overlapped"], case  # all n were producing audio at the same time
    assert report["batching"]  # on in the check, as on a GPU
    # some steps ran in batches of several streams ...
    assert any(int(size) > 1 for size in case["batches"]), case["batches"]
    # ... and each stream's audio is its own alone: same tokens, float rounding apart
    assert all(snr is not None and snr >= SNR_FLOOR_DB for snr in case["snr_db"]), case["snr_db"]


@pytest.mark.parametrize("decoder", ["incremental", "stock"])
def test_unbatched_concurrent_streams_equal_their_alone_runs_exactly(report, decoder):
    case = report["decoders"][decoder]["together_4_unbatched"]
    assert case["errors"] == [None] * 4
    assert case["overlapped"], case
    assert case["batches"] == {}
    assert case["exact"] == [True] * 4


def test_control_streams_on_one_shared_model_object_mix(report):
    """Without per-stream state (the shared model's prefix and torch's global RNG), the
    same two overlapping streams do not reproduce their alone runs: the check can fail."""
    control = report["shared_model_control"]
    assert control["overlapped"] or any(control["errors"]), control
    assert not all(control["exact"]) or any(control["errors"])


def test_served_concurrent_streams_equal_their_alone_runs(xtts):
    """Over HTTP, 4 slots: built-in and cloned voices at once, each its alone run's audio."""
    joe = base64.b64encode((REPO / "xtts-streaming/data/speakers/joe.wav").read_bytes()).decode()
    bodies = [
        {"voice": "Tiny Speaker A", "seed": 31},
        {"speaker_wav": joe, "seed": 32},
        {"voice": "Tiny Speaker B", "seed": 33},
        {"speaker_wav": wav_b64(tone(2.0, 22050), 22050), "seed": 34},
    ]

    def synth(body, out=None, start=0.0):
        times, data = [], b""
        with requests.post(xtts.predict_url, json={"text": TEXT, **body}, stream=True, timeout=300) as r:
            assert r.status_code == 200, r.text
            for chunk in r.iter_content(chunk_size=None):
                times.append(time.perf_counter() - start)
                data += chunk
        if out is not None:
            out.update(data=data, times=times)
        return data

    alone = [synth(b) for b in bodies]
    assert len(set(alone)) == len(alone)
    outs = [{} for _ in bodies]
    start = time.perf_counter()
    threads = [threading.Thread(target=synth, args=(b, o, start)) for b, o in zip(bodies, outs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, own in zip([o.get("data") for o in outs], alone, strict=True):
        assert got is not None and len(got) == len(own)  # the same tokens
        assert snr_db(pcm16(own), pcm16(got)) >= SNR_FLOOR_DB  # batched steps: float rounding
    # in flight together: every response had bytes out before any ended
    assert max(o["times"][0] for o in outs) < min(o["times"][-1] for o in outs)
