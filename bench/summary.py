"""The headline figures of the last bench/run, from bench/results/*.json, as one
short table: each a median (p50) with p95 where it has one, and each comparison a
ratio measured within one run."""

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def piper_rows(piper: dict) -> list[tuple[str, str, str]]:
    cells = {(c["text"], c["concurrency"]): c for c in piper["cells"]}
    rows = []
    one = cells.get(("sentence", 1))
    if one:
        s, h, i = one["served"], one["piper_http"], one["in_process"]
        rows.append(
            (
                "piper-streaming, test sentence, 1 stream: first audio (HTTP)",
                f"{s['ttfa_ms']['p50']:.0f} / {s['ttfa_ms']['p95']:.0f} ms",
                "target p50 <= 50 ms",
            )
        )
        rows.append(
            (
                "  vs piper.http_server, same voice and text: first audio",
                f"{s['ttfa_ms']['p50'] / h['ttfa_ms']['p50']:.2f}x ({h['ttfa_ms']['p50']:.0f} ms)",
                "target <= 0.35x at p50",
            )
        )
        rows.append(
            (
                "  vs piper.http_server: total time",
                f"{s['total_ms']['p50'] / h['total_ms']['p50']:.2f}x",
                "ratio at p50",
            )
        )
        rows.append(
            (
                "  served vs in-process: first audio",
                f"{s['ttfa_ms']['p50'] / i['ttfa_ms']['p50']:.2f}x",
                "server overhead",
            )
        )
    top = max(piper["concurrency"])
    for text in ("sentence", "paragraph"):
        cell = cells.get((text, top))
        if cell:
            s = cell["served"]
            rows.append(
                (
                    f"piper-streaming, {text}, {top} streams: first audio",
                    f"{s['ttfa_ms']['p50']:.0f} / {s['ttfa_ms']['p95']:.0f} ms",
                    "target p95 < 300 ms",
                )
            )
            rows.append(
                (
                    "  real-time factor per stream (p50 / worst)",
                    f"{s['rtf']['p50']:.2f} / {s['rtf']['max']:.2f}",
                    "target < 1 for each",
                )
            )
            rows.append(("  playback stalls", f"{s['stalled']} of {s['rtf']['n']}", "streams that ran dry"))
    return rows


def openai_rows(surface: dict) -> list[tuple[str, str, str]]:
    first = surface["first_audio_ms"]
    rows = [
        (
            f"piper-openai /v1/audio/speech {fmt}: first audio vs our contract's pcm",
            f"{first[f'openai {fmt}']['first_audio_minus_contract_ms']:+.0f} ms "
            f"({first[f'openai {fmt}']['first_audio']['p50']:.0f} ms)",
            target,
        )
        for fmt, target in (
            ("pcm", "target within 10 ms"),
            ("opus", "target within a frame (20 ms) + 10 ms"),
            ("mp3", "target within a frame (24 ms) + 10 ms"),
        )
    ]
    cpu = surface["encoder_cpu_ms_per_audio_s"]
    rows.append(
        (
            "  encoder CPU per audio second, opus / mp3",
            f"{cpu['opus']['added_ms_per_audio_s']:.1f} / {cpu['mp3']['added_ms_per_audio_s']:.1f} ms",
            "added over pcm, one thread",
        )
    )
    return rows


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    piper = load("piper_streaming")
    if piper:
        rows += piper_rows(piper)
    cost = load("piper_cpu_cost")
    if cost:
        for text in ("sentence", "paragraph"):
            streamed, whole = cost["cells"][f"{text}: streamed"], cost["cells"][f"{text}: whole, 1 thread"]
            rows.append(
                (
                    f"piper-streaming CPU per audio s vs piper whole (1 thread), {text}",
                    f"{streamed['cpu_per_audio_s']['p50'] / whole['cpu_per_audio_s']['p50']:.2f}x",
                    "process CPU time; target <= 1.15x",
                )
            )
            for kind in ("", ", int8"):
                eight = cost["cells"].get(f"{text}: 8 streams at once{kind}")
                if eight:
                    rows.append(
                        (
                            f"piper-streaming{kind} CPU per audio s at 8 streams vs piper whole, {text}",
                            f"{eight['cpu_per_audio_s']['p50'] / whole['cpu_per_audio_s']['p50']:.2f}x",
                            "process CPU time of 8 streams at once on 2 lanes; target <= 0.75x",
                        )
                    )
    surface = load("openai_surface")
    if surface:
        rows += openai_rows(surface)
    sessions = load("sessions")
    if sessions:
        for name, result in sessions["targets"].items():
            top = result["levels"][-1]
            first = top["first_audio_ms"]
            rows.append(
                (
                    f"voice-agent sessions, {name}: largest passing level",
                    f"{result['largest_passing']} sessions",
                    "p95 first audio <= 300 ms, no stall, no error; target >= 32",
                )
            )
            rows.append(
                (
                    f"  at {top['sessions']} sessions: first audio p95, stalled turns, errors",
                    f"{first['p95'] if first else float('nan'):.0f} ms, {top['stalled_turns']}, "
                    f"{sum(top['errors'].values())}",
                    f"of {top['turns']} turns",
                )
            )
            fair = result.get("fairness")
            if fair and fair["short_first_audio_ms"]:
                rows.append(
                    (
                        "  beside four 5000-character streams: a short request's first audio",
                        f"{fair['short_first_audio_ms']['p50']:.0f} / "
                        f"{fair['short_first_audio_ms']['p95']:.0f} ms",
                        "target within 300 ms",
                    )
                )
    wer = load("piper_intelligibility")
    if wer:
        w = wer["wer"]
        rows.append(
            (
                "piper-streaming word error rate (Whisper base), pooled",
                f"{100 * w['served']['whisper']:.1f}% vs {100 * w['piper_whole']['whisper']:.1f}%",
                "served vs piper whole; target within 0.3 points",
            )
        )
        if "served_int8" in w:
            rows.append(
                (
                    "  with PIPER_INT8=1",
                    f"{100 * w['served_int8']['whisper']:.1f}%",
                    "int8 stages served; target within the renditions' spread",
                )
            )
        for variant, ratio in wer["audio_length_ratio_over_whole"].items():
            rows.append((f"  audio length, {variant} vs piper whole", f"{ratio:.4f}x", "target within 1%"))
    plugin = load("plugin_overhead")
    if plugin:
        r = plugin["ratio_plugin_over_direct"]
        rows.append(
            (
                "LiveKit plugin first frame vs direct HTTP first byte",
                f"{r['p50']:.2f}x / {r['p95']:.2f}x",
                "p50 / p95",
            )
        )
    feed = load("realtime_feed")
    if feed:
        ws, http = feed["modes"]["websocket"], feed["modes"]["http"]
        first_ws, first_http = ws["first_sentence_latency_ms"], http["first_sentence_latency_ms"]
        rows.append(
            (
                f"LLM feed ({feed['word_ms']:g} ms/word), 1st sentence's last word -> its audio, WebSocket",
                f"{first_ws['p50']:.0f} / {first_ws['p95']:.0f} ms",
                "target p50 <= 150 ms",
            )
        )
        rows.append(
            (
                "  same feed, HTTP per sentence",
                f"{first_http['p50']:.0f} / {first_http['p95']:.0f} ms",
                "same run",
            )
        )
        rows.append(
            (
                "  sentence boundaries with a gap, WebSocket / HTTP",
                f"{ws['boundaries_with_gap']} / {http['boundaries_with_gap']} of {ws['boundaries']}",
                "next audio after the last ran out",
            )
        )
    xtts = load("xtts_streaming")
    if xtts:
        longest = xtts["in_process"][-1]
        rows.append(
            (
                f"XTTS total time, stock / ours, {longest['length_tokens']} tokens (tiny model, CPU)",
                f"{longest['total_ratio_stock_over_ours']['p50']:.2f}x",
                "stock inference_stream over ours",
            )
        )
        rows.append(
            (
                "XTTS first chunk, stock / ours",
                f"{longest['ttfa_ratio_stock_over_ours']['p50']:.2f}x",
                "same run",
            )
        )
        served = xtts.get("served_vs_in_process")
        if served:
            ratio = served["served"]["ttfa_ms"]["p50"] / served["in_process"]["ttfa_ms"]["p50"]
            rows.append(("XTTS served vs in-process: first chunk", f"{ratio:.2f}x", "server overhead"))
    conc = load("xtts_concurrency")
    if conc:
        by = {(r["mode"], r["streams"]): r for r in conc["rows"]}
        top = max(n for _, n in by)
        one, shared, instances = by.get(("shared", 1)), by.get(("shared", top)), by.get(("instances", top))
        if one and shared and instances:
            rows.append(
                (
                    f"XTTS {top} streams, shared weights: audio s per s (1 stream: "
                    f"{one['audio_s_per_s']['p50']:.2f})",
                    f"{shared['audio_s_per_s']['p50']:.2f} vs {instances['audio_s_per_s']['p50']:.2f}",
                    "vs one instance per stream (tiny model, CPU)",
                )
            )
            rows.append(
                (
                    "  MB per extra stream, shared vs one instance per stream",
                    f"{shared['mb_per_extra_stream']:.0f} vs {instances['mb_per_extra_stream']:.0f}",
                    "process RSS",
                )
            )
    if not rows:
        raise SystemExit("no results in bench/results: run bench/run first")
    width = max(len(r[0]) for r in rows)
    print(f"\nbench summary ({os.cpu_count()} CPUs, {platform.platform()}); p50 / p95 unless noted")
    for name, figure, note in rows:
        print(f"  {name:<{width}}  {figure:>22}  {note}")
    print("full tables: bench/results/*.log; plots: bench/results/piper_streaming.png, sessions.png")


if __name__ == "__main__":
    main()
