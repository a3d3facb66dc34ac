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

# Microsoft's Python SDK for the Data Protection API, from the Python package index, into a
# virtual environment of its own in the cache folder (never the system's Python). The REST API
# conformance test (tests/e2e/sdk.rs) drives `pgvault serve` with it through
# tests/sdk/walkthrough.py and finds it through PGVAULT_PYTHON. Exact versions: a new SDK
# release changes what the test checks, so moving to one is a deliberate edit here.
python_dir=${PGVAULT_PYTHON_DIR:-$HOME/.cache/pgvault/python}
python_bin=$python_dir/bin/python
python_sdk=(azure-mgmt-dataprotection==2.2.0 azure-mgmt-core==1.6.0 azure-core==1.41.0)
step "looking for Microsoft's Python SDK (${python_sdk[*]}) in $python_dir"
sdk_installed() {
    local requirement
    [[ -x $python_bin ]] || return 1
    for requirement in "${python_sdk[@]}"; do
        [[ $("$python_bin" -m pip show "${requirement%%==*}" 2>/dev/null | sed -n 's/^Version: //p') == "${requirement##*==}" ]] || return 1
    done
}
if ! sdk_installed; then
    command -v python3 >/dev/null 2>&1 || die "the REST API conformance test needs Python 3 (3.9 or newer) with venv and pip; install them (sudo apt-get install python3 python3-venv), or make a virtual environment with ${python_sdk[*]} and set PGVAULT_PYTHON_DIR to it"
    if [[ ! -x $python_bin ]]; then
        step "creating a Python virtual environment in $python_dir (python3 -m venv)"
        python3 -m venv "$python_dir" || die "python3 -m venv $python_dir failed (see above): Debian and Ubuntu ship venv and pip separately; install them (sudo apt-get install python3-venv python3-pip), delete $python_dir and run this again"
    fi
    "$python_bin" -m pip --version >/dev/null 2>&1 || die "the virtual environment in $python_dir has no pip (python3-venv missing when it was made); install python3-venv (sudo apt-get install python3-venv), delete $python_dir and run this again"
    step "installing ${python_sdk[*]} into $python_dir with pip"
    "$python_bin" -m pip install --quiet --disable-pip-version-check "${python_sdk[@]}" || die "pip could not install ${python_sdk[*]} into $python_dir (see its message above); it needs access to the Python package index (pypi.org) or a mirror set in PIP_INDEX_URL"
    sdk_installed || die "pip installed ${python_sdk[*]} but $python_dir does not report those versions; delete $python_dir and run this again"
fi
export PGVAULT_PYTHON=$python_bin
step "using Python $("$python_bin" -c 'import sys; print(sys.version.split()[0])') with the SDK from $python_dir"

# A real browser for the console's end-to-end test: Debian's Chromium and ChromeDriver (a
# browser a test tool downloads itself is refused on machines without internet access).
chromium_bin=${PGVAULT_CHROMIUM:-/usr/bin/chromium}
chromedriver_bin=${PGVAULT_CHROMEDRIVER:-/usr/bin/chromedriver}
step "looking for Chromium ($chromium_bin) and ChromeDriver ($chromedriver_bin)"
if [[ ! -x $chromium_bin || ! -x $chromedriver_bin ]]; then
    command -v apt-get >/dev/null 2>&1 || die "the console's browser test needs Chromium and ChromeDriver; install them, and set PGVAULT_CHROMIUM and PGVAULT_CHROMEDRIVER to their paths"
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    step "installing Debian's chromium and chromium-driver with apt-get"
    $sudo apt-get install -y -q chromium chromium-driver >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null; } || die "apt-get could not install chromium and chromium-driver (see above)"
    [[ -x $chromium_bin && -x $chromedriver_bin ]] || die "chromium and chromium-driver are installed but $chromium_bin or $chromedriver_bin is missing; set PGVAULT_CHROMIUM and PGVAULT_CHROMEDRIVER"
fi
export PGVAULT_CHROMIUM=$chromium_bin PGVAULT_CHROMEDRIVER=$chromedriver_bin
step "using $("$chromium_bin" --version 2>/dev/null | head -1) with $("$chromedriver_bin" --version | cut -d' ' -f1-2)"

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
