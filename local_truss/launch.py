"""Runs the container's entrypoint (/app/main.py) with uvicorn bound to a chosen host.

truss's server binds 0.0.0.0, as a container should; on a workstation the runner
binds 127.0.0.1 unless told otherwise. Executed by the Truss environment's python
with the app directory as working directory.
"""

import os
import runpy
import sys
from typing import Any

import uvicorn

_HOST = os.environ["LOCAL_TRUSS_HOST"]
_config_init = uvicorn.Config.__init__


def _bind_host(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    kwargs["host"] = _HOST
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _bind_host
# `python /app/main.py` puts /app first on sys.path; run_path does not.
sys.path.insert(0, os.getcwd())
runpy.run_path("main.py", run_name="__main__")
