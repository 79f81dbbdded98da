"""What every benchmark records and builds beside its measurements: the machine's
facts, cached environments for tools that must not share the test environment, and
runs of a measurement in a Truss's own environment."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_facts() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg(),
    }


def cached_env(env: Path, *pip_args: str) -> Path:
    """A venv at `env` with `pip install *pip_args`, built once; its python."""
    if not (env / ".complete").exists():
        print(f"building {env.name} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *pip_args], check=True)
        (env / ".complete").write_text("ok\n")
    return env / "bin" / "python"


def measure_in_truss(truss: str, script: str, *args: str) -> Any:
    """Run `script --measure *args` with a Truss's own environment (its model code
    and libraries, in a process of its own); its last line of output, as JSON."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from local_truss.server import truss_python

    out = subprocess.run(
        [str(truss_python(repo / truss)), script, "--measure", *args],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def rounds_in_truss(
    truss: str, script: str, doc: str | None, rounds: int, measure: Callable[[int], Any]
) -> dict[str, Any] | None:
    """A benchmark's command line, `script [--rounds N]`, measured in `truss`'s
    environment: the script runs again there with --measure, prints `measure(N)`
    and gets None. The caller here gets the result, saved with the machine's facts
    as results/<script's name>.json."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.rounds)))
        return None
    measured = measure_in_truss(truss, script, "--rounds", str(args.rounds))
    result = {"machine": machine_facts(), **measured}
    (RESULTS / f"{Path(script).stem}.json").write_text(json.dumps(result, indent=2))
    return result
