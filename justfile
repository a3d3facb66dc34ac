# Shortcuts for the commands the README gives. Each recipe only calls those commands, so
# nothing depends on `just` being installed.

# Install PostgreSQL if needed, then fmt check, clippy and every test; arguments go to cargo test.
test *ARGS:
    tools/test.sh {{ARGS}}

# Formatting check and clippy, as the test command runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The guided demo against a throwaway server.
demo:
    cargo run --release -- demo

# The benchmark (README, Performance); e.g. `just bench --scale 30 --docs-mb 300 --chunk-kib 16,32`.
bench *ARGS:
    cargo build --release
    cargo run --release -p pgvault --example bench -- {{ARGS}}
