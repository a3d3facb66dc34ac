//! A test-only fault hook: kill this process at a named step, as `kill -9` would.
//!
//! The fault suite (`tests/faults`) must kill a backup right after a pack is stored, or a
//! restore right after its staging database exists, and then check that nothing is left
//! inconsistent or behind. Sleeping and hoping to hit the step is neither precise nor fast, so
//! the few steps that matter call [`point`] with their name, and a test sets
//! `PGVAULT_FAULT=<name>[:<n>]` on the process it starts: at the `n`-th time (default the
//! first) that step is reached, the process sends itself SIGKILL. No destructor, no `finally`
//! runs, exactly as when an operator or the OOM killer ends it.
//!
//! **Test-only.** It is not documented for users and does nothing unless the variable is set.
//! When it is not, a call costs one read of an initialized static.
//!
//! The points: `pack-stored` (a pack was uploaded), `index-checkpoint` (a checkpoint index file
//! was written), `before-manifest` (every pack and index of a backup is stored, its manifest
//! not yet written), `dump-started` (`pg_dump` is running), `staging-created` (a restore's
//! staging database or partial file exists), `restore-stream` (each write of the restored
//! stream), `restore-staged` (a parallel restore's archive, and its `--use-list` file if any,
//! are staged in the temporary folder, `pg_restore` not yet started), `before-rename` (a restore is complete, not yet renamed to its target),
//! `drill-scratch-created` (a drill's scratch database exists).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the point at which to die.
pub const ENV: &str = "PGVAULT_FAULT";

struct Fault {
    point: String,
    nth: u64,
    hits: AtomicU64,
}

static FAULT: OnceLock<Option<Fault>> = OnceLock::new();

fn configured() -> Option<&'static Fault> {
    FAULT
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (point, nth) = match spec.split_once(':') {
                Some((point, n)) => (point, n.trim().parse().ok()?),
                None => (spec.as_str(), 1),
            };
            Some(Fault {
                point: point.trim().to_owned(),
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks the step `name`: the process is killed here when `PGVAULT_FAULT` names it (and this
/// is the n-th hit it asks for).
pub fn point(name: &str) {
    let Some(fault) = configured() else {
        return;
    };
    if fault.point == name && fault.hits.fetch_add(1, Ordering::SeqCst) + 1 == fault.nth {
        // Written straight to stderr (no logger, no buffering) so a test sees where it died.
        eprintln!("pgvault: {ENV}: killed at `{name}`");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
