"""The same synthesis the piper-streaming Truss does, in-process, no server.

Run by bench/piper_streaming.py with the Truss's own environment and app tree:
it imports the Truss's model.py, so the text plan, the voice and the encoder are
exactly those served. Prints one JSON line per request.
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

sys.path.insert(0, ".")  # the app directory
from model.model import Model, PiperRequest  # noqa: E402
from tts_common.audio import StreamEncoder  # noqa: E402


def one(model: Model, text: str) -> dict:
    start = time.perf_counter()
    req = PiperRequest(text=text)
    synthesis = model.prepare(req)
    encoder = StreamEncoder(synthesis.model_rate, req.output_rate, req.format)
    first = None
    size = 0
    for chunk in synthesis.chunks(threading.Event()):
        data = encoder.encode(chunk)
        if data and first is None:
            first = time.perf_counter() - start
        size += len(data)
    size += len(encoder.finish())
    total = time.perf_counter() - start
    return {"ttfa": first, "total": total, "audio_s": size / 2 / req.output_rate}


def main() -> None:
    text, concurrency, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = yaml.safe_load(open("config.yaml"))
    model = Model(config=config)
    model.load()
    for _ in range(2):
        one(model, text)  # warm-up, as the served runs get
    with ThreadPoolExecutor(concurrency) as pool:
        for result in pool.map(lambda _: one(model, text), range(count)):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
