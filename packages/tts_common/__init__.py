"""Shared code of the TTS Trusses: the serving core (synthesis.py), the engine
interface, the HTTP and WebSocket transports over them, the request contract and
realtime protocol, text planning, audio encoding and settings. Bundled into each
Truss through `external_package_dirs`."""
