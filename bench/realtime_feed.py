"""An LLM-like feed through the LiveKit plugin's `stream()`: one word every 40 ms, replies
of three sentences, over the WebSocket (piper-realtime) and over HTTP per sentence
(piper-streaming), alternating, in one run.

    .venv-agent/bin/python bench/realtime_feed.py [--replies 20] [--word-ms 40]

Needs .venv-agent (scripts/setup_agent_env) and .venv (scripts/setup): it serves both
Trusses itself with `local_truss` on free ports. One TTS per transport for the whole run,
as an agent holds one (the WebSocket is parked and reused between replies).

Per reply it records when each sentence's last word was pushed, when each emitted frame
reached the caller (what the agent's audio output gets), and where each sentence starts
in that audio (the plugin's debug record of each unit's first audio). From these:

- first audio: from the first word pushed to the first frame;
- sentence latency: from a sentence's last word pushed to the frame holding its first
  audio (negative when the server started the sentence at a clause break before its
  end had arrived); the first sentence's is the headline (target p50 <= 150 ms);
- boundary slack: a real-time player starts at the first frame and plays on; at each
  sentence boundary, how long before the player runs out of the previous sentence's
  audio the next sentence's first frame arrived (negative: an audible gap that long);
- underruns: every time the player ran dry after it started, anywhere in the reply.

Each figure is a median (p50) and p95 over all replies. Writes
bench/results/realtime_feed.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from livekit.agents import APIConnectOptions
from livekit.plugins import custom_tts

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from machine import machine_facts  # noqa: E402
from stats import summary  # noqa: E402

sys.path.insert(0, str(REPO))
from local_truss.process import ServedTruss  # noqa: E402

logger = logging.getLogger("realtime_feed")

REPLIES = [
    [
        "Sure, I can help you with that right away.",
        "The weather today is sunny with a light breeze from the west.",
        "You might want to bring sunglasses if you go outside this afternoon.",
    ],
    [
        "Your order has shipped and should arrive on Thursday.",
        "The courier will leave it at the front door unless you ask otherwise.",
        "Is there anything else I can do for you today?",
    ],
    [
        "That is a great question about the history of the city.",
        "It was founded on the river more than eight hundred years ago.",
        "Most of the old town was rebuilt after a large fire.",
    ],
]
NO_RETRY = APIConnectOptions(max_retry=0, timeout=30)
MODES = ("websocket", "http")
PAUSE_S = 0.5  # between one reply's last audio played and the next reply's first word


class UnitLog(logging.Handler):
    """Collects the plugin's per-unit records (custom_tts.log.unit_started)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.units: list[tuple[int | None, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "unit_offset_s"):
            self.units.append((getattr(record, "unit_words", None), record.unit_offset_s))


@dataclass
class Reply:
    last_word_at: list[float] = field(default_factory=list)  # per sentence
    frames: list[tuple[float, float]] = field(default_factory=list)  # (arrival, seconds)
    units: list[tuple[int | None, float]] = field(default_factory=list)  # (words, offset)
    started: float = 0.0


async def run_reply(tts: custom_tts.TTS, sentences: list[str], word_s: float, units: UnitLog) -> Reply:
    reply = Reply()
    units.units = reply.units
    stream = tts.stream(conn_options=NO_RETRY)

    async def feed() -> None:
        reply.started = time.monotonic()
        k = 0
        for sentence in sentences:
            for word in sentence.split():
                # On a fixed schedule, so a slow push does not slow the feed.
                await asyncio.sleep(max(0.0, reply.started + k * word_s - time.monotonic()))
                stream.push_text(word if k == 0 else " " + word)
                k += 1
            reply.last_word_at.append(time.monotonic())
        stream.end_input()

    feeding = asyncio.create_task(feed())
    try:
        async for ev in stream:
            reply.frames.append((time.monotonic(), ev.frame.duration))
    finally:
        await stream.aclose()
    await feeding
    return reply


def sentence_offsets(sentences: list[str], units: list[tuple[int | None, float]]) -> list[float]:
    """Where each sentence starts in the reply's audio: the unit that starts at its first
    word (a unit is a sentence, or a clause the server started early)."""
    starts, at = {}, 0
    for words, offset in units:
        if words is None:
            raise SystemExit("the server's audio.start carries no text: cannot place sentences")
        starts[at] = offset
        at += words
    offsets, at = [], 0
    for sentence in sentences:
        if at not in starts:
            raise SystemExit(f"no unit starts at word {at}: units {units}")
        offsets.append(starts[at])
        at += len(sentence.split())
    return offsets


def analyse(reply: Reply, sentences: list[str]) -> dict[str, Any]:
    # The player: starts at the first frame, plays each frame once it has it and the
    # one before has finished.
    plays: list[tuple[float, float, float]] = []  # (audio offset, arrival, playback end)
    offset, end = 0.0, reply.frames[0][0]
    underruns: list[float] = []
    for arrival, seconds in reply.frames:
        if arrival > end:
            underruns.append(arrival - end)
        plays.append((offset, arrival, end))  # `end`: when the audio before it ran out
        end = max(arrival, end) + seconds
        offset += seconds

    def frame_at(audio_offset: float) -> tuple[float, float, float]:
        # The frame holding that point of the audio (frames are contiguous).
        holding = [p for p in plays if p[0] <= audio_offset + 1e-6]
        return holding[-1]

    offsets = sentence_offsets(sentences, reply.units)
    latency, slack = [], []
    for i, sentence_offset in enumerate(offsets):
        _, arrival, ran_out = frame_at(sentence_offset)
        latency.append(arrival - reply.last_word_at[i])
        if i:
            slack.append(ran_out - arrival)
    return {
        "first_audio": reply.frames[0][0] - reply.started,
        "latency": latency,
        "slack": slack,
        "underruns": underruns,
        "audio_s": offset,
        "played_until": end,
    }


async def measure(
    urls: dict[str, str], replies: int, warmup: int, word_s: float
) -> dict[str, list[dict[str, Any]]]:
    units = UnitLog()
    plugin_log = logging.getLogger("livekit.plugins.custom_tts")
    plugin_log.addHandler(units)
    plugin_log.setLevel(logging.DEBUG)
    plugin_log.propagate = False
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    async with aiohttp.ClientSession() as session:
        tts = {mode: custom_tts.TTS(api_url=urls[mode], http_session=session) for mode in MODES}
        try:
            for n in range(warmup + replies):
                sentences = REPLIES[n % len(REPLIES)]
                # Alternate which goes first, so drift and a warm CPU hit both alike.
                for mode in MODES if n % 2 else reversed(MODES):
                    reply = await run_reply(tts[mode], sentences, word_s, units)
                    analysed = analyse(reply, sentences)
                    if n >= warmup:
                        results[mode].append(analysed)
                    # As in a conversation, the next reply comes once this one has been
                    # heard (and the user has answered): a server pacing its audio
                    # against the listener's playback sees what an agent would cause.
                    await asyncio.sleep(max(0.0, analysed["played_until"] - time.monotonic()) + PAUSE_S)
        finally:
            for t in tts.values():
                await t.aclose()
    return results


def ms(values: list[float]) -> dict[str, float]:
    return {k: (1000 * v if k != "n" else v) for k, v in summary(values).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=12, help="replies measured per transport")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--word-ms", type=float, default=40.0, help="one word every this many ms")
    args = parser.parse_args()
    if args.replies < 5:
        parser.error("--replies must be at least 5")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    logger.info("starting piper-realtime and piper-streaming ...")
    with ServedTruss("piper-realtime") as realtime, ServedTruss("piper-streaming") as streaming:
        urls = {"websocket": realtime.base_url.replace("http://", "ws://", 1), "http": streaming.base_url}
        raw = asyncio.run(measure(urls, args.replies, args.warmup, args.word_ms / 1000))

    table: dict[str, dict[str, Any]] = {}
    for mode, rows in raw.items():
        slack = [s for r in rows for s in r["slack"]]
        underruns = [u for r in rows for u in r["underruns"]]
        table[mode] = {
            "replies": len(rows),
            "first_audio_ms": ms([r["first_audio"] for r in rows]),
            "first_sentence_latency_ms": ms([r["latency"][0] for r in rows]),
            "sentence_latency_ms": ms([x for r in rows for x in r["latency"]]),
            "later_sentence_latency_ms": ms([x for r in rows for x in r["latency"][1:]]),
            "boundary_slack_ms": ms(slack),
            "boundaries_with_gap": sum(s < 0 for s in slack),
            "boundaries": len(slack),
            "underruns": len(underruns),
            "underrun_ms_total": 1000 * sum(underruns),
            "audio_s_per_reply": summary([r["audio_s"] for r in rows]),
        }

    print(
        f"\nLLM-like feed (one word every {args.word_ms:g} ms, 3 sentences a reply), "
        f"{args.replies} replies per transport, through custom_tts stream(); p50 / p95 ms"
    )
    rows_out = [
        ("first word pushed -> first audio", "first_audio_ms"),
        ("1st sentence: last word -> its first audio", "first_sentence_latency_ms"),
        ("2nd/3rd sentence: last word -> first audio *", "later_sentence_latency_ms"),
        ("boundary slack (negative = gap)", "boundary_slack_ms"),
    ]
    print(f"{'':<46}{'websocket':>20}{'http':>20}")
    for name, key in rows_out:
        cells = [f"{table[m][key]['p50']:.0f} / {table[m][key]['p95']:.0f}" for m in MODES]
        print(f"{name:<46}{cells[0]:>20}{cells[1]:>20}")
    for name, key in (("boundaries with a gap", "boundaries_with_gap"), ("player underruns", "underruns")):
        cells = [str(table[m][key]) for m in MODES]
        print(f"{name:<46}{cells[0]:>20}{cells[1]:>20}")
    # The boundary slack's low tail is what a listener hears: report its worst too.
    print(
        f"{'boundary slack, worst':<46}"
        + "".join(f"{table[m]['boundary_slack_ms']['min']:>20.0f}" for m in MODES)
    )
    print("* paced, not slow: those sentences are not needed until the one before has played")

    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "realtime_feed.json").write_text(
        json.dumps(
            {
                "command": "bench/realtime_feed.py " + " ".join(sys.argv[1:]),
                "machine": machine_facts(),
                "word_ms": args.word_ms,
                "replies": REPLIES,
                "modes": table,
                "first_sentence_p50_http_minus_websocket_ms": table["http"]["first_sentence_latency_ms"][
                    "p50"
                ]
                - table["websocket"]["first_sentence_latency_ms"]["p50"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
