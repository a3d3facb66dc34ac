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

# The benchmarks.
bench:
    bash benches/bench.sh
