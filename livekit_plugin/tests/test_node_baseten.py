"""LiveKit's Node.js Baseten plugin (`@livekit/agents-plugin-baseten` 1.3.0 from npm),
unchanged, against the real piper-streaming Truss: it POSTs Baseten's default TTS shape
(`{prompt, voice, language, temperature, max_tokens}`) and reads 24 kHz PCM. The
Node project (tests/node: package.json, package-lock.json, speak.mjs) is installed
with `npm ci` into the cache on first use; skipped, saying why, where Node is absent."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from local_truss.paths import cache_dir

PROJECT = Path(__file__).resolve().parent / "node"
FILES = ("package.json", "package-lock.json", "speak.mjs")


@pytest.fixture(scope="module")
def node_project() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: LiveKit's Node plugin cannot run here")
    digest = hashlib.sha256(b"".join((PROJECT / f).read_bytes() for f in FILES)).hexdigest()[:16]
    where = cache_dir() / "node" / f"baseten-{digest}"
    if not (where / "node_modules" / "@livekit" / "agents-plugin-baseten").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(PROJECT / name, where / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=where, check=True, timeout=600)
    return where


def speak(project: Path, endpoint: str, voice: str, text: str) -> dict:
    run = subprocess.run(
        ["node", "speak.mjs", endpoint, voice, text], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_node_plugin_speaks_with_our_voice(node_project, piper):
    got = speak(node_project, piper.predict_url, "en_US-joe-medium", "Hello from a Node agent.")
    assert got["rate"] == 24000 and got["samples"] > 24000 and not got["errors"], got


def test_the_node_plugin_hears_a_clear_error_for_its_default_voice(node_project, piper):
    got = speak(node_project, piper.predict_url, "tara", "Hello.")
    assert got["samples"] == 0 and got["errors"], got
    assert "422" in got["errors"][0] and "unknown voice 'tara'" in got["errors"][0], got
