//! Bounded reads of the files a user hands pgvault: policies, instances, restore requests,
//! lifecycles and criteria, `file:` secrets, scripts, certificates.
//!
//! Every such file is read through [`read`] (or [`read_text`]), which opens it without
//! blocking, refuses what is not a regular file or a pipe, and reads at most one byte more
//! than the limit of its kind: a wrong path such as `/dev/zero` or a multi-gigabyte file
//! then ends in an error naming the file and the limit, not in a process the kernel kills
//! for its memory. The limits are generous for what each file really holds (a policy is a
//! few kilobytes, a secret a few hundred bytes) and small next to the memory of any host.
//!
//! Pipes are read because `--policy <(jq ...)` and `/dev/stdin` are pipes. A named pipe
//! (FIFO) no process writes to would block an ordinary `open` forever, so every file is
//! opened with `O_NONBLOCK` and only then, once it is known to be a pipe, switched back to
//! blocking reads: a pipe with no writer then reads as empty at once, and one with a writer
//! reads as it writes.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Policies, and the lifecycles and criteria the policy editing commands read.
pub const POLICY_BYTES: u64 = 1024 * 1024;
/// Backup-instance and restore requests.
pub const REQUEST_BYTES: u64 = 1024 * 1024;
/// `file:` secrets: a password or a connection string.
pub const SECRET_BYTES: u64 = 64 * 1024;
/// Client certificates (PEM or PFX, with their chain) for Azure sign-in.
pub const CERTIFICATE_BYTES: u64 = 1024 * 1024;
/// Federated tokens (workload identity): one JWT.
pub const TOKEN_BYTES: u64 = 64 * 1024;
/// The JSON objects pgvault keeps in a vault (vault.json, policies, instances, lock files).
/// pgvault writes them itself from inputs of at most [`POLICY_BYTES`] or [`REQUEST_BYTES`],
/// pretty-printed, so anything far larger is not one of them.
pub const VAULT_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// Why a user's file could not be read. The messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the {what} file `{}`: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the {what} file `{}` is {kind}, not a regular file; give the path of a file (or `-` to read stdin)",
        path.display()
    )]
    NotAFile {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "the {what} file `{}` is larger than {}, the limit for a {what}; a real one is far smaller, so check the path",
        path.display(), size(*limit)
    )]
    TooLarge {
        what: String,
        path: PathBuf,
        limit: u64,
    },
    #[error("the {what} {} is larger than {}, the limit for a {what}; a real one is far smaller", source_name(path), size(*limit))]
    StdinTooLarge {
        what: String,
        path: PathBuf,
        limit: u64,
    },
    #[error("the {what} file `{}` is not UTF-8 text", path.display())]
    NotUtf8 { what: String, path: PathBuf },
}

impl InputError {
    /// The error's kind of IO failure, for callers that tell "not found" from others.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            InputError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "on stdin".to_owned()
    } else {
        format!("`{}`", path.display())
    }
}

/// A limit in the unit people read it in.
pub fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// The bytes of the file at `path`, at most `limit` of them. `what` names the kind of file
/// in errors ("policy", "secret").
pub fn read(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, InputError> {
    let io = |source| InputError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if kind.is_fifo() {
        // Blocking reads from here: the open did not wait for a writer, reads should.
        fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| io(e.into()))?;
    } else if !kind.is_file() {
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(InputError::NotAFile {
            what: what.to_owned(),
            path: path.to_owned(),
            kind,
        });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            what: what.to_owned(),
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Standard input, at most `limit` bytes of it.
pub fn read_stdin(what: &str, limit: u64) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| InputError::Io {
            what: what.to_owned(),
            path: PathBuf::from("-"),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(InputError::StdinTooLarge {
            what: what.to_owned(),
            path: PathBuf::from("-"),
            limit,
        });
    }
    Ok(bytes)
}

/// A text file of at most `limit` bytes, UTF-8, with a leading byte order mark removed:
/// Windows editors and PowerShell's `Out-File` write one before JSON.
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String, InputError> {
    text(read(path, what, limit)?, what, path)
}

/// [`read_text`] of a command-line argument, where `-` means standard input.
pub fn read_arg_text(arg: &Path, what: &str, limit: u64) -> Result<String, InputError> {
    if arg == Path::new("-") {
        text(read_stdin(what, limit)?, what, arg)
    } else {
        read_text(arg, what, limit)
    }
}

fn text(bytes: Vec<u8>, what: &str, path: &Path) -> Result<String, InputError> {
    let text = String::from_utf8(bytes).map_err(|_| InputError::NotUtf8 {
        what: what.to_owned(),
        path: path.to_owned(),
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// `text` without a leading UTF-8 byte order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_at_the_limit_reads_and_one_byte_more_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, vec![b' '; 100]).unwrap();
        assert_eq!(read(&path, "policy", 100).unwrap().len(), 100);
        let e = read(&path, "policy", 99).unwrap_err();
        assert!(matches!(e, InputError::TooLarge { limit: 99, .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("p.json") && text.contains("99 bytes") && text.contains("check the path"),
            "{text}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(Path::new("/dev/zero"), "policy", POLICY_BYTES).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read(dir.path(), "policy", POLICY_BYTES).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn a_fifo_without_a_writer_reads_as_empty_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read(&path, "policy", POLICY_BYTES).unwrap(), b"");
    }

    #[test]
    fn a_pipe_reads_as_process_substitution_gives_it() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        // `--policy <(jq ...)` hands pgvault `/dev/fd/63`, a pipe's read end.
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"{}").unwrap();
        drop(writer);
        let path = PathBuf::from(format!("/proc/self/fd/{}", reader.as_raw_fd()));
        assert_eq!(read(&path, "policy", POLICY_BYTES).unwrap(), b"{}");
    }

    #[test]
    fn a_byte_order_mark_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "\u{feff}{}").unwrap();
        assert_eq!(read_text(&path, "policy", POLICY_BYTES).unwrap(), "{}");
        assert_eq!(strip_bom("\u{feff}[1]"), "[1]");
        assert_eq!(strip_bom("[1]"), "[1]");
    }

    #[test]
    fn sizes_read_in_their_unit() {
        assert_eq!(size(1024 * 1024), "1 MiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
