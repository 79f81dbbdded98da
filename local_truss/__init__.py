"""Serve a Truss directory locally with truss's real inference server, without Docker.

The container's /app tree is built exactly as truss's own tests do it (the image
build context plus `DockerBuildEmulator`), and the Python environment is installed
from the requirements that build context says the image installs.
"""
