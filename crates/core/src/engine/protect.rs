//! Configuring protection: `backup-instance initialize` builds the request, `create`
//! validates it against the real database and stores it.
//!
//! Validation is Azure's: the secret resolves and parses, the server answers, the user
//! authenticates, the database exists, the user holds the backup privileges, the database
//! is not one that is never backed up and not already protected in this vault.

use serde_json::Value;

use super::vault::{Vault, check_name};
use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::instance::{
    AuthCredentials, BackupInstanceProperties, BackupInstanceRequest, DatasourceInfo,
    PROTECTION_CONFIGURED, PolicyInfo, ProtectionStatus, SecretStoreResource,
};
use crate::postgres::EXCLUDED_DATABASES;
use crate::postgres::connection::{ConnectParams, ConnectionString, Datasource};
use crate::postgres::readiness::{DatabaseFacts, check_backup_privileges, database_facts};
use crate::secrets::ResolveSecret as _;
use crate::secrets::{SecretRef, SecretStoreType};

/// The datasource types pgvault protects, by the az CLI's name, with the ARM types the
/// instance JSON carries.
pub fn datasource_arm_types(datasource_type: &str) -> Result<(&'static str, &'static str)> {
    let t = datasource_type.trim().to_ascii_lowercase();
    match t.as_str() {
        "azuredatabaseforpostgresqlflexibleserver"
        | "microsoft.dbforpostgresql/flexibleservers"
        | "microsoft.dbforpostgresql/flexibleservers/databases" => Ok((
            "Microsoft.DBforPostgreSQL/flexibleServers/databases",
            "Microsoft.DBforPostgreSQL/flexibleServers",
        )),
        "azuredatabaseforpostgresql" | "ossdb" | "microsoft.dbforpostgresql/servers/databases" => {
            Ok((
                "Microsoft.DBforPostgreSQL/servers/databases",
                "Microsoft.DBforPostgreSQL/servers",
            ))
        }
        _ => Err(Error::new(
            ErrorCode::UserErrorInvalidDatasourceType,
            format!(
                "datasource type `{datasource_type}` is not supported: use AzureDatabaseForPostgreSQLFlexibleServer or AzureDatabaseForPostgreSQL"
            ),
        )),
    }
}

/// The arguments of `backup-instance initialize`.
#[derive(Clone, Debug)]
pub struct InitializeArgs {
    pub datasource_type: String,
    pub datasource_id: String,
    pub policy_id: String,
    pub secret_store_type: String,
    pub secret_store_uri: String,
    pub location: Option<String>,
}

/// Builds a backup-instance request the way `az dataprotection backup-instance initialize`
/// does: named `<server>-<database>-<uuid>`, friendly name `<server>\<database>`. Nothing
/// is contacted; `create` validates.
pub fn initialize_instance(args: &InitializeArgs) -> Result<BackupInstanceRequest> {
    let (db_type, set_type) = datasource_arm_types(&args.datasource_type)?;
    let ds: Datasource = args.datasource_id.parse()?;
    let store_type: SecretStoreType = args.secret_store_type.parse()?;
    SecretRef::from_store(store_type, &args.secret_store_uri)?;
    refuse_excluded(ds.database())?;
    let server = sanitize(ds.server_name());
    let name = format!(
        "{server}-{}-{}",
        sanitize(ds.database()),
        uuid::Uuid::new_v4()
    );
    let location = args.location.clone().unwrap_or_else(|| "local".into());
    Ok(BackupInstanceRequest {
        name,
        properties: BackupInstanceProperties {
            data_source_info: DatasourceInfo {
                datasource_type: db_type.into(),
                object_type: "Datasource".into(),
                resource_id: ds.to_string(),
                resource_location: location.clone(),
                resource_name: ds.database().to_string(),
                resource_type: db_type.into(),
                resource_uri: String::new(),
            },
            data_source_set_info: Some(DatasourceInfo {
                datasource_type: db_type.into(),
                object_type: "DatasourceSet".into(),
                resource_id: ds.server_url(),
                resource_location: location,
                resource_name: ds.server_name().to_string(),
                resource_type: set_type.into(),
                resource_uri: String::new(),
            }),
            datasource_auth_credentials: AuthCredentials {
                object_type: "SecretStoreBasedAuthCredentials".into(),
                secret_store_resource: SecretStoreResource {
                    secret_store_type: store_type.to_string(),
                    uri: args.secret_store_uri.clone(),
                },
            },
            friendly_name: format!("{}\\{}", ds.server_name(), ds.database()),
            object_type: "BackupInstance".into(),
            policy_info: PolicyInfo {
                policy_id: args.policy_id.clone(),
                policy_version: None,
            },
            protection_status: None,
            current_protection_state: None,
            provisioning_state: None,
        },
    })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn refuse_excluded(database: &str) -> Result<()> {
    if EXCLUDED_DATABASES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(database))
    {
        return Err(Error::new(
            ErrorCode::UserErrorDatabaseNotSupportedForBackup,
            format!(
                "database `{database}` is never backed up ({} are excluded)",
                EXCLUDED_DATABASES.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The datasource and secret reference an instance names.
pub fn instance_target(instance: &BackupInstanceProperties) -> Result<(Datasource, SecretRef)> {
    let ds: Datasource = instance.data_source_info.resource_id.parse()?;
    let store = &instance.datasource_auth_credentials.secret_store_resource;
    let secret = SecretRef::from_store(store.secret_store_type.parse()?, &store.uri)?;
    Ok((ds, secret))
}

/// Where a server is and how to log in to it, for [`server_databases`]: a datasource
/// (`postgres://host:port/anydb`, whose database is only where the session connects) and a
/// secret reference, as `backup-instance initialize` takes them.
#[derive(Clone, Debug)]
pub struct ServerArgs {
    pub datasource_type: String,
    pub datasource_id: String,
    pub secret_store_type: String,
    pub secret_store_uri: String,
}

/// The databases on a server that could be protected, sorted by name: those that accept
/// connections, are not templates and are not [`EXCLUDED_DATABASES`]. A script that protects
/// every database of a server starts from this list.
///
/// Everything is checked as `initialize` and `create` check it (datasource type, datasource,
/// secret reference), then the secret resolves and one session lists `pg_database`. Any
/// login can read `pg_database`, so no privilege beyond connecting is needed; whether the
/// login may back a database up is `create`'s question, per database.
pub async fn server_databases(args: &ServerArgs) -> Result<Vec<String>> {
    datasource_arm_types(&args.datasource_type)?;
    let ds: Datasource = args.datasource_id.parse()?;
    let secret = SecretRef::from_store(args.secret_store_type.parse()?, &args.secret_store_uri)?;
    let conn = ConnectionString::parse(&secret.resolve().await?)?;
    let client = ConnectParams::new(&ds, &conn).connect().await?;
    let rows = client
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| {
            Error::caused_by(
                ErrorCode::UserErrorDBQueryFailed,
                format!("listing the databases of {} failed: {e}", ds.server_url()),
                e,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|name| {
            !EXCLUDED_DATABASES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name))
        })
        .collect())
}

/// Resolves the secret, connects, checks the backup privileges and reads the database's
/// facts. Used by `create` and before every backup.
pub async fn validate_for_backup(
    ds: &Datasource,
    secret: &SecretRef,
) -> Result<(ConnectParams, DatabaseFacts)> {
    let value = secret.resolve().await?;
    let conn = ConnectionString::parse(&value)?;
    let params = ConnectParams::new(ds, &conn);
    let client = params.connect().await?;
    check_backup_privileges(&client).await?;
    let facts = database_facts(&client).await.map_err(|e| {
        Error::caused_by(
            ErrorCode::UserErrorDBQueryFailed,
            format!("reading database facts failed: {e}"),
            e,
        )
    })?;
    Ok((params, facts))
}

/// `backup-instance create`: validates, then stores the instance as protected.
pub async fn create_instance(vault: &Vault, mut request: BackupInstanceRequest) -> Result<Value> {
    let (ds, policy_name) = check_new_instance(vault, &request).await?;
    let (_, secret) = instance_target(&request.properties)?;
    validate_for_backup(&ds, &secret).await?;
    let props = &mut request.properties;
    props.policy_info.policy_id = vault.arm().policy_id(&policy_name);
    props.protection_status = Some(ProtectionStatus {
        status: PROTECTION_CONFIGURED.into(),
    });
    props.current_protection_state = Some(PROTECTION_CONFIGURED.into());
    props.provisioning_state = Some("Succeeded".into());
    if props.friendly_name.is_empty() {
        props.friendly_name = format!("{}\\{}", ds.server_name(), ds.database());
    }
    vault.save_instance(&request).await?;
    Ok(vault.instance_json(&request))
}

/// The REST API's `validateForBackup`: everything `create` checks (the request, the policy,
/// that the database is not protected already, the secret, the connection and the
/// privileges), without storing anything.
pub async fn validate_new_instance(vault: &Vault, request: &BackupInstanceRequest) -> Result<()> {
    let (ds, _) = check_new_instance(vault, request).await?;
    let (_, secret) = instance_target(&request.properties)?;
    validate_for_backup(&ds, &secret).await?;
    Ok(())
}

/// The checks of a new instance that need no database: its name, its datasource type, its
/// policy, and that neither it nor its database is protected in `vault` already. Returns the
/// datasource and the policy's name.
pub async fn check_new_instance(
    vault: &Vault,
    request: &BackupInstanceRequest,
) -> Result<(Datasource, String)> {
    check_name("backup instance", &request.name)?;
    let props = &request.properties;
    datasource_arm_types(&props.data_source_info.datasource_type)?;
    let policy_name = vault.policy_name_of(&props.policy_info.policy_id)?;
    vault.policy(&policy_name).await?;
    let (ds, _) = instance_target(props)?;
    refuse_excluded(ds.database())?;
    if vault.is_soft_deleted(&request.name).await? {
        return Err(Error::new(
            ErrorCode::UserErrorBackupInstanceSoftDeleted,
            format!(
                "backup instance `{}` of vault `{}` is soft-deleted; undelete it with `pgvault backup-instance deleted undelete`, or protect the database under another name",
                request.name,
                vault.name()
            ),
        ));
    }
    // As Azure: a database whose instance is soft-deleted is protected again by undeleting it.
    for deleted in vault.deleted_instances().await? {
        let (other, _) = instance_target(&deleted.instance.properties)?;
        if other.same_database(&ds) {
            return Err(Error::new(
                ErrorCode::UserErrorBackupInstanceSoftDeleted,
                format!(
                    "database `{ds}` was protected in vault `{}` by backup instance `{}`, which is soft-deleted; undelete it with `pgvault backup-instance deleted undelete`, or wait for its purge",
                    vault.name(),
                    deleted.instance.name
                ),
            ));
        }
    }
    for existing in vault.list_instances().await? {
        if existing.name == request.name {
            return Err(Error::new(
                ErrorCode::UserErrorBackupInstanceAlreadyExists,
                format!(
                    "backup instance `{}` already exists in vault `{}`",
                    request.name,
                    vault.name()
                ),
            ));
        }
        let (other, _) = instance_target(&existing.properties)?;
        if other.same_database(&ds) {
            return Err(Error::new(
                ErrorCode::UserErrorDatasourceAlreadyProtected,
                format!(
                    "database `{}` is already protected in vault `{}` by backup instance `{}`; a database is protected once per vault",
                    ds,
                    vault.name(),
                    existing.name
                ),
            ));
        }
    }
    Ok((ds, policy_name))
}
