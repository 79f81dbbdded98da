"""Coqui XTTS-v2's synthesis, independent of transport: the model and its pinned
voices (engine.py), each stream's own view of the shared weights (stream_state.py)
and the constant-cost chunk decode (streaming_decode.py). xtts-streaming (HTTP)
and xtts-realtime (WebSocket) both serve it."""
