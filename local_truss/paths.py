"""Where the runner keeps built environments and app trees."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    root = os.environ.get("TTS_STACK_CACHE") or Path.home() / ".cache" / "tts-stack"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
