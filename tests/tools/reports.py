"""Running a check script in a Truss's environment and reading its report."""

import json
import subprocess
from typing import Any


def run_report(*argv: object) -> dict[str, Any]:
    """Run `argv` (a Truss environment's python, a script, its arguments) and parse
    the JSON object the script prints on its last line."""
    out = subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report
