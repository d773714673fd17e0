#!/usr/bin/env bash
# Install Debian/Ubuntu packages the tests and demo need (redis-server; chromium for the Flower check; prometheus for
# promtool and the scrape test). Leading options go to apt-get install (e.g. --no-install-recommends).
set -euo pipefail
OPTIONS=()
while [ "$#" -gt 0 ] && [ "${1#--}" != "$1" ]; do OPTIONS+=("$1"); shift; done
[ "$#" -gt 0 ] || { echo "usage: $0 [--apt-option ...] PACKAGE..." >&2; exit 2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null; then
  echo "apt-get is unavailable: install $* yourself and retry" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${OPTIONS[@]}" "$@" >/dev/null
echo "installed: $*"
