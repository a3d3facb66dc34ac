#!/usr/bin/env bash
# The test command: what CI runs (.ci/run), what `just test` runs, and what a developer runs in
# a clean clone. It makes sure the PostgreSQL server binaries are installed (the tests start
# their own throwaway server from them, see crates/testkit) and that Azurite, the Azure Storage
# emulator, is installed (the Blob Storage tests start their own), then checks formatting, runs
# clippy and runs every test. Arguments go on to `cargo test`, e.g. `tools/test.sh -p pgvault-core`.
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=tools/postgresql.sh
source tools/postgresql.sh
ensure_postgresql

# Azurite from the npm registry, into a cache folder of its own (never a global install).
# The tests start it on a free port (crates/testkit/src/azurite.rs) and find it through
# PGVAULT_AZURITE_BIN.
azurite_dir=${PGVAULT_AZURITE_DIR:-$HOME/.cache/pgvault/azurite}
azurite_bin=$azurite_dir/node_modules/.bin/azurite-blob
step "looking for Azurite (the Azure Storage emulator) in $azurite_dir"
if [[ ! -x $azurite_bin ]]; then
    command -v npm >/dev/null 2>&1 || die "Azurite is needed for the Blob Storage tests and npm is not installed; install Node.js and npm (sudo apt-get install npm), or install azurite and set PGVAULT_AZURITE_BIN to its azurite-blob"
    step "installing Azurite with npm into $azurite_dir (npm install azurite@3)"
    mkdir -p "$azurite_dir"
    npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error azurite@3 >/dev/null
    [[ -x $azurite_bin ]] || die "npm installed azurite but $azurite_bin is missing"
fi
export PGVAULT_AZURITE_BIN=$azurite_bin
step "using Azurite from $azurite_bin ($("$azurite_bin" --version))"

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt and cargo clippy are needed; install rustfmt and clippy"
    step "installing rustfmt and clippy with rustup"
    rustup component add rustfmt clippy
fi

step "checking formatting (cargo fmt --all -- --check)"
cargo fmt --all -- --check

step "linting (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "running the tests (cargo test --workspace${*:+ $*})"
cargo test --workspace "$@"

step "all checks passed"
