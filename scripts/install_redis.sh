#!/usr/bin/env bash
# Install Debian/Ubuntu's redis-server (the pool's tests and demo start their own on a free loopback port).
set -euo pipefail
if command -v redis-server >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # The package may start a system service on 6379; the pool does not need it.
else
  echo "redis-server is not installed and apt-get is unavailable: install Redis 7 and retry" >&2
  exit 1
fi
redis-server --version
