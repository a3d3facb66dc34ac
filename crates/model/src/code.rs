//! Error codes: Azure's (`UserErrorDBUserAuthFailed`, `UserErrorMissingDBPermissions`, ...) and
//! pgvault's own (`VaultCorrupt`, `RecoveryPointDamaged`, ...), one [`ErrorCode`] each, with
//! what a user can do about it ([`ErrorCode::guidance`]), whether the same request may succeed
//! later unchanged ([`ErrorCode::is_retryable`], as rustic_core's error kinds say) and the HTTP
//! status the REST API answers with ([`ErrorCode::http_status`]).
//!
//! **API Boundary:** a code's name ([`ErrorCode::as_str`]) is what the job history stores and
//! what `--output json`, scripts and Azure's `errorDetails[].code` print, in Azure's spelling.
//! A name is never renamed. [`ErrorCode::parse`] reads any name back: one that no variant has
//! (a row written by another version) is kept as [`ErrorCode::Other`], so an old row still
//! reads and prints as it was written.
//!
//! The enum lives in the pure model because the model's own parsers (connection strings,
//! datasources, secret references) return it; the engine, the host and the CLI match on it,
//! never on the name.

use std::fmt;

/// The HTTP statuses [`ErrorCode::http_status`] answers with, following Azure Resource
/// Manager: 400 a request or user error, 403 access refused, 404 a pgvault resource that does
/// not exist, 409 a conflict with the resource's state or another operation, 500 pgvault or
/// its storage failed.
mod status {
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const CONFLICT: u16 = 409;
    pub const INTERNAL: u16 = 500;
}
use status::*;

/// Declares the codes: each with its status, whether it is retryable, and its guidance. The
/// variant's name is the code's name, so the two cannot drift apart.
macro_rules! codes {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident => $status:expr, $retry:literal, $guidance:literal;
    )*) => {
        /// An operation's error code. See the module documentation for what is stored.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $name, )*
            /// A name no variant has: read from a job row or an answer written by another
            /// version of pgvault (or another service), kept as it was written. pgvault
            /// never creates one; [`ErrorCode::parse`] does.
            Other(String),
        }

        impl ErrorCode {
            /// Every known code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code's name as stored and printed (Azure's spelling).
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                    ErrorCode::Other(name) => name,
                }
            }

            /// The code of a stored or printed name; an unknown name is kept as
            /// [`ErrorCode::Other`].
            pub fn parse(name: &str) -> ErrorCode {
                match name {
                    $(stringify!($name) => ErrorCode::$name,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }

            /// The HTTP status the REST API answers this code with.
            pub fn http_status(&self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)*
                    ErrorCode::Other(_) => INTERNAL,
                }
            }

            /// Whether the same request may succeed later without the user changing
            /// anything (a server that was unreachable, a vault another operation held).
            pub fn is_retryable(&self) -> bool {
                match self {
                    $(ErrorCode::$name => $retry,)*
                    ErrorCode::Other(_) => false,
                }
            }

            /// What a user can do about an error of this kind, in general; the error's
            /// message says what was wrong in this case and often what to do exactly.
            pub fn guidance(&self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $guidance,)*
                    ErrorCode::Other(_) => "an error code this version of pgvault does not know; see the message",
                }
            }
        }
    };
}

codes! {
    // Requests and options that cannot run as given.
    UserErrorInvalidArchiveAccessTier => BAD_REQUEST, false, "give an access tier the archive store supports (Archive or Cold)";
    UserErrorInvalidArchiveSettings => BAD_REQUEST, false, "correct the vault's archive settings as the message says";
    UserErrorInvalidArchiveStorage => BAD_REQUEST, false, "give an archive store location pgvault can use (a folder or a Blob container URL)";
    UserErrorInvalidChunkSize => BAD_REQUEST, false, "give chunk sizes within the range the message names";
    UserErrorInvalidDatasource => BAD_REQUEST, false, "give the datasource as a server URL with its database (postgres://host:port/database)";
    UserErrorInvalidDatasourceType => BAD_REQUEST, false, "use a datasource type pgvault protects (Microsoft.DBforPostgreSQL/flexibleServers/databases)";
    UserErrorInvalidInput => BAD_REQUEST, false, "correct the input the message names";
    InvalidSubscriptionId => BAD_REQUEST, false, "give the subscription id as a GUID (00000000-0000-0000-0000-000000000000)";
    InvalidResourceGroup => BAD_REQUEST, false, "name the resource group with 1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'";
    InvalidResourceId => BAD_REQUEST, false, "give a full id as pgvault prints it: /subscriptions/<sub>/resourceGroups/<group>/providers/Microsoft.DataProtection/backupVaults/<vault>/...";
    UserErrorResourceInAnotherVault => BAD_REQUEST, false, "name a resource of the vault the command acts on: a full id must name that vault, its resource group and the host's subscription";
    UserErrorInvalidJobId => BAD_REQUEST, false, "give a job id as `pgvault job list` prints it";
    UserErrorInvalidLockWait => BAD_REQUEST, false, "set PGVAULT_LOCK_WAIT to an ISO 8601 duration (PT5M) or a number of seconds";
    UserErrorInvalidName => BAD_REQUEST, false, "use letters, digits and hyphens in the name";
    UserErrorInvalidPolicy => BAD_REQUEST, false, "correct the policy at the JSON path the message names; `pgvault backup-policy get-default-policy-template` prints a valid one";
    UserErrorInvalidRecoveryOption => BAD_REQUEST, false, "use the recovery option FailIfExists";
    UserErrorInvalidRehydrationDuration => BAD_REQUEST, false, "give the rehydration duration as an ISO 8601 duration of 10 to 30 days (P15D)";
    UserErrorInvalidRehydrationPriority => BAD_REQUEST, false, "give the rehydration priority as Standard or High";
    UserErrorInvalidRestoreOption => BAD_REQUEST, false, "drop or change the restore option the message names";
    UserErrorInvalidRuleName => BAD_REQUEST, false, "name a retention rule the instance's policy has (`pgvault backup-policy show`)";
    UserErrorInvalidSecret => BAD_REQUEST, false, "check that the secret exists and holds a connection string pgvault can read";
    UserErrorInvalidSecretStore => BAD_REQUEST, false, "give the secret as env:NAME, file:PATH or a Key Vault secret URI";
    UserErrorInvalidEncryptionKey => BAD_REQUEST, false, "give the key as env:NAME or file:PATH holding a passphrase of 12 characters or more or 32 random bytes, or as an Azure Key Vault key URI https://<vault>.vault.azure.net/keys/<name>";
    UserErrorVaultNotEncrypted => BAD_REQUEST, false, "encryption is chosen when a vault is created (`backup-vault create --encryption-key-uri`); an existing vault cannot be encrypted in place";
    UserErrorVaultKeyUnavailable => FORBIDDEN, false, "make one of the vault's key references available to this host (set the environment variable, place the key file, or grant unwrapKey on the Key Vault key), or have a holder of a key add one with `pgvault backup-vault key add`";
    UserErrorLastVaultKey => CONFLICT, false, "add another key with `pgvault backup-vault key add` first: a vault without a key can never be opened again";
    UserErrorVaultKeyNotFound => NOT_FOUND, false, "name a key slot as `pgvault backup-vault key list` prints it (its id or its reference)";
    UserErrorInvalidStorageLocation => BAD_REQUEST, false, "place the vault in a folder of its own, outside system folders and other vaults";
    UserErrorInvalidSoftDeleteRetention => BAD_REQUEST, false, "give --retention-duration-in-days from 14 to 180";
    UserErrorInvalidSecuritySetting => BAD_REQUEST, false, "give --soft-delete-state Off, On or AlwaysOn and --immutability-state Disabled, Unlocked or Locked";
    UserErrorInvalidTarget => BAD_REQUEST, false, "give one restore target: a folder (--target-directory) or a Blob container URL (--target-blob-container-url)";
    UserErrorConfirmationRequired => BAD_REQUEST, false, "the operation cannot be undone: add --yes to confirm it";
    UserErrorDataStoreNotSupported => BAD_REQUEST, false, "restore from VaultStore, or from ArchiveStore once the point is rehydrated";
    UserErrorBMSUpdatePolicyNotSupported => BAD_REQUEST, false, "create a new policy and assign it instead of changing this one";
    UserErrorDatabaseNotSupportedForBackup => BAD_REQUEST, false, "protect a user database; PostgreSQL's own databases are not backed up";
    UserErrorSecretValueInUnsupportedFormat => BAD_REQUEST, false, "store the connection string in ADO.NET (Server=...;Database=...) or URI (postgres://...) form";
    UserErrorPgvaultHome => BAD_REQUEST, false, "point PGVAULT_HOME at a folder pgvault may create and write, owned by this user";
    UserErrorLastRecoveryPoint => BAD_REQUEST, false, "pgvault keeps an instance's last recovery point; stop protection and delete the instance to remove it";
    UserErrorArchiveTierNotConfigured => BAD_REQUEST, false, "configure the vault's archive tier (`pgvault backup-vault update --archive-url ...`) first";
    // Azure Key Vault keys that wrap a vault's data key (customer-managed keys).
    UserErrorInvalidKeyReference => BAD_REQUEST, false, "give the key as env:NAME or file:PATH (a passphrase or key file), or a Key Vault key URI https://<vault>.vault.azure.net/keys/<name>[/<version>]";
    UserErrorKeyVaultKeyNotFound => BAD_REQUEST, false, "check the key URI: the key (and the version the vault recorded) must exist in that Key Vault and not be deleted; `az keyvault key show --id <uri>` shows it, `az keyvault key recover` brings back a soft-deleted one";
    UserErrorKeyVaultKeyUnsupported => BAD_REQUEST, false, "use an RSA key (2048, 3072 or 4096 bits) whose permitted operations include wrapKey and unwrapKey (`az keyvault key create --kty RSA --size 3072 --ops wrapKey unwrapKey`)";
    UserErrorKeyUnwrapFailed => BAD_REQUEST, false, "the wrapped data key does not open with this Key Vault key version (another key, or a damaged key slot); open the vault with another of its keys";
    UserErrorKeyVaultUnavailable => BAD_REQUEST, true, "Key Vault could not be reached or was busy; check the vault's address, DNS, firewall and network rules, then try again";
    UserErrorKeyVaultAuthenticationFailed => BAD_REQUEST, false, "configure pgvault's Azure credential (AZURE_CLIENT_ID with a secret or certificate, workload or managed identity, or `az login`) in the Key Vault's tenant";
    UserErrorMissingPermissionsOnKeyVaultKey => FORBIDDEN, false, "give pgvault's identity the Key Vault Crypto Service Encryption User role on the key (or the wrapKey and unwrapKey key permissions in the vault's access policy)";
    UserErrorKeyVaultKeyDisabled => FORBIDDEN, false, "enable the key version (`az keyvault key set-attributes --enabled true --id <kid>`), or open the vault with another of its keys";
    UserErrorKeyVaultKeyExpired => FORBIDDEN, false, "the key version is expired or not yet valid, so Key Vault refuses to wrap with it (unwrapping still works): rotate the key (`az keyvault key rotate`) or change its expiry";
    // Access refused.
    UserErrorDBUserAuthFailed => FORBIDDEN, false, "check the user name and password in the instance's secret, and that pg_hba.conf lets the user in";
    UserErrorMissingDBPermissions => FORBIDDEN, false, "grant the privileges the message lists (`pgvault backup-instance validate-for-backup` prints the script)";
    UserErrorMissingPermissionsOnSecretStore => FORBIDDEN, false, "give pgvault's identity the Key Vault Secrets User role (get permission) on the vault";
    UserErrorTargetAccessDenied => FORBIDDEN, false, "check AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN: a SAS needs read, create and write on the container";
    UserErrorScriptNotAllowed => FORBIDDEN, false, "allow the operation in the host's sandbox flags or the script's header, or run it from the CLI";
    UserErrorDestructiveOperationNotAllowed => FORBIDDEN, false, "destructive operations from scripts need --allow-destructive on the host";
    // The REST API: Azure Resource Manager's own codes, and pgvault's API tokens.
    AuthenticationFailed => UNAUTHORIZED, false, "send `Authorization: Bearer <token>` with a token from `pgvault api-token create`";
    InvalidAuthenticationToken => UNAUTHORIZED, false, "the token is unknown or revoked; create one with `pgvault api-token create`";
    AuthorizationFailed => FORBIDDEN, false, "use a token whose role allows the action (Reader reads, Operator also backs up and restores, Contributor also changes resources)";
    MissingApiVersionParameter => BAD_REQUEST, false, "add `?api-version=` with a version the message lists";
    InvalidApiVersionParameter => BAD_REQUEST, false, "use an api-version the message lists";
    InvalidRequestContent => BAD_REQUEST, false, "send the body as JSON in the shape Azure's REST API documents for this call";
    InvalidResourceType => BAD_REQUEST, false, "check the request's path against Azure's Data Protection REST API";
    ResourceNotFound => NOT_FOUND, false, "check the resource's path: its resource group, vault and name";
    MethodNotAllowed => BAD_REQUEST, false, "use a method Azure's REST API allows on this path";
    UserErrorInvalidApiToken => BAD_REQUEST, false, "name the token with 1 to 64 letters, digits, `-`, `_` or `.`, and give a role: Reader, Operator or Contributor";
    UserErrorApiTokenExists => CONFLICT, false, "revoke the token of that name first, or choose another name";
    UserErrorApiTokenNotFound => NOT_FOUND, false, "check the name (`pgvault api-token list`)";
    // Alerts: their destinations and their delivery.
    UserErrorInvalidAlertDestination => BAD_REQUEST, false, "give a webhook https URL (or a secret reference holding it), an email server with --from and --to, or a script file; `pgvault alert destination add --help` lists the options";
    UserErrorAlertDestinationExists => CONFLICT, false, "remove the destination of that name first (`pgvault alert destination remove`), or choose another name";
    UserErrorAlertDestinationNotFound => NOT_FOUND, false, "check the name (`pgvault alert destination list`)";
    UserErrorAlertNotFound => NOT_FOUND, false, "check the alert id (`pgvault alert list`)";
    AlertDeliveryFailed => INTERNAL, true, "check the destination (its URL, server, credentials, or script) and that this host can reach it; `pgvault alert destination test` sends a test alert";
    // A pgvault resource that does not exist.
    UserErrorNotFound => NOT_FOUND, false, "check the name; the list commands show what exists";
    SubscriptionNotFound => NOT_FOUND, false, "this host serves one subscription (PGVAULT_SUBSCRIPTION_ID, `pgvault serve --subscription-id`): give its id, or leave --subscription out";
    ResourceGroupNotFound => NOT_FOUND, false, "check the resource group (`pgvault backup-vault list` shows each vault's), or leave -g out";
    UserErrorVaultNotFound => NOT_FOUND, false, "check the vault name (`pgvault backup-vault list`) or create the vault";
    UserErrorDeletedBackupInstanceNotFound => NOT_FOUND, false, "check the name (`pgvault backup-instance deleted list`); a purged instance is gone";
    UserErrorBackupInstanceNotFound => NOT_FOUND, false, "check the instance name (`pgvault backup-instance list`)";
    UserErrorPolicyNotFound => NOT_FOUND, false, "check the policy name (`pgvault backup-policy list`) or create the policy";
    UserErrorRecoveryPointNotFound => NOT_FOUND, false, "check the recovery point id (`pgvault recovery-point list`)";
    UserErrorJobNotFound => NOT_FOUND, false, "check the job id (`pgvault job list`); pruned jobs are gone";
    // Things outside pgvault that a request names and that are missing: the request is wrong.
    UserErrorDBNotFound => BAD_REQUEST, false, "check the database name in the instance, or create the database";
    UserErrorContainerNotFound => BAD_REQUEST, false, "create the Blob container first: a restore writes into an existing container";
    UserErrorSchemaNotFound => BAD_REQUEST, false, "name a schema the recovery point holds (`pgvault recovery-point show` lists its contents)";
    UserErrorTableNotFound => BAD_REQUEST, false, "name a table the recovery point holds, schema-qualified where names repeat";
    // Conflicts with the state of a resource or with another operation.
    UserErrorVaultAlreadyExists => CONFLICT, false, "choose another vault name, or use the existing vault";
    UserErrorBackupInstanceAlreadyExists => CONFLICT, false, "choose another instance name, or delete the existing instance first";
    UserErrorDatasourceAlreadyProtected => CONFLICT, false, "the database is protected by another instance already; use that one";
    UserErrorDatabaseNameAlreadyInUse => CONFLICT, false, "restore to a new database name; a restore never overwrites a database";
    UserErrorFileAlreadyExists => CONFLICT, false, "choose another --target-file-name or target, or remove the existing file";
    UserErrorPolicyInUse => CONFLICT, false, "delete the backup instances that use the policy, or protect them with another policy, first";
    UserErrorVaultNotEmpty => CONFLICT, false, "delete the vault's backup instances (and so their recovery points) first";
    UserErrorArchiveTierInUse => CONFLICT, false, "move or delete the recovery points in the archive tier before changing it";
    UserErrorBackupInstanceNotProtected => CONFLICT, false, "resume protection (`pgvault backup-instance resume-protection`) before backing up";
    UserErrorRecoveryPointInArchiveTier => CONFLICT, false, "rehydrate the recovery point (`pgvault recovery-point rehydrate`) and restore from ArchiveStore";
    UserErrorRecoveryPointNotRehydrated => CONFLICT, true, "wait for the rehydration to finish, or start one with `pgvault recovery-point rehydrate`";
    UserErrorRecoveryPointNotInArchiveTier => CONFLICT, false, "the recovery point is in the vault tier: restore it from VaultStore";
    UserErrorRecoveryPointAlreadyInVaultTier => CONFLICT, false, "the recovery point is already in the vault tier; nothing to rehydrate";
    UserErrorRecoveryPointExpired => CONFLICT, false, "the recovery point's retention has ended; restore a newer one";
    UserErrorUnsupportedVaultImmutabilityStateChange => CONFLICT, false, "a Locked immutable vault stays Locked: it cannot be unlocked or disabled, by anyone";
    UserErrorUnsupportedSoftDeleteStateChange => CONFLICT, false, "soft delete set to AlwaysOn stays on, with a retention no shorter than it has; only a longer retention can be set";
    UserErrorImmutableVaultOperationNotAllowed => CONFLICT, false, "the vault is immutable: a recovery point stays until its expiry; wait for it, or (on an Unlocked vault only) set --immutability-state Disabled first";
    UserErrorBackupInstanceSoftDeleted => CONFLICT, false, "an instance of that name is soft-deleted: undelete it (`pgvault backup-instance deleted undelete`), or wait until it is purged";
    UserErrorVaultHasSoftDeletedItems => CONFLICT, false, "the vault holds soft-deleted backup instances or recovery points; undelete them or wait until they are purged";
    UserErrorVaultLocked => CONFLICT, true, "another operation holds the vault; try again when it ends, or break a stale lock with `pgvault backup-vault break-lock`";
    UserErrorDestructiveOperationInProgress => CONFLICT, true, "a retention sweep, garbage collection or deletion holds the vault; try again when it ends";
    UserErrorMaxConcurrentOperationLimitReached => CONFLICT, true, "wait for the running operation on this instance or vault to end, then try again";
    OperationCancelled => CONFLICT, true, "the operation was cancelled (interrupted or shut down); run it again";
    // The user's database, tools, disk or script: the request is right, the environment is not.
    UserErrorDBServerUnreachable => BAD_REQUEST, true, "check that the server runs, its host and port, the firewall and TLS settings";
    UserErrorDBQueryFailed => BAD_REQUEST, false, "check the server's log for the query the message names";
    UserErrorPgDumpFailed => BAD_REQUEST, false, "read pg_dump's message; it usually names a privilege or an object it could not read";
    UserErrorPgDumpIncomplete => BAD_REQUEST, true, "pg_dump's output ended early; check the server and the disk, then back up again";
    UserErrorPgDumpNotAnArchive => BAD_REQUEST, false, "the pg_dump found does not write custom archives pgvault can read; install PostgreSQL's own pg_dump";
    UserErrorPgDumpUnsupportedVersion => BAD_REQUEST, false, "use a pg_dump whose archive version pgvault reads (PostgreSQL 12 or newer)";
    UserErrorPgRestoreFailed => BAD_REQUEST, false, "read pg_restore's message; restore to a server at least as new as the source, with the roles the dump names";
    UserErrorPostgresToolFailed => BAD_REQUEST, false, "read the tool's message; check that it matches the server's major version";
    UserErrorPostgresToolMissing => BAD_REQUEST, false, "install the PostgreSQL client tools (pg_dump, pg_restore) of the server's major version or newer";
    UserErrorDiskFull => BAD_REQUEST, false, "free space on the disk the message names, or move the vault or target to a larger one";
    UserErrorInsufficientDiskSpace => BAD_REQUEST, false, "free space there, point TMPDIR at a larger disk, or restore without --jobs";
    ScriptError => BAD_REQUEST, false, "fix the script at the line the message names";
    ScriptLimitExceeded => BAD_REQUEST, false, "make the script do less per run, or raise the limit in its header";
    ScriptTimedOut => BAD_REQUEST, false, "make the script finish sooner, or raise its timeout in its header";
    // pgvault, its vault or its own files failed.
    InternalError => INTERNAL, false, "a bug in pgvault; the job's message says where. Please report it";
    ScriptPanicked => INTERNAL, false, "a bug in pgvault's script engine; please report it with the script";
    JobHistoryError => INTERNAL, true, "check that PGVAULT_HOME's disk has room and its jobs.db is writable";
    JobInterrupted => INTERNAL, true, "the process running the job ended before it; run the operation again";
    PendingRecordFailed => INTERNAL, false, "check that PGVAULT_HOME/pending is writable and its disk has room";
    VaultStorageError => INTERNAL, true, "check the vault's storage (disk, network, credentials) and try again";
    VaultWriteError => INTERNAL, true, "check the vault's storage and try again; nothing half-written is used";
    VaultCorrupt => INTERNAL, false, "a vault file is not what pgvault wrote; run `pgvault backup-vault check`";
    VaultDamaged => INTERNAL, false, "run `pgvault backup-vault check`, then `pgvault backup-vault repair`";
    VaultFormatTooNew => INTERNAL, false, "the vault was written by a newer pgvault; upgrade pgvault to use it";
    RecoveryPointDamaged => INTERNAL, false, "run `pgvault recovery-point verify`, then `pgvault backup-vault repair`; meanwhile restore an older recovery point";
    DestructiveOperationLockLost => INTERNAL, true, "another process took the vault's destructive-operation lock; run the operation again";
    RestoreStagingFailed => INTERNAL, false, "check that the temporary folder (TMPDIR) is writable and has room";
    RestoreTargetWriteFailed => INTERNAL, false, "check the restore target's disk or container: room, permissions, reachability";
    RestoreDrillMismatch => INTERNAL, false, "the restored database differs from what the backup recorded; verify the recovery point and take a new backup";
    RestoreDrillCleanupFailed => INTERNAL, false, "drop the drill's scratch database by hand; pgvault also retries at its next start";
    RehydrationTimedOut => INTERNAL, true, "the copy back from the archive tier did not finish in time; rehydrate again";
    TierCopyMismatch => INTERNAL, false, "the copy between tiers differs from its source; run `pgvault recovery-point verify` on both tiers";
    RetentionActionsFailed => INTERNAL, true, "some retention actions failed (their jobs say why); the next sweep tries them again";
}

impl ErrorCode {
    /// Whether the code is one this version knows (not [`ErrorCode::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, ErrorCode::Other(_))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(ErrorCode::parse(name))
    }
}

/// A stored or printed name read back ([`ErrorCode::parse`]).
impl From<&str> for ErrorCode {
    fn from(name: &str) -> ErrorCode {
        ErrorCode::parse(name)
    }
}

impl From<String> for ErrorCode {
    fn from(name: String) -> ErrorCode {
        match ErrorCode::parse(&name) {
            ErrorCode::Other(_) => ErrorCode::Other(name),
            known => known,
        }
    }
}

/// The stored name.
impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> String {
        match code {
            ErrorCode::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl From<&ErrorCode> for String {
    fn from(code: &ErrorCode) -> String {
        code.as_str().to_owned()
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ErrorCode::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_an_unknown_one_is_kept() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
            assert!(code.is_known());
            assert!(!code.guidance().is_empty(), "{code} has no guidance");
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(String::from(code.clone()), code.as_str());
        }
        // A row written by another version reads back, and prints, as it was written.
        let old = ErrorCode::parse("UserErrorSomethingRetired");
        assert_eq!(old, ErrorCode::Other("UserErrorSomethingRetired".into()));
        assert!(!old.is_known());
        assert_eq!(old.to_string(), "UserErrorSomethingRetired");
        assert_eq!(String::from(old), "UserErrorSomethingRetired");
        // Names are case-sensitive, as Azure's are.
        assert!(!ErrorCode::parse("vaultcorrupt").is_known());
    }

    /// Every code name the repository's tests, fixtures and docs mention is a known variant:
    /// renaming a code (which would change what the job history stores and scripts read)
    /// fails this.
    #[test]
    fn every_code_the_repository_mentions_is_known() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let this_file = std::path::Path::new(file!()).file_name().unwrap();
        let mut names = std::collections::BTreeMap::new();
        let mut stack = vec![root.join("crates"), root.join("tests"), root.join("docs")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "target") {
                        stack.push(path);
                    }
                    continue;
                }
                let wanted = ["rs", "md", "json", "rhai"];
                if !path
                    .extension()
                    .is_some_and(|e| wanted.iter().any(|w| e == *w))
                    || path.ends_with(format!("model/src/{}", this_file.to_string_lossy()))
                {
                    continue;
                }
                // A test reads the repository's sources; the model's code never reads files.
                #[allow(clippy::disallowed_methods)]
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for name in code_names(&text) {
                    names.entry(name).or_insert_with(|| path.clone());
                }
            }
        }
        // history.rs's tests store a made-up code: any name is stored and read back.
        names.remove("UserErrorDumpFailed");
        assert!(
            names.len() > 60,
            "the scan found too few codes to mean anything: {names:?}"
        );
        let unknown: Vec<_> = names
            .iter()
            .filter(|(n, _)| !ErrorCode::parse(n).is_known())
            .collect();
        assert!(unknown.is_empty(), "codes not in ErrorCode: {unknown:?}");
    }

    /// The code names in `text`: every `UserError...` word, and a quoted name that follows
    /// `code` or `Error::new(` closely (`assert_eq!(err.code.as_str(), "VaultCorrupt")`,
    /// `"code": "RecoveryPointDamaged"`).
    fn code_names(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() > "UserError".len() && w.starts_with("UserError"))
            .map(str::to_owned)
            .collect();
        for line in text.lines() {
            for marker in ["code", "Error::new("] {
                for (at, _) in line.match_indices(marker) {
                    let rest = &line[at + marker.len()..];
                    let Some(open) = rest.find('"').filter(|&i| i <= 30) else {
                        continue;
                    };
                    if rest[..open].contains(';') {
                        continue;
                    }
                    let quoted = &rest[open + 1..];
                    let Some(close) = quoted.find('"') else {
                        continue;
                    };
                    let name = &quoted[..close];
                    let mut chars = name.chars();
                    let looks_like_a_code = chars.next().is_some_and(|c| c.is_ascii_uppercase())
                        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_alphanumeric());
                    if looks_like_a_code {
                        out.push(name.to_owned());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn http_statuses_follow_arm() {
        use ErrorCode::*;
        for (code, status) in [
            (UserErrorInvalidPolicy, 400),
            (UserErrorInvalidRestoreOption, 400),
            (UserErrorDBServerUnreachable, 400),
            (UserErrorMissingDBPermissions, 403),
            (UserErrorDBUserAuthFailed, 403),
            (UserErrorVaultNotFound, 404),
            (UserErrorRecoveryPointNotFound, 404),
            (UserErrorDatabaseNameAlreadyInUse, 409),
            (UserErrorVaultLocked, 409),
            (InternalError, 500),
            (VaultStorageError, 500),
            (Other("SomethingNew".into()), 500),
        ] {
            assert_eq!(code.http_status(), status, "{code}");
        }
        for code in ErrorCode::ALL {
            let status = code.http_status();
            assert!(
                [400, 401, 403, 404, 409, 500].contains(&status),
                "{code}: {status}"
            );
            // ARM's families: an invalid request is a 400, a missing pgvault resource a 404.
            let name = code.as_str();
            if name.starts_with("UserErrorInvalid") {
                assert_eq!(status, 400, "{code}");
            }
            if name.ends_with("AlreadyExists") || name.ends_with("AlreadyInUse") {
                assert_eq!(status, 409, "{code}");
            }
            if name.ends_with("NotFound") && status != 404 {
                // Something outside pgvault that the request names: the request is wrong.
                assert_eq!(status, 400, "{code}");
            }
        }
    }

    #[test]
    fn transient_failures_are_retryable_and_request_errors_are_not() {
        assert!(ErrorCode::UserErrorDBServerUnreachable.is_retryable());
        assert!(ErrorCode::VaultStorageError.is_retryable());
        assert!(ErrorCode::UserErrorVaultLocked.is_retryable());
        assert!(!ErrorCode::UserErrorInvalidPolicy.is_retryable());
        assert!(!ErrorCode::VaultCorrupt.is_retryable());
        assert!(!ErrorCode::Other("X".into()).is_retryable());
        for code in ErrorCode::ALL {
            if code.http_status() == 400 && code.as_str().starts_with("UserErrorInvalid") {
                assert!(!code.is_retryable(), "{code}");
            }
        }
    }
}
