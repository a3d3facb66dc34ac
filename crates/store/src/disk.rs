//! Local disks: private folders and files, a full disk told apart from other IO errors, and
//! where a local vault may be placed.
//!
//! **Private by default.** Everything pgvault writes is the database itself (packs) or its key
//! (`vault.json`'s chunk-id key) or its history, so folders it creates are 0700 and files
//! 0600 whatever the umask. The binary sets a 077 umask at start, which covers files that
//! libraries create for it (`object_store`'s, SQLite's); the entry points that create a
//! vault's or the home's folder set the mode themselves too, for callers of the library.
//!
//! **A full disk is named.** An ENOSPC (or EDQUOT) anywhere in an error's chain becomes
//! "the disk holding X is full", X being the folder the user chose (the vault, the home, the
//! restore target), not the file that happened to be written last.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The mode of every folder pgvault creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file pgvault creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each 0700 (before the umask, which can only
/// remove bits). An existing folder keeps its mode: it may be shared on purpose.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Writes `bytes` to a new file `path` created 0600 (replacing one that exists).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Whether `e` says the disk (or the user's quota on it) is full.
pub fn io_is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether any error in `e`'s chain is an IO error saying the disk is full.
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>().is_some_and(io_is_disk_full) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether the filesystem holding `path` (or its nearest existing ancestor) has no room left
/// for a write: for errors that do not carry the `errno` (SQLite's IO errors).
pub fn has_no_room(path: &Path) -> bool {
    let Some(existing) = path.ancestors().find(|p| p.exists()) else {
        return false;
    };
    let Ok(stat) = nix::sys::statvfs::statvfs(existing) else {
        return false;
    };
    // fsblkcnt_t and c_ulong are 32 bits on some targets.
    #[allow(clippy::unnecessary_cast)]
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    free < 64 * 1024
}

/// The message for a full disk holding `folder`.
pub fn disk_full_message(folder: &Path) -> String {
    format!(
        "the disk holding `{}` is full; free space on it (or give it a larger disk) and try again",
        folder.display()
    )
}

/// `path` made absolute without `..` and with every symlink of its existing part resolved, as
/// the kernel would resolve it once the missing part is created. `None` for a relative path.
pub fn canonical(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    // Resolve `..` and `.` lexically only in the part that does not exist (no symlink there),
    // so the existing prefix is canonicalised by the kernel itself.
    let mut existing = PathBuf::from("/");
    let mut rest: Vec<Component> = Vec::new();
    for c in path.components() {
        if !rest.is_empty() {
            rest.push(c);
            continue;
        }
        let next = existing.join(c.as_os_str());
        match std::fs::canonicalize(&next) {
            Ok(p) => existing = p,
            Err(_) => rest.push(c),
        }
    }
    let mut out = existing;
    for c in rest {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Folders where a vault must never be: the system's own. A vault's garbage collection
/// deletes what it does not know in its folder, and its files would be mixed with the
/// system's. `(path, also_below)`: `/var` itself is refused, `/var/backups/pgvault` is fine.
const SYSTEM_FOLDERS: &[(&str, bool)] = &[
    ("/", false),
    ("/etc", true),
    ("/usr", true),
    ("/bin", true),
    ("/sbin", true),
    ("/lib", true),
    ("/lib32", true),
    ("/lib64", true),
    ("/libx32", true),
    ("/boot", true),
    ("/dev", true),
    ("/proc", true),
    ("/sys", true),
    ("/run", false),
    ("/var", false),
    ("/var/lib", false),
    ("/var/run", false),
    ("/home", false),
    ("/root", false),
    ("/tmp", false),
];

/// The system folder `path` (canonical) is or is inside, when a vault may not be there.
pub fn system_folder(path: &Path) -> Option<&'static str> {
    SYSTEM_FOLDERS.iter().find_map(|&(folder, below)| {
        let f = Path::new(folder);
        (path == f || (below && path.starts_with(f))).then_some(folder)
    })
}

/// Whether `dir`, or a folder one or two levels below it, holds a vault (`vault.json`) or an
/// archive tier (`archive.json`): the first one found. Symlinks below are not followed.
pub fn vault_below(dir: &Path) -> Option<PathBuf> {
    let marks = |d: &Path| {
        ["vault.json", "archive.json"]
            .into_iter()
            .map(|m| d.join(m))
            .find(|p| p.is_file())
    };
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    for child in subdirs(dir) {
        if let Some(m) = marks(&child) {
            return Some(m);
        }
        for grandchild in subdirs(&child) {
            if let Some(m) = marks(&grandchild) {
                return Some(m);
            }
        }
    }
    None
}

/// The nearest strict ancestor of `dir` that holds a vault or an archive tier, as the path of
/// its `vault.json` or `archive.json`.
pub fn vault_above(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().skip(1).find_map(|a| {
        ["vault.json", "archive.json"]
            .into_iter()
            .map(|m| a.join(m))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn canonical_resolves_symlinks_and_dots_in_the_missing_part() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        assert_eq!(
            canonical(&root.join("link/a/../b")).unwrap(),
            root.join("real/b")
        );
        assert_eq!(
            canonical(&root.join("missing/../link/x")).unwrap(),
            root.join("link/x")
        );
        assert_eq!(canonical(&root.join("real/./..")).unwrap(), root);
        assert_eq!(canonical(Path::new("relative")), None);
    }

    #[test]
    fn system_folders_are_refused_and_their_neighbours_are_not() {
        for (p, refused) in [
            ("/", true),
            ("/etc", true),
            ("/etc/pgvault", true),
            ("/usr/local/backups", true),
            ("/lib64", true),
            ("/var", true),
            ("/var/backups/pgvault", false),
            ("/run", true),
            ("/run/media/me/disk", false),
            ("/mnt/backup", false),
            ("/srv/pgvault", false),
            ("/tmp", true),
            ("/tmp/x", false),
        ] {
            assert_eq!(system_folder(Path::new(p)).is_some(), refused, "{p}");
        }
    }

    #[test]
    fn private_dirs_and_files_ignore_a_permissive_umask() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b"), deep.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        let f = deep.join("f");
        write_private_file(&f, b"x").unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_full_disk_is_found_anywhere_in_an_error_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let full = Outer(io::Error::from_raw_os_error(28));
        assert!(is_disk_full(&full));
        let other = Outer(io::Error::from_raw_os_error(13));
        assert!(!is_disk_full(&other));
    }
}
