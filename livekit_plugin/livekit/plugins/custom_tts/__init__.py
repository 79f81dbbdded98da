"""LiveKit Agents TTS plugin for self-hosted streaming TTS Trusses.

Talks to any Truss that speaks the repository's streaming contract (chunked raw
PCM over HTTP) or the realtime Trusses' WebSocket protocol, served locally with
`local_truss` or deployed on Baseten.
"""

from .models import TTSOptions
from .tts import TTS, ChunkedStream, SynthesizeStream, predict_url, websocket_url
from .version import __version__

__all__ = [
    "TTS",
    "TTSOptions",
    "ChunkedStream",
    "SynthesizeStream",
    "predict_url",
    "websocket_url",
    "__version__",
]

from livekit.agents import Plugin

from .log import logger


class CustomTTSPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(CustomTTSPlugin())

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
