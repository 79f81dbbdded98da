"""Where the runner keeps built environments and app trees."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = os.environ.get("TTS_STACK_CACHE") or Path(user_cache) / "tts-stack"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
