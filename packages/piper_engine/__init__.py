"""Piper's synthesis, independent of transport: the voice, its graph cut so it
streams inside a sentence (chunked_vits.py) and the CPU-lane scheduling of its
runs (engine.py). piper-streaming (HTTP) and piper-realtime (WebSocket) both
serve it; bundled into them through `external_package_dirs`."""
