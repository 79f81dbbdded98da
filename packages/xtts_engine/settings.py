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
    # Concurrent streams' GPT steps run as one batch (step_batching.py); a lone stream
    # is unaffected. None: on CUDA only (on two CPU cores batched and unbatched came out
    # level, bench/xtts_concurrency.py).
    batch_steps: bool | None = None
    # Voice used when a request names none ("": the first voice found).
    default_voice: str = ""
    # Cloned voices (reference clips) kept in the speaker cache.
    max_cloned_voices: int = Field(64, ge=1)
    # xtts-realtime's voice.add: whose voices are whose. "caller": one namespace per API
    # key presented, else per session; "session": per session always; "shared": one
    # namespace for every caller (a single-tenant deployment).
    voice_scope: Literal["caller", "session", "shared"] = "caller"
    # Uploaded voices per namespace, and how long one lives unused (seconds).
    max_voices_per_caller: int = Field(8, ge=1)
    voice_ttl_s: float = Field(3600.0, gt=0)
    # A local checkpoint directory, used instead of Truss's weights cache.
    model_dir: Path | None = None
    # Reference clips cloned at load, a voice per WAV named by its file
    # (None: the Truss's data/speakers).
    speakers_dir: Path | None = None

    _ENV: ClassVar[dict[str, str]] = {
        "deepspeed": "XTTS_DEEPSPEED",
        "half": "XTTS_HALF",
        "stream_decoder": "XTTS_STREAM_DECODER",
        "batch_steps": "XTTS_BATCH_STEPS",
        "model_dir": "XTTS_MODEL_DIR",
        "speakers_dir": "XTTS_SPEAKERS_DIR",
        "voice_scope": "XTTS_VOICE_SCOPE",
        "max_voices_per_caller": "XTTS_MAX_VOICES_PER_CALLER",
        "voice_ttl_s": "XTTS_VOICE_TTL_S",
    }
    _METADATA: ClassVar[tuple[str, ...]] = ("default_voice", "max_cloned_voices")

    lower_words = field_validator("stream_decoder", "voice_scope", mode="before")(lower)
