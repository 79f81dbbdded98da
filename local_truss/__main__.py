"""python -m local_truss serve TRUSS_DIR [--port 8080] [--host 127.0.0.1]

Serves the Truss in the foreground until interrupted. `prepare` only builds the
environment (used by setup scripts to pay the install cost up front).
"""

import argparse
import logging
import signal
import sys
from pathlib import Path

from .cpu_torch import CpuTorchUnavailable
from .server import LocalTrussServer, truss_python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_truss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["serve", "prepare"])
    parser.add_argument("truss_dir", type=Path)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (the container binds 0.0.0.0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not (args.truss_dir / "config.yaml").is_file():
        parser.error(f"{args.truss_dir} has no config.yaml: not a Truss directory")

    try:
        return _run(args)
    except CpuTorchUnavailable as e:  # says what to do: no traceback
        logging.error("%s", e)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        print(truss_python(args.truss_dir))
        return 0

    server = LocalTrussServer(args.truss_dir, port=args.port, host=args.host)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    assert server.process is not None
    logging.info(
        "serving %s at %s (readiness: GET %s/v1/models/model)",
        args.truss_dir.name,
        server.predict_url,
        server.base_url,
    )
    try:
        return server.process.wait()
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
