"""Several XTTS streams at once on one shared model (packages/xtts_engine/stream_state.py):
each stream's audio is exactly what it is alone with the same seed, sample for sample.

tests/tools/xtts_concurrency_check.py runs the Truss's adapter in-process (precise comparison,
both decoders, 2 and 4 streams, built-in and cloned voices); the last test does the same
over real HTTP against the served Truss.
"""

import base64
import threading
import time

import pytest
import requests
from audio_checks import tone, wav_b64
from conftest import REPO
from reports import run_report
from xtts_reference import TEXT


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
    assert case["exact"] == [True] * n


def test_control_streams_on_one_shared_model_object_mix(report):
    """Without per-stream state (the shared model's prefix and torch's global RNG), the
    same two overlapping streams do not reproduce their alone runs: the check can fail."""
    control = report["shared_model_control"]
    assert control["overlapped"] or any(control["errors"]), control
    assert not all(control["exact"]) or any(control["errors"])


def test_served_concurrent_streams_equal_their_alone_runs(xtts):
    """Over HTTP, 4 slots: built-in and cloned voices at once, each byte-identical to alone."""
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
    assert [o.get("data") for o in outs] == alone
    # in flight together: every response had bytes out before any ended
    assert max(o["times"][0] for o in outs) < min(o["times"][-1] for o in outs)
