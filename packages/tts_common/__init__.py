"""Shared code of the streaming TTS Trusses: the request contract, text splitting,
audio encoding and the streaming/admission machinery. Bundled into each Truss
through `external_package_dirs`."""
