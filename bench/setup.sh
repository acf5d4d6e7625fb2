#!/bin/sh
# Installs what the benchmarks in bench/ need and is not a Python dependency of Lictor:
#   wrk    HTTP load generator (Debian package), used by bench/http/run.py
#   py-spy sampling profiler (pip, into the repo's venv), used by bench/http/run.py --profile
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -eu
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y wrk
fi
wrk -v 2>/dev/null | head -n 1 || true

if [ ! -x .venv/bin/py-spy ]; then
    .venv/bin/pip install py-spy || echo "py-spy not installed: run.py works without it, only --profile needs it" >&2
fi
[ -x .venv/bin/py-spy ] && .venv/bin/py-spy --version || true

# --- bench/raft (Raft writes vs etcd): the anchor, Debian's etcd (3.4.23 on bookworm) ---
# Only the binaries are used; bench/raft/run.py starts its own 3-member cluster on loopback
# (fsync on) and stops it by PID. The package's systemd unit is not needed.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y etcd-server etcd-client
fi
etcd --version 2>/dev/null | head -n 1 || true
