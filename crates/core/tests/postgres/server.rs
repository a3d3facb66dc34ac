//! Listing a server's databases ([`server_databases`]), the first step of a script that
//! protects every database of a server: which databases it offers, from a secret reference
//! as a backup instance holds one, and the codes of its failures.

use pgvault_core::engine::protect::{ServerArgs, server_databases};
use pgvault_testkit::TestCluster;

use crate::{ado_password, create_login_role, server_address};

fn args(datasource_id: String, secret_uri: String) -> ServerArgs {
    ServerArgs {
        datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer".into(),
        datasource_id,
        secret_store_type: "File".into(),
        secret_store_uri: secret_uri,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_databases_a_server_offers_for_backup() {
    let cluster = TestCluster::shared();
    let database = cluster.create_database("server_list");
    let user = create_login_role(cluster, &database);
    // Beside it, one database that refuses connections and one template: neither can be
    // backed up, so neither is offered.
    let closed = cluster.create_database("server_list_closed");
    let template = cluster.create_database("server_list_template");
    cluster.psql(
        "postgres",
        &format!(
            "ALTER DATABASE \"{closed}\" WITH ALLOW_CONNECTIONS false;\n\
             ALTER DATABASE \"{template}\" WITH IS_TEMPLATE true;"
        ),
    );

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("server.secret");
    std::fs::write(
        &secret,
        format!(
            "User Id={user};Password={};Ssl Mode=Prefer\n",
            ado_password()
        ),
    )
    .unwrap();
    let secret_uri = format!("file://{}", secret.display());
    // The datasource's database is only where the session connects.
    let server = server_address(cluster);
    let names = server_databases(&args(
        format!("postgres://{server}/{database}"),
        secret_uri.clone(),
    ))
    .await
    .unwrap();
    assert!(names.contains(&database), "{names:?}");
    assert!(names.iter().any(|n| n == "postgres"), "{names:?}");
    for refused in [&closed, &template, "template0", "template1"] {
        assert!(
            !names.iter().any(|n| n == refused),
            "{refused} in {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // Failures carry the codes a protect would give for the same mistake.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, format!("User Id={user};Password=WrongHunter2\n")).unwrap();
    let err = server_databases(&args(
        format!("postgres://{server}/{database}"),
        format!("file://{}", wrong.display()),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.code.as_str(),
        "UserErrorDBUserAuthFailed",
        "{}",
        err.message
    );
    assert!(!err.message.contains("WrongHunter2"), "{}", err.message);

    let err = server_databases(&args(
        format!("postgres://{server}/no_such_db"),
        secret_uri.clone(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code.as_str(), "UserErrorDBNotFound", "{}", err.message);

    let mut bad_type = args(format!("postgres://{server}/{database}"), secret_uri);
    bad_type.datasource_type = "AzureSqlDatabase".into();
    let err = server_databases(&bad_type).await.unwrap_err();
    assert_eq!(
        err.code.as_str(),
        "UserErrorInvalidDatasourceType",
        "{}",
        err.message
    );
}
