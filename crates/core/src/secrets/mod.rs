//! Secret references and secret values: where an instance's connection string lives, and the
//! string itself once read.
//!
//! pgvault follows Azure Backup's key-vault authentication model: the vault never stores a
//! database credential. A backup instance stores a [`SecretRef`] (an Azure Key Vault secret URI,
//! `env:NAME` or `file:PATH`), and each job resolves it at use into a [`SecretValue`], so the
//! database admin can rotate the credential without touching pgvault.
//!
//! Two rules hold here, and the tests check both:
//! - A reference is not a secret: it is shown, logged and serialised freely. A value is a
//!   secret: [`SecretValue`] prints `<redacted>` and has no `Serialize`.
//! - An error never echoes text it could not parse. A user who passes the connection string
//!   itself where a reference belongs (`--secret-store-uri "Server=..;Password=.."`) must not see
//!   the password come back in the error, in the terminal's scrollback or in a job record. Errors
//!   name what was wrong and show only the parts of the input that already passed validation.
//!
//! The references and values themselves (parsing, printing) are pure and live in
//! `pgvault_model::secret`; this module reads them: [`ResolveSecret::resolve`].

/// Azure's credential chain and Key Vault client (crate pgvault-azure).
pub use pgvault_azure::{identity, keyvault};

use std::future::Future;
use std::io;
use std::path::Path;

pub use pgvault_model::secret::*;

use crate::limits;
use crate::model::code::ErrorCode;

/// Reading a secret: a reference resolved at the moment of use.
pub trait ResolveSecret {
    /// Reads the secret now. Every store is read on every call, so a rotated credential is
    /// picked up by the next job. Key Vault references go through the process's
    /// [`keyvault::KeyVaultClient`], built at the first one: without a Key Vault reference,
    /// nothing Azure is read or contacted.
    fn resolve(&self) -> impl Future<Output = Result<SecretValue, SecretError>> + Send;
}

impl ResolveSecret for SecretRef {
    async fn resolve(&self) -> Result<SecretValue, SecretError> {
        match self {
            SecretRef::KeyVault(uri) => {
                let result = match keyvault::process_client() {
                    Ok(client) => client.get_secret(uri).await,
                    Err(e) => Err(e),
                };
                result.map_err(|e| SecretError::KeyVault {
                    reference: self.clone(),
                    error: Box::new(e),
                })
            }
            _ => resolve_local(self),
        }
    }
}

/// Resolves an `env:` or `file:` reference, which needs no IO beyond the process.
fn resolve_local(reference: &SecretRef) -> Result<SecretValue, SecretError> {
    match reference {
        SecretRef::Env(name) => match std::env::var(name.as_str()) {
            Ok(value) if value.is_empty() => Err(SecretError::Empty {
                reference: reference.clone(),
            }),
            Ok(value) => Ok(SecretValue::new(value)),
            Err(std::env::VarError::NotPresent) => Err(SecretError::NotFound {
                reference: reference.clone(),
                what: "the environment variable is not set",
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUtf8 {
                reference: reference.clone(),
            }),
        },
        SecretRef::File(path) => resolve_file(reference, path),
        SecretRef::KeyVault(_) => unreachable!("resolve reads Key Vault references"),
    }
}

fn resolve_file(reference: &SecretRef, path: &Path) -> Result<SecretValue, SecretError> {
    // Bounded, and a FIFO or device never blocks or streams forever (see `limits`).
    let bytes = limits::read(path, "secret", limits::SECRET_BYTES).map_err(|e| {
        match e.io_kind() {
            Some(io::ErrorKind::NotFound) => SecretError::NotFound {
                reference: reference.clone(),
                what: "the file does not exist",
            },
            Some(io::ErrorKind::PermissionDenied) => SecretError::PermissionDenied {
                reference: reference.clone(),
            },
            // Every other failure (not a file, too large, an I/O error) is described
            // without the file's content, so it is safe to show.
            _ => SecretError::Unreadable {
                reference: reference.clone(),
                reason: e.to_string(),
            },
        }
    })?;
    warn_if_readable_by_others(reference, path);
    let mut text = String::from_utf8(bytes).map_err(|_| SecretError::NotUtf8 {
        reference: reference.clone(),
    })?;
    // Editors and `echo` add one newline; a password could end in other whitespace, so only
    // that one newline is removed.
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(SecretError::Empty {
            reference: reference.clone(),
        });
    }
    Ok(SecretValue::new(text))
}

/// Like ssh and libpq's `.pgpass`, point out a secret file that other users can read, but only
/// warn: the file may sit on a filesystem without Unix modes, or be guarded by a group on
/// purpose.
#[cfg(unix)]
fn warn_if_readable_by_others(reference: &SecretRef, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                secret = %reference,
                mode = format_args!("{:o}", mode & 0o777),
                "secret file is accessible to its group or to other users; consider chmod 600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_reference: &SecretRef, _path: &Path) {}

/// A secret reference that could not be resolved. Each message names the reference (never the
/// value) and says what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("secret {reference} was not found: {what}; create it, or fix the reference")]
    NotFound {
        reference: SecretRef,
        what: &'static str,
    },
    #[error(
        "secret {reference} cannot be read by this process (permission denied); give the user \
         pgvault runs as read access to it"
    )]
    PermissionDenied { reference: SecretRef },
    #[error("secret {reference} could not be read: {reason}")]
    Unreadable {
        reference: SecretRef,
        reason: String,
    },
    #[error("secret {reference} is empty; store the connection string in it")]
    Empty { reference: SecretRef },
    #[error("secret {reference} is not valid UTF-8 text; store the connection string as text")]
    NotUtf8 { reference: SecretRef },
    /// Boxed: the reference is already most of the enum's size.
    #[error("secret {reference} could not be read from Azure Key Vault: {}", error.reason)]
    KeyVault {
        reference: SecretRef,
        error: Box<keyvault::KeyVaultError>,
    },
}

impl SecretError {
    /// The Azure-style error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SecretError::KeyVault { error, .. } => error.code.clone(),
            _ => ErrorCode::UserErrorInvalidSecret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("plain", b"Server=a;Password=p", Ok("Server=a;Password=p")),
            (
                "newline",
                b"Server=a;Password=p\n",
                Ok("Server=a;Password=p"),
            ),
            (
                "crlf",
                b"Server=a;Password=p\r\n",
                Ok("Server=a;Password=p"),
            ),
            // Only one newline goes: the rest may belong to the secret.
            ("two", b"pw\n\n", Ok("pw\n")),
            ("spaces", b"pw  \n", Ok("pw  ")),
            ("empty", b"", Err("UserErrorInvalidSecret")),
            ("only-newline", b"\n", Err("UserErrorInvalidSecret")),
            ("binary", b"\xff\xfe", Err("UserErrorInvalidSecret")),
        ];
        for (name, content, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let r = SecretRef::File(path);
            match (resolve_local(&r), expected) {
                (Ok(v), Ok(want)) => assert_eq!(v.expose_secret(), *want, "{name}"),
                (Err(e), Err(code)) => {
                    assert_eq!(e.code().as_str(), *code, "{name}");
                    assert!(e.to_string().contains(&r.to_string()), "{name}: {e}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn missing_and_unreadable_files_name_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretRef::File(dir.path().join("nope"));
        let err = resolve_local(&missing).unwrap_err();
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
        assert!(err.to_string().contains(&missing.to_string()));
        assert!(err.to_string().contains("does not exist"));

        // A directory cannot be read as a file.
        let dir_ref = SecretRef::File(dir.path().to_path_buf());
        let err = resolve_local(&dir_ref).unwrap_err();
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
        assert!(matches!(err, SecretError::Unreadable { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn permission_denied_is_invalid_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked");
        std::fs::write(&path, "Password=Hunter2").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let r = SecretRef::File(path.clone());
        // root reads any file whatever its mode, so the denial is only seen as another user.
        if std::fs::read(&path).is_ok() {
            // As root, a secret with mode 000 still resolves; the check below is for others.
            assert_eq!(
                resolve_local(&r).unwrap().expose_secret(),
                "Password=Hunter2"
            );
            return;
        }
        let err = resolve_local(&r).unwrap_err();
        assert!(
            matches!(err, SecretError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
        assert!(!err.to_string().contains("Hunter2"));
    }

    #[test]
    fn resolves_environment_variables() {
        // `std::env::set_var` is `unsafe` in edition 2024 (other threads may read the
        // environment) and this crate forbids unsafe code, so the test reads variables the test
        // run already has: a missing one and PATH.
        let missing = SecretRef::Env(EnvVarName::new("PGVAULT_TEST_SECRET_MISSING").unwrap());
        let err = resolve_local(&missing).unwrap_err();
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
        assert!(err.to_string().contains("env:PGVAULT_TEST_SECRET_MISSING"));
        assert!(err.to_string().contains("not set"));
        let path = SecretRef::Env(EnvVarName::new("PATH").unwrap());
        assert_eq!(
            resolve_local(&path).unwrap().expose_secret(),
            std::env::var("PATH").unwrap()
        );
    }

    /// Set variables are checked in a child run of this same test binary, started with the
    /// variables in its environment (see `resolves_environment_variables` for why).
    #[test]
    fn resolves_set_environment_variables() {
        const MARK: &str = "PGVAULT_TEST_IN_CHILD";
        if std::env::var_os(MARK).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "secrets::tests::resolves_set_environment_variables",
                ])
                .env(MARK, "1")
                .env("PGVAULT_TEST_SECRET", "Server=a;Password=p\n")
                .env("PGVAULT_TEST_SECRET_EMPTY", "")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed: {stdout}");
            // The filter must have matched the test, or the child proved nothing.
            assert!(stdout.contains("1 passed"), "{stdout}");
            return;
        }
        let set = SecretRef::Env(EnvVarName::new("PGVAULT_TEST_SECRET").unwrap());
        // A variable keeps its trailing newline: only files lose one.
        assert_eq!(
            resolve_local(&set).unwrap().expose_secret(),
            "Server=a;Password=p\n"
        );
        let empty = SecretRef::Env(EnvVarName::new("PGVAULT_TEST_SECRET_EMPTY").unwrap());
        let err = resolve_local(&empty).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
        assert_eq!(err.code().as_str(), "UserErrorInvalidSecret");
    }
}
