"""What truss hands a Model's `__init__`, read once: its config, settings and key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .auth import api_key
from .settings import ServingSettings
from .synthesis import SynthesisCore, serving_core


@dataclass(frozen=True)
class TrussContext:
    config: Mapping[str, Any]
    metadata: Mapping[str, Any]
    serving: ServingSettings
    api_key: str | None
    data_dir: Path
    lazy_data: Any

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> TrussContext:
        """From the keyword arguments truss passes to `Model(**kwargs)`; a bad
        setting fails here, at startup, naming its variable."""
        config = kwargs["config"]
        metadata = config.get("model_metadata") or {}
        return cls(
            config,
            metadata,
            ServingSettings.load(metadata),
            api_key(kwargs.get("secrets")),
            Path(kwargs.get("data_dir") or "data"),
            kwargs.get("lazy_data_resolver"),
        )

    @property
    def model_name(self) -> str:
        return str(self.config["model_name"])

    @property
    def weights_dir(self) -> Path:
        """Where config.yaml's first `weights` entry is mounted."""
        return Path(self.config["weights"][0]["mount_location"])

    def core(self, behind: Callable[[], float] | None = None) -> SynthesisCore:
        """The serving core, admitting by load when the model measures how far `behind` it is."""
        return serving_core(self.serving, self.model_name, behind)
