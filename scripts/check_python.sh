#!/usr/bin/env bash
# Before anything is installed: is there a Python 3.11+ that can create a virtual environment with pip in it?
# Usage: scripts/check_python.sh [PYTHON]   (default python3; `make PYTHON=python3.12 ...` passes another)
set -u
PYTHON="${1:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: '$PYTHON' is not on PATH. Install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)," >&2
  echo "       or name one: make PYTHON=/path/to/python3.12 ..." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  found="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo unknown)"
  echo "error: $PYTHON is Python $found; this project needs 3.11 or newer (pyproject.toml requires-python)." >&2
  echo "       Install one (Debian 12: apt-get install python3.11 python3.11-venv) and run: make PYTHON=python3.11 ..." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  echo "error: $PYTHON cannot create a virtual environment with pip (the venv or ensurepip module is missing)." >&2
  echo "       Debian/Ubuntu: apt-get install python3-venv (or python${version}-venv), then run make again." >&2
  exit 1
fi
echo "$("$PYTHON" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])') at $(command -v "$PYTHON"): OK (3.11+, venv and ensurepip)"
