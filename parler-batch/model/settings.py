"""Parler's own knobs, read as every setting is (tts_common.settings)."""

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from tts_common.settings import Settings, lower


class ParlerSettings(Settings):
    """parler-batch's own knobs (environment and model_metadata); its queue timeout
    and body limit are ServingSettings'."""

    # "auto": bfloat16 on GPUs that have it, float16 on others, float32 on CPU.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # torch.compile the decoder with a static cache; each new batch shape compiles once.
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    # Items one request may carry.
    max_batch_items: int = Field(16, ge=1)
    # Items one generate() call may carry.
    max_generate_batch: int = Field(16, ge=1)
    # Prompts are left-padded to a multiple of this many tokens (reproducible seeds).
    prompt_bucket_tokens: int = Field(32, ge=1)
    # A local checkpoint directory, used instead of Truss's weights cache.
    model_dir: Path | None = None

    _ENV: ClassVar[dict[str, str]] = {
        "dtype": "PARLER_DTYPE",
        "compile": "PARLER_COMPILE",
        "compile_mode": "PARLER_COMPILE_MODE",
        "model_dir": "PARLER_MODEL_DIR",
    }
    _METADATA: ClassVar[tuple[str, ...]] = ("max_batch_items", "max_generate_batch", "prompt_bucket_tokens")

    lower_dtype = field_validator("dtype", mode="before")(lower)
