"""The optional API key (truss secret `tts_api_key`, tts_common/auth.py), on a
fault-streaming instance served with the secret set; the shared `faults` instance
has it unset and takes requests with no key."""

from __future__ import annotations

import pytest
import requests
from metrics_scrape import requests_total, scrape

BODY = {"text": "x", "chunks": 2, "chunk_ms": 10, "fast": True}


def post(server, headers: dict[str, str], body: dict | None = None) -> requests.Response:
    return requests.post(server.predict_url, json=BODY if body is None else body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Api-Key wrong-key"},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic k-0123456789abcdef"},  # the right key under another scheme
        {"Authorization": "Api-Key"},
    ],
    ids=["none", "wrong-api-key", "wrong-bearer", "other-scheme", "empty"],
)
def test_missing_or_wrong_key_gets_401_json_before_any_work(faults_with_key, headers):
    before = scrape(faults_with_key)
    # Invalid too: the key is checked before the body is even read.
    r = post(faults_with_key, {**headers, "X-Request-Id": "auth-check-1"}, {"chunks": 0})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["field"] == "authorization" and answer["request_id"] == "auth-check-1"
    assert "Authorization: Api-Key <key>" in answer["error"] and "Bearer <key>" in answer["error"]
    assert r.headers["x-request-id"] == "auth-check-1"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert faults_with_key.api_key not in r.text
    after = scrape(faults_with_key)
    assert requests_total(after, "unauthorized", 401) - requests_total(before, "unauthorized", 401) == 1
    assert requests_total(after, "rejected", 422) == requests_total(before, "rejected", 422)


@pytest.mark.parametrize("scheme", ["Api-Key", "Bearer", "bearer"])
def test_the_right_key_streams(faults_with_key, scheme):
    r = post(faults_with_key, {"Authorization": f"{scheme} {faults_with_key.api_key}"})
    assert r.status_code == 200
    assert len(r.content) == 2 * 24000 * 20 // 1000  # two 10 ms chunks, PCM16 at 24 kHz


def test_readiness_and_metrics_stay_open(faults_with_key):
    assert requests.get(f"{faults_with_key.base_url}/v1/models/model", timeout=10).status_code == 200
    assert requests.get(f"{faults_with_key.base_url}/metrics", timeout=10).status_code == 200


def test_no_key_configured_checks_nothing(faults):
    assert post(faults, {}).status_code == 200
    assert post(faults, {"Authorization": "Api-Key anything"}).status_code == 200
