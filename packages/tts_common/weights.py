"""Where a Truss's model files are: a local directory, or Truss's weights cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def checkpoint_dir(local: Path | None, weights_dir: Path, lazy_data: Any | None) -> Path:
    """`local` (a setting, for local runs) when given; else the mounted weights, once downloaded."""
    if local is not None:
        return local
    if lazy_data is not None:
        lazy_data.block_until_download_complete()
    return weights_dir
