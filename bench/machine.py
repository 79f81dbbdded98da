"""What every benchmark records and builds beside its measurements: the machine's
facts, and cached environments for tools that must not share the test environment."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


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
    import json

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
