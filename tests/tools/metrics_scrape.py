"""Reading a served Truss's /metrics: Prometheus text parsed into samples, and the
counters the tests compare between a scrape before and one after."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests

MODEL = "fault-streaming"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server) -> Samples:
    r = requests.get(server.base_url + "/metrics", timeout=10)
    assert r.status_code == 200
    samples: Samples = {}
    for line in r.text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def value(samples: Samples, name: str, model: str = MODEL, **labels: str) -> float:
    return samples.get((name, frozenset({"model": model, **labels}.items())), 0.0)


def requests_total(samples: Samples, outcome: str, code: int, model: str = MODEL) -> float:
    return value(samples, "tts_requests_total", model, outcome=outcome, code=str(code))


def settled(server, done: Callable[[Samples], bool], timeout_s: float = 10.0) -> Samples:
    """The first scrape where `done` holds: a stream's outcome is counted when
    its body has closed, a moment after the client read the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(server)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)
