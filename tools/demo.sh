#!/usr/bin/env bash
# The demo command for a fresh machine with Rust and nothing else: makes sure the PostgreSQL
# server binaries are installed (with apt-get, saying so, as the test command does), then
# builds pgvault and runs `pgvault demo`, the walkthrough on a throwaway server. Arguments go on
# to `pgvault demo`, e.g. `tools/demo.sh --scale 2`.
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=tools/postgresql.sh
source tools/postgresql.sh
ensure_postgresql

step "building pgvault and running the demo (cargo run --release -- demo${*:+ $*})"
exec cargo run --release -- demo "$@"
