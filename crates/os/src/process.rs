//! Facts about this machine's processes: the host name and whether a pid still runs. The job
//! history and the vault locks record an owner (host, pid) and use these to tell a live owner
//! from one that died.

use std::{fs, io};

/// This machine's host name, as recorded in `owner_host`. It only has to be stable across
/// restarts of the same machine, so a fixed fallback is acceptable where none can be read.
pub fn local_host_name() -> String {
    let from_kernel = fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether process `pid` is still running on this machine, for the job history and vault locks.
///
/// On Linux this reads `/proc`, treating a zombie (exited, not yet reaped) as gone. Elsewhere
/// there is no way to ask without `unsafe` or a new dependency, so it answers `true`: leaving
/// a dead job `InProgress` is a smaller harm than failing a live one.
pub fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state letter follows the command name, which is in parentheses and may
            // itself contain spaces and parentheses, hence the last ')'.
            Ok(stat) => !matches!(
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next()),
                Some("Z" | "X")
            ),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    } else {
        true
    }
}
