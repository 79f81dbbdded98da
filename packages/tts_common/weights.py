"""Where a Truss's model files are: a local directory, or Truss's weights cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def checkpoint_dir(local_env_var: str, weights_dir: Path, lazy_data: Any | None) -> Path:
    """`$local_env_var` for local runs; else the mounted weights, once downloaded."""
    local = os.environ.get(local_env_var)
    if local:
        return Path(local)
    if lazy_data is not None:
        lazy_data.block_until_download_complete()
    return weights_dir
