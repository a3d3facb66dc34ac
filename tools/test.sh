#!/usr/bin/env bash
# The test command: what CI runs (.ci/run), what `just test` runs, and what a developer runs in
# a clean clone. It makes sure the PostgreSQL server binaries are installed (the tests start
# their own throwaway server from them, see crates/testkit) and that Azurite, the Azure Storage
# emulator, is installed (the Blob Storage tests start their own), then checks formatting, runs
# clippy and runs every test. Arguments go on to `cargo test`, e.g. `tools/test.sh -p pgvault-core`.
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Where initdb lives, found the way crates/testkit finds it: pg_config, then the newest
# Debian/Ubuntu versioned directory, then PATH.
find_server_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n $dir && -x $dir/initdb ]]; then echo "$dir"; return 0; fi
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb ]]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

install_postgresql() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "PostgreSQL server binaries (initdb) not found and there is no apt-get here; install the PostgreSQL server packages, or set PGVAULT_TEST_DATABASE_URL and install initdb anyway for the tests that start their own server."
    fi
    if [[ $(id -u) -ne 0 ]] && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
        die "PostgreSQL server binaries (initdb) not found, and installing them needs root or passwordless sudo. Install them yourself: sudo apt-get install postgresql"
    fi
    step "installing the PostgreSQL server packages with apt-get (postgresql)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null

    # The tests start their own servers; Debian's package may have created and started a
    # cluster of its own. Stop it and keep it from starting at boot.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local version name port status rest
        while read -r version name port status rest; do
            step "disabling the distribution's cluster $version/$name (the tests start their own)"
            if [[ $status == online* ]]; then
                as_root pg_ctlcluster "$version" "$name" stop </dev/null || true
            fi
            echo manual | as_root tee "/etc/postgresql/$version/$name/start.conf" >/dev/null
        done < <(pg_lsclusters --no-header 2>/dev/null)
    fi
}

step "looking for the PostgreSQL server binaries"
if ! bindir=$(find_server_bindir); then
    install_postgresql
    bindir=$(find_server_bindir) || die "installed postgresql but still cannot find initdb"
fi
step "using PostgreSQL from $bindir ($("$bindir/postgres" --version))"

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
