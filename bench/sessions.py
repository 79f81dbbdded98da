"""Voice-agent sessions against one replica: how many fit with first audio p95
<= 300 ms, no playback stall and no error. Against piper-streaming and, in the
same run, piper's own HTTP server (`python -m piper.http_server`, same voice);
or against xtts-streaming (`--target xtts`: the tiny random checkpoint here, so
that the figure exists as soon as a GPU does).

The load, per level (4, 8, 12, ... sessions at once):
- sessions arrive at random moments over the first 2 s;
- each session has 3 turns; a turn is one agent reply of 1 to 3 sentences;
- a player starts once it holds 100 ms of audio, plays in real time, and reads
  at most 2 s ahead of what it has played (so a streaming server feels the
  backpressure of a real listener); a stall is the player running dry before the
  reply's audio has all arrived (gaps under 10 ms are not counted);
- after a reply has played out, 1 s of caller speech, then the next turn.
First audio is the time from sending the request to its first audio bytes. An
error is anything but a whole 200 (a 503, a cut stream, a timeout). A level
passes when every turn succeeded, first audio p95 <= 300 ms and nothing stalled.
Each level is bounded (--level-limit-s: turns not done by then count as
errors), so the whole run stays within about 10 minutes on 2 cores.

After the levels, fairness: four real-time players stream 5000 characters each
while a fifth client asks for one short reply, --fairness-repeats times, 1 s
apart: the fifth's first audio p50 / p95 (target: within 300 ms).

    .venv/bin/python bench/sessions.py [--levels 4 8 12 16 20 24] [--target piper|xtts]
        [--baseline PATH] [--int8]

`--baseline` serves another checkout's piper-streaming too, after this one's, in the
same run: a before / after on the same machine in the same hour (this machine's speed
drifts from day to day). `--int8` serves this one's with `PIPER_INT8=1` too (int8
stages: packages/piper_engine/int8.py).

Writes bench/results/sessions[_xtts].json and .png (first audio p95 and stalls
against sessions, each server) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from machine import machine_facts  # noqa: E402
from piper_streaming import start_piper_http_server  # noqa: E402
from stats import summary  # noqa: E402

from local_truss.paths import cache_dir  # noqa: E402
from local_truss.server import LocalTrussServer  # noqa: E402

ARRIVAL_S = 2.0
TURNS = 3
PREBUFFER_S = 0.1
READ_AHEAD_S = 2.0
CALLER_SPEECH_S = 1.0
STALL_TOLERANCE_S = 0.01
FIRST_AUDIO_BUDGET_S = 0.3
REQUEST_TIMEOUT_S = 30.0
READ_BYTES = 4096
# Fairness: four long streams and a fifth client's short requests, this far apart.
FAIRNESS_LONG_TEXT = ("The quick brown fox jumps over the lazy dog, and keeps on running. " * 80)[:5000]
FAIRNESS_GAP_S = 1.0
# Agent replies are 1 to 3 of these, drawn per turn (seeded).
SENTENCES = [
    "Sure, I can help you with that.",
    "Your order shipped this morning and should arrive on Thursday.",
    "Let me check the schedule for next week.",
    "The earliest appointment I can offer is Tuesday at ten thirty.",
    "I have updated your address in our records.",
    "Is there anything else I can do for you today?",
    "That payment went through on the third of the month.",
    "I'm sorry about the wait, and thank you for your patience.",
    "Could you confirm the last four digits of your card?",
    "Your current balance is forty two dollars and fifteen cents.",
    "I've sent a confirmation to the email address on file.",
    "The store on Main Street is open until nine tonight.",
]


@dataclass
class Target:
    """One server under load: where to post, what to send, how to count its audio."""

    name: str
    url: str
    bytes_per_s: float
    header_bytes: int = 0  # a WAV answer's header
    body: dict = field(default_factory=dict)


@dataclass
class Turn:
    first_audio_s: float | None = None
    stalls: int = 0
    stall_s: float = 0.0
    stalled_at_s: list[float] = field(default_factory=list)  # reply audio played when dry
    audio_s: float = 0.0
    error: str | None = None
    ends_playing_at: float = 0.0  # wall time the reply has played out


class Player:
    """A real-time player fed by one response: prebuffer, then playback at
    real-time speed; it runs dry (a stall) when audio comes too late, and
    resumes as soon as more arrives."""

    def __init__(self) -> None:
        self.received_s = 0.0
        self.origin: float | None = None  # wall time of position `position_s`
        self.position_s = 0.0
        self.stalls = 0
        self.stall_s = 0.0
        self.stalled_at_s: list[float] = []

    def played(self, now: float) -> float:
        if self.origin is None:
            return 0.0
        return min(self.received_s, self.position_s + now - self.origin)

    def arrive(self, now: float, seconds: float) -> None:
        if self.origin is not None:
            dry_at = self.origin + self.received_s - self.position_s
            if now > dry_at + STALL_TOLERANCE_S:
                self.stalls += 1
                self.stall_s += now - dry_at
                self.stalled_at_s.append(self.received_s)
                self.origin, self.position_s = now, self.received_s
        self.received_s += seconds
        if self.origin is None and self.received_s >= PREBUFFER_S:
            self.origin = now

    def end(self, now: float) -> float:
        """All audio is in: when the player will have played it out."""
        if self.origin is None:
            self.origin, self.position_s = now, 0.0
        return self.origin + self.received_s - self.position_s


def play_turn(http: requests.Session, target: Target, text: str, stop_at: float = float("inf")) -> Turn:
    """One reply, played; cut (an error) once the level's time is up at `stop_at`."""
    turn, player = Turn(), Player()
    sent = time.perf_counter()
    header = target.header_bytes
    # a read waits at most until the level's time is up
    read_timeout = max(1.0, min(REQUEST_TIMEOUT_S, stop_at - sent))
    try:
        with http.post(
            target.url, json={**target.body, "text": text}, stream=True, timeout=(5.0, read_timeout)
        ) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}"
                return turn
            for chunk in response.iter_content(chunk_size=READ_BYTES):
                now = time.perf_counter()
                if now > stop_at:
                    turn.error = "level time limit"
                    return turn
                audio = chunk[header:]
                header = max(0, header - len(chunk))
                if not audio:
                    continue
                if turn.first_audio_s is None:
                    turn.first_audio_s = now - sent
                player.arrive(now, len(audio) / target.bytes_per_s)
                # read at most READ_AHEAD_S ahead of playback: the server waits meanwhile
                ahead = player.received_s - player.played(now)
                if ahead > READ_AHEAD_S:
                    time.sleep(ahead - READ_AHEAD_S)
    except requests.RequestException as exc:
        turn.error = "level time limit" if time.perf_counter() > stop_at else type(exc).__name__
        return turn
    if player.received_s == 0:
        turn.error = "no audio"
        return turn
    turn.stalls, turn.stall_s, turn.audio_s = player.stalls, player.stall_s, player.received_s
    turn.stalled_at_s = player.stalled_at_s
    turn.ends_playing_at = player.end(time.perf_counter())
    return turn


def run_session(target: Target, seed: int, start_at: float, stop_at: float, out: list[Turn]) -> None:
    rng = random.Random(seed)
    time.sleep(max(0.0, start_at - time.perf_counter()))
    with requests.Session() as http:
        for _ in range(TURNS):
            if time.perf_counter() > stop_at:
                out.append(Turn(error="level time limit"))
                continue
            text = " ".join(rng.sample(SENTENCES, rng.randint(1, 3)))
            turn = play_turn(http, target, text, stop_at)
            out.append(turn)
            # the reply plays out, then the caller speaks
            time.sleep(max(0.0, turn.ends_playing_at - time.perf_counter()) + CALLER_SPEECH_S)


def run_level(target: Target, sessions: int, seed: int, limit_s: float) -> dict:
    rng = random.Random(seed)
    started = time.perf_counter()
    stop_at = started + limit_s
    results: list[list[Turn]] = [[] for _ in range(sessions)]
    threads = [
        threading.Thread(
            target=run_session,
            args=(target, seed * 1000 + i, started + rng.uniform(0, ARRIVAL_S), stop_at, results[i]),
            daemon=True,
        )
        for i in range(sessions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # every turn ends by stop_at, give or take a read
        thread.join(max(0.0, stop_at + 10.0 - time.perf_counter()))
    turns = [t for session in results for t in session]
    turns += [Turn(error="session unfinished")] * (sessions * TURNS - len(turns))
    ok = [t for t in turns if t.error is None]
    errors: dict[str, int] = {}
    for t in turns:
        if t.error is not None:
            errors[t.error] = errors.get(t.error, 0) + 1
    first = summary([t.first_audio_s * 1000 for t in ok if t.first_audio_s is not None]) if ok else None
    stalled_turns = sum(1 for t in ok if t.stalls)
    return {
        "sessions": sessions,
        "turns": len(turns),
        "first_audio_ms": first,
        "stalled_turns": stalled_turns,
        "stalls": sum(t.stalls for t in ok),
        "stall_ms_total": round(sum(t.stall_s for t in ok) * 1000, 1),
        # where in their reply players ran dry (seconds of its audio played)
        "stalled_at_s": sorted(round(at, 2) for t in ok for at in t.stalled_at_s),
        "errors": errors,
        "audio_s": round(sum(t.audio_s for t in ok), 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "passed": not errors
        and stalled_turns == 0
        and first is not None
        and first["p95"] <= FIRST_AUDIO_BUDGET_S * 1000,
    }


def fairness(target: Target, repeats: int) -> dict:
    """Four real-time players streaming 5000 characters each while a fifth client
    asks for one short reply, `repeats` times: the fifth's first audio."""
    long_s = 4.0 + repeats * FAIRNESS_GAP_S * 2
    stop_at = time.perf_counter() + long_s
    longs: list[Turn] = []

    def long_stream() -> None:
        with requests.Session() as http:
            longs.append(play_turn(http, target, FAIRNESS_LONG_TEXT, stop_at))

    threads = [threading.Thread(target=long_stream, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)  # the four are streaming
    short: list[Turn] = []
    with requests.Session() as http:
        for _ in range(repeats):
            if time.perf_counter() > stop_at - FAIRNESS_GAP_S:
                break
            short.append(play_turn(http, target, SENTENCES[1], stop_at))
            time.sleep(FAIRNESS_GAP_S)
    for thread in threads:
        thread.join(max(0.0, stop_at + 10.0 - time.perf_counter()))
    ok = [t.first_audio_s * 1000 for t in short if t.error is None and t.first_audio_s is not None]
    return {
        "short_first_audio_ms": summary(ok) if ok else None,
        "short_errors": sum(1 for t in short if t.error is not None),
        "short_requests": len(short),
        # the long streams end cut at the time limit: that is not counted
        "long_stalled": sum(1 for t in longs if t.stalls),
        "long_errors": sum(1 for t in longs if t.error not in (None, "level time limit")),
    }


def run_target(target: Target, levels: list[int], seed: int, limit_s: float, fairness_repeats: int) -> dict:
    with requests.Session() as http:  # warm-up
        play_turn(http, target, SENTENCES[0])

    rows = []
    for level in levels:
        row = run_level(target, level, seed + level, limit_s)
        rows.append(row)
        fa = row["first_audio_ms"]
        print(
            f"{target.name} {level:3d} sessions: first audio p95 "
            f"{fa['p95'] if fa else float('nan'):.0f} ms, {row['stalled_turns']} stalled turns, "
            f"errors {row['errors'] or 0}, {row['wall_s']} s",
            file=sys.stderr,
        )
        time.sleep(2)  # let the server go idle between levels
    # last: piper.http_server goes on synthesizing a long text whose client left
    fair = fairness(target, fairness_repeats) if fairness_repeats else None
    passing = [r["sessions"] for r in rows if r["passed"]]
    return {"levels": rows, "largest_passing": max(passing) if passing else 0, "fairness": fair}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_first, ax_stalls) = plt.subplots(1, 2, figsize=(10, 4))
    for (name, result), style in zip(results["targets"].items(), ("-o", "--s", ":^"), strict=False):
        rows = result["levels"]
        x = [r["sessions"] for r in rows]
        p95 = [r["first_audio_ms"]["p95"] if r["first_audio_ms"] else float("nan") for r in rows]
        ax_first.plot(x, p95, style, label=f"{name} (passes up to {result['largest_passing']})")
        ax_stalls.plot(x, [r["stalled_turns"] for r in rows], style, label=f"{name}: stalled turns")
        ax_stalls.plot(
            x, [sum(r["errors"].values()) for r in rows], style, alpha=0.4, label=f"{name}: errors"
        )
    ax_first.axhline(FIRST_AUDIO_BUDGET_S * 1000, color="grey", lw=0.8)
    ax_first.set_yscale("log")
    ax_first.set(xlabel="concurrent sessions", ylabel="first audio p95 (ms, log)", xticks=results["levels"])
    ax_stalls.set(
        xlabel="concurrent sessions",
        ylabel=f"turns (of {TURNS} per session) stalled / failed",
        xticks=results["levels"],
    )
    ax_first.legend(fontsize=7)
    ax_stalls.legend(fontsize=7)
    fig.suptitle(
        f"voice-agent sessions on {results['machine']['cpus']} CPUs: {TURNS} turns each, "
        f"players {PREBUFFER_S * 1000:.0f} ms prebuffer, at most {READ_AHEAD_S:g} s ahead"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tiny_xtts_checkpoint() -> Path:
    python = LocalTrussServer(REPO / "xtts-streaming").prepare()
    checkpoint = cache_dir() / "models" / "tiny-xtts"
    subprocess.run([str(python), str(REPO / "tests/fixtures/tiny_xtts.py"), str(checkpoint)], check=True)
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 8, 12, 16, 20, 24])
    parser.add_argument("--target", choices=["piper", "xtts"], default="piper")
    parser.add_argument("--level-limit-s", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--fairness-repeats", type=int, default=10, help="short requests beside four long streams (0: skip)"
    )
    parser.add_argument("--port", type=int, default=8191)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose piper-streaming is measured too, in the same run (before / after)",
    )
    parser.add_argument("--int8", action="store_true", help="piper-streaming with PIPER_INT8=1 too")
    args = parser.parse_args()

    results: dict = {
        "machine": machine_facts(),
        "levels": args.levels,
        "load": {
            "arrival_s": ARRIVAL_S,
            "turns": TURNS,
            "sentences_per_turn": [1, 3],
            "prebuffer_s": PREBUFFER_S,
            "read_ahead_s": READ_AHEAD_S,
            "caller_speech_s": CALLER_SPEECH_S,
            "stall_tolerance_s": STALL_TOLERANCE_S,
        },
        "targets": {},
    }
    log = REPO / "bench" / "results" / f"sessions-{args.target}-server.log"
    if args.target == "xtts":
        server = LocalTrussServer(
            REPO / "xtts-streaming",
            port=args.port,
            log_path=log,
            extra_env={"XTTS_MODEL_DIR": str(tiny_xtts_checkpoint())},
        )
        with server:
            target = Target("xtts-streaming (tiny, CPU)", server.predict_url, 2 * 24000)
            results["targets"][target.name] = run_target(
                target, args.levels, args.seed, args.level_limit_s, args.fairness_repeats
            )
        stem = "sessions_xtts"
    else:
        trees: dict[str, tuple[Path, dict[str, str]]] = {"piper-streaming": (REPO, {})}
        if args.int8:
            trees["piper-streaming, PIPER_INT8=1"] = (REPO, {"PIPER_INT8": "1"})
        if args.baseline is not None:
            rev = subprocess.run(
                ["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            trees[f"piper-streaming at {rev}"] = (args.baseline.resolve(), {})
        for name, (tree, env) in trees.items():
            with LocalTrussServer(
                tree / "piper-streaming", port=args.port, log_path=log, extra_env=env
            ) as server:
                target = Target(name, server.predict_url, 2 * 24000)
                results["targets"][target.name] = run_target(
                    target, args.levels, args.seed, args.level_limit_s, args.fairness_repeats
                )
        http_server = start_piper_http_server(args.port + 1)
        try:
            target = Target(
                "piper.http_server",
                f"http://127.0.0.1:{args.port + 1}/synthesize",
                2 * 22050,
                header_bytes=44,
            )
            results["targets"][target.name] = run_target(
                target, args.levels, args.seed, args.level_limit_s, args.fairness_repeats
            )
        finally:
            http_server.kill()
            http_server.wait()
        stem = "sessions"
    results["machine"]["load_avg_after"] = machine_facts()["load_avg"]
    out = REPO / "bench" / "results" / f"{stem}.json"
    out.write_text(json.dumps(results, indent=2))
    plot(results, REPO / "bench" / "results" / f"{stem}.png")
    m = results["machine"]
    print(
        f"\nvoice-agent sessions, {m['cpus']} CPUs, load average {m['load_avg'][0]:.1f} before, "
        f"{m['load_avg_after'][0]:.1f} after"
    )
    print(
        "| server | sessions | turns | first audio p50 / p95 / max (ms) | stalled turns | errors | passes |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, result in results["targets"].items():
        for r in result["levels"]:
            fa = r["first_audio_ms"]
            first = f"{fa['p50']:.0f} / {fa['p95']:.0f} / {fa['max']:.0f}" if fa else "-"
            errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
            print(
                f"| {name} | {r['sessions']} | {r['turns']} | {first} | {r['stalled_turns']} "
                f"| {errors} | {'yes' if r['passed'] else 'no'} |"
            )
    for name, result in results["targets"].items():
        print(f"{name}: largest passing level {result['largest_passing']} sessions")
        fair = result["fairness"]
        if fair and fair["short_first_audio_ms"]:
            f = fair["short_first_audio_ms"]
            print(
                f"{name}: beside four 5000-character streams, a short request's first audio "
                f"{f['p50']:.0f} / {f['p95']:.0f} / {f['max']:.0f} ms (p50 / p95 / max of "
                f"{fair['short_requests']}, {fair['short_errors']} errors); long streams stalled: "
                f"{fair['long_stalled']} of 4"
            )
    print(f"\nraw results: {out.relative_to(REPO)}; plot: bench/results/{stem}.png")


if __name__ == "__main__":
    main()
