//! The operations: create a vault, create a policy, configure protection (with readiness
//! validation), back up, restore, drill a restore. Each is an async function over a [`Vault`]; the host
//! wraps them in jobs.
//!
//! Every failure is an [`Error`] with an [`ErrorCode`] (Azure's `UserErrorDBUserAuthFailed`,
//! `UserErrorMissingDBPermissions`, ..., and pgvault's own), a message that says what was
//! wrong and what to do, and the typed error it came from as its `source`. Code matches on
//! the code, never on its name. Messages never carry a secret: the modules that touch
//! secrets build their messages from references and names only.

pub mod backup;
pub mod drill;
pub mod home;
pub mod keys;
pub mod leftovers;
pub mod protect;
pub mod restore;
pub mod security;
pub mod sweep;
pub mod vault;
pub mod verify;

pub use vault::{Vault, VaultConfig};

pub use crate::model::code::ErrorCode;

/// An operation's failure: its code, a message for the user, and the error it came from.
#[derive(Debug)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// The typed error this one was made from (a connection, store or tool error), kept so
    /// a caller can walk the chain; the message already says what it means for the user.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// An error made from `source`, which is kept as its cause.
    pub fn caused_by(
        code: ErrorCode,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            code,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A kept cause whose text may carry a credential: storage errors print request URIs, and a
/// SAS-bearing URI carries its `sig=`. It shows (`Display` and `Debug`) only the redacted text
/// and ends the chain, so whoever walks [`Error`]'s sources or prints it with `{:?}` sees no
/// more than the message did; [`Redacted::inner`] still gives code the typed error.
pub struct Redacted<E>(E);

impl<E: std::fmt::Display> Redacted<E> {
    pub fn inner(&self) -> &E {
        &self.0
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Redacted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::model::redact::redact(&self.0.to_string()))
    }
}

impl<E: std::fmt::Display> std::fmt::Debug for Redacted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redacted({self})")
    }
}

impl<E: std::fmt::Display> std::error::Error for Redacted<E> {}

impl Error {
    /// An error made from a storage error, kept as its [`Redacted`] cause.
    pub(crate) fn from_storage<E>(code: ErrorCode, message: impl Into<String>, source: E) -> Self
    where
        E: std::fmt::Display + Send + Sync + 'static,
    {
        Error::caused_by(code, message, Redacted(source))
    }
}

/// Leaf errors that know their code: their text is the message, and they are the source.
macro_rules! coded {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::caused_by(e.code(), e.to_string(), e)
            }
        }
    )*};
}

coded!(
    crate::secrets::SecretError,
    crate::secrets::SecretRefError,
    crate::postgres::connection::ConnectionStringError,
    crate::postgres::connection::DatasourceError,
    crate::postgres::connection::ConnectError,
    crate::postgres::readiness::ReadinessError,
    crate::postgres::tools::ToolError,
    crate::model::drill::DrillTargetError,
);

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        let code = if e.is_not_found() {
            ErrorCode::UserErrorNotFound
        } else if e.is_archived() {
            ErrorCode::UserErrorRecoveryPointNotRehydrated
        } else if e.is_disk_full() {
            ErrorCode::UserErrorDiskFull
        } else if e.is_missing_folder() {
            ErrorCode::UserErrorVaultNotFound
        } else if matches!(
            e,
            crate::store::StoreError::Json { .. } | crate::store::StoreError::TooLarge { .. }
        ) {
            // A file of the vault that is not what pgvault wrote: damaged, not unreachable.
            ErrorCode::VaultCorrupt
        } else {
            ErrorCode::VaultStorageError
        };
        Error::from_storage(code, e.to_string(), e)
    }
}

impl From<home::HomeError> for Error {
    fn from(e: home::HomeError) -> Self {
        Error::caused_by(e.code(), e.to_string(), e)
    }
}

impl From<crate::store::writer::WriteError> for Error {
    fn from(e: crate::store::writer::WriteError) -> Self {
        let code = match &e {
            crate::store::writer::WriteError::PackVanished(_) => ErrorCode::VaultDamaged,
            crate::store::writer::WriteError::Store(s) if s.is_disk_full() => {
                ErrorCode::UserErrorDiskFull
            }
            _ => ErrorCode::VaultWriteError,
        };
        Error::from_storage(code, e.to_string(), e)
    }
}

impl From<crate::store::reader::ReadError> for Error {
    fn from(e: crate::store::reader::ReadError) -> Self {
        let code = match &e {
            crate::store::reader::ReadError::Write(_) => ErrorCode::RestoreTargetWriteFailed,
            crate::store::reader::ReadError::Store(s) if s.is_archived() => {
                ErrorCode::UserErrorRecoveryPointNotRehydrated
            }
            // A pack that is gone is damage; a storage error that is not about the vault's
            // content (a full disk, a network failure, a permission) is not.
            crate::store::reader::ReadError::Store(s) if !s.is_not_found() => {
                if s.is_disk_full() {
                    ErrorCode::UserErrorDiskFull
                } else {
                    ErrorCode::VaultStorageError
                }
            }
            _ => ErrorCode::RecoveryPointDamaged,
        };
        Error::from_storage(code, e.to_string(), e)
    }
}

/// A damaged read names the recovery point it was reading and says what to do about it.
pub(crate) fn damaged_point_guidance(e: Error, vault: &str, instance: &str, point: &str) -> Error {
    if e.code != ErrorCode::RecoveryPointDamaged {
        return e;
    }
    Error {
        code: ErrorCode::RecoveryPointDamaged,
        message: format!(
            "recovery point {point} of backup instance `{instance}` cannot be read back: {}. \
             Run `pgvault recovery-point verify --vault-name {vault} --backup-instance-name {instance} --recovery-point-id {point}` \
             to list everything that is damaged, and `pgvault backup-vault repair --vault-name {vault}` to take what \
             cannot be read out of the vault's index so new backups store it again; meanwhile restore an older recovery point.",
            e.message
        ),
        source: e.source,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::store::lock::LockError> for Error {
    fn from(e: crate::store::lock::LockError) -> Self {
        let code = match e {
            crate::store::lock::LockError::Locked { .. } => ErrorCode::UserErrorVaultLocked,
            crate::store::lock::LockError::Busy { .. } => {
                ErrorCode::UserErrorDestructiveOperationInProgress
            }
            crate::store::lock::LockError::Lost { .. } => ErrorCode::DestructiveOperationLockLost,
            crate::store::lock::LockError::Store(_) | crate::store::lock::LockError::Blob(_) => {
                ErrorCode::VaultStorageError
            }
        };
        Error::from_storage(code, e.to_string(), e)
    }
}

impl From<crate::store::gc::GcError> for Error {
    fn from(e: crate::store::gc::GcError) -> Self {
        let code = match e {
            crate::store::gc::GcError::Damaged { .. } => ErrorCode::VaultDamaged,
            crate::store::gc::GcError::Store(_) => ErrorCode::VaultStorageError,
            crate::store::gc::GcError::Guard(e) => return e.into(),
        };
        Error::from_storage(code, e.to_string(), e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A converted error keeps the typed error it came from as its source, with the code its
    /// kind means and its text as the message, and the chain goes on below it.
    #[test]
    fn an_error_keeps_the_typed_error_it_came_from() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let store = crate::store::StoreError::Json {
            path: "policies/p.json".into(),
            source: json,
        };
        let text = store.to_string();
        let e = Error::from(store);
        assert_eq!(e.code, ErrorCode::VaultCorrupt);
        assert_eq!(e.message, text);
        let source = e.source().expect("the store error is kept");
        let kept = source
            .downcast_ref::<Redacted<crate::store::StoreError>>()
            .expect("a storage error is kept redacted");
        assert!(matches!(
            kept.inner(),
            crate::store::StoreError::Json { .. }
        ));

        let secret = crate::secrets::SecretValue::new("this is not a connection string");
        let parse = crate::postgres::connection::ConnectionString::parse(&secret).unwrap_err();
        let e = Error::from(parse);
        assert_eq!(e.code, ErrorCode::UserErrorSecretValueInUnsupportedFormat);
        assert!(
            e.source()
                .is_some_and(|s| s.is::<crate::postgres::connection::ConnectionStringError>())
        );

        assert!(
            Error::new(ErrorCode::InternalError, "no cause")
                .source()
                .is_none()
        );
    }

    /// A storage error's cause keeps a SAS out of its text, its `Debug` and its chain, as the
    /// message does.
    #[test]
    fn a_kept_storage_cause_never_shows_a_sas() {
        let url = "https://acct.blob.core.windows.net/v/packs/x?sv=2024&sig=SECRETSIG&se=1";
        let store = crate::store::StoreError::Io {
            path: "packs/x".into(),
            source: object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: format!("request to {url} failed").into(),
            },
        };
        let e = Error::from(store);
        assert_eq!(e.code, ErrorCode::VaultStorageError);
        let mut shown = vec![e.message.clone(), format!("{e:?}")];
        let mut cause = e.source();
        while let Some(c) = cause {
            shown.push(c.to_string());
            shown.push(format!("{c:?}"));
            cause = c.source();
        }
        assert!(shown.len() >= 4, "{shown:?}");
        for text in &shown {
            assert!(!text.contains("SECRETSIG"), "{text}");
        }
    }

    /// The guidance a damaged read gets names the point and what to do, and keeps the cause.
    #[test]
    fn a_damaged_read_keeps_its_cause_under_the_guidance() {
        use crate::store::reader::ReadError;
        let e = Error::from(ReadError::MissingChunk(crate::store::chunk::ChunkId(
            [7; 32],
        )));
        assert_eq!(e.code, ErrorCode::RecoveryPointDamaged);
        let e = damaged_point_guidance(e, "v1", "db1", "rp1");
        assert_eq!(e.code, ErrorCode::RecoveryPointDamaged);
        assert!(e.message.contains("recovery-point verify"), "{}", e.message);
        assert!(
            e.source()
                .and_then(|s| s.downcast_ref::<Redacted<ReadError>>())
                .is_some_and(|r| matches!(r.inner(), ReadError::MissingChunk(_)))
        );
        // Any other error passes through untouched.
        let other = damaged_point_guidance(
            Error::new(ErrorCode::VaultStorageError, "down"),
            "v1",
            "db1",
            "rp1",
        );
        assert_eq!(
            (other.code, other.message.as_str()),
            (ErrorCode::VaultStorageError, "down")
        );
    }
}
