# Sourced by tools/test.sh and tools/demo.sh: finds the PostgreSQL server binaries (initdb,
# postgres, pg_dump, pg_restore, pgbench) and installs them with apt-get when they are missing,
# saying so. Both the tests and the demo start throwaway servers from them (crates/testkit).
# Also gives the sourcing script `step` (say what happens next) and `die`.

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

# Sets `bindir` to the server binaries' folder, installing PostgreSQL first when there is none.
ensure_postgresql() {
    step "looking for the PostgreSQL server binaries"
    if ! bindir=$(find_server_bindir); then
        install_postgresql
        bindir=$(find_server_bindir) || die "installed postgresql but still cannot find initdb"
    fi
    step "using PostgreSQL from $bindir ($("$bindir/postgres" --version))"
}
