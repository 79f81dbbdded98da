"""XTTS's own knobs, read as every setting is (tts_common.settings)."""

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from tts_common.settings import Settings, lower


class XttsSettings(Settings):
    """The XTTS Trusses' own knobs (environment and model_metadata)."""

    # DeepSpeed inference on CUDA (deepspeed must be in the requirements).
    deepspeed: bool = False
    # fp16 autocast on CUDA.
    half: bool = False
    # "incremental": constant-cost chunk decode; "stock": Xtts.inference_stream.
    stream_decoder: Literal["incremental", "stock"] = "incremental"
    # Voice used when a request names none ("": the first voice found).
    default_voice: str = ""
    # Cloned voices (reference clips) kept in the speaker cache.
    max_cloned_voices: int = Field(64, ge=1)
    # A local checkpoint directory, used instead of Truss's weights cache.
    model_dir: Path | None = None

    _ENV: ClassVar[dict[str, str]] = {
        "deepspeed": "XTTS_DEEPSPEED",
        "half": "XTTS_HALF",
        "stream_decoder": "XTTS_STREAM_DECODER",
        "model_dir": "XTTS_MODEL_DIR",
    }
    _METADATA: ClassVar[tuple[str, ...]] = ("default_voice", "max_cloned_voices")

    lower_decoder = field_validator("stream_decoder", mode="before")(lower)
