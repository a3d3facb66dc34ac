//! `pgvault demo`: the walkthrough end to end on a throwaway PostgreSQL server.
//!
//! It starts a private cluster with the installed server binaries (the same code the test
//! suite uses), fills a database with pgbench data plus text and jsonb columns, and then
//! does what a DBA would do on Azure: a vault, the default policy, a least-privilege
//! backup user granted with the grant script pgvault prints, protection, two on-demand backups (the
//! second after changing 1% of rows, to show dedup), a restore to a new database, a
//! restore as files, and the job list. Everything lives in a temporary folder that is
//! removed at the end, so the demo never touches the user's own PGVAULT_HOME.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use pgvault_host::api::Home;
use pgvault_host::api::grant_script_at;
use pgvault_host::api::{InitializeArgs, initialize_instance};
use pgvault_host::api::{initialize_for_data_recovery, initialize_for_data_recovery_as_files};
use pgvault_host::service::Pgvault;
use pgvault_model::job::{Job, JobFilter, JobStatus};
use pgvault_model::policy::DatasourceType;
use pgvault_model::templates::default_policy_template;
use pgvault_testkit::{ClusterOptions, TestCluster};
use serde_json::Value;

use super::coded;
use crate::output::{Format, render};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// pgbench scale of the sample database (10 is about 160 MB).
    #[arg(long, default_value_t = 10)]
    pub scale: u32,
}

/// `println!` that passes a closed stdout (`pgvault demo | head`) up as an error, which `main`
/// ends quietly on, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        crate::output::line(&format!($($arg)*))?
    };
}

fn step(text: &str) -> std::io::Result<()> {
    crate::output::line(&format!("\n== {text}"))
}

/// Secret files are readable by their owner only, as a real one should be.
fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Stops the demo when a job it ran did not complete, with the job's error.
fn ensure_completed(job: &Job, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        job.status() == JobStatus::Completed,
        "{what} failed: {:?}",
        job.state.error()
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new()
        .prefix("pgvault-demo-")
        .tempdir()
        .context("creating a temporary folder")?;

    step("Starting a throwaway PostgreSQL server with the installed binaries")?;
    // The server binaries pgvault itself would use: PGVAULT_PG_BINDIR when set, else the
    // newest installed. Missing binaries end the demo with what to install, not a panic.
    let options = match std::env::var_os("PGVAULT_PG_BINDIR") {
        Some(dir) => ClusterOptions::new().bindir(dir),
        None => ClusterOptions::new(),
    };
    let cluster = tokio::task::spawn_blocking(move || TestCluster::try_start_with(&options))
        .await
        .context("starting PostgreSQL")?
        .map_err(anyhow::Error::msg)
        .context("the demo needs the PostgreSQL server binaries (tools/demo.sh installs them)")?;
    say!(
        "PostgreSQL on {}:{} ({})",
        cluster.host(),
        cluster.port(),
        cluster.psql("postgres", "SELECT version()")
    );

    step(&format!(
        "Creating database empdb11 with sample data (pgbench scale {}, plus text and jsonb)",
        args.scale
    ))?;
    cluster.psql("postgres", "CREATE DATABASE empdb11");
    let status = cluster
        .command("pgbench")
        .args(["-i", "-q", "-s", &args.scale.to_string(), "empdb11"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running pgbench")?;
    anyhow::ensure!(status.success(), "pgbench -i failed");
    cluster.psql(
        "empdb11",
        &format!(
            "CREATE TABLE notes AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 8) AS body, \
             jsonb_build_object('n', g, 'tag', md5(g::text)) AS doc FROM generate_series(1, {}) g",
            args.scale * 20_000
        ),
    );
    say!(
        "{}",
        cluster.psql(
            "empdb11",
            "SELECT 'size: ' || pg_size_pretty(pg_database_size(current_database()))"
        )
    );

    step(
        "Creating a backup user and granting it the backup privileges (the grant script pgvault prints)",
    )?;
    cluster.psql(
        "postgres",
        "CREATE ROLE backup_user LOGIN PASSWORD 'demo-password' CREATEDB",
    );
    let script = grant_script_at(&cluster.admin_url_for("empdb11"), "backup_user")
        .await
        .context("reading the grant script")?;
    cluster.psql("empdb11", &script.to_string());
    let secret = work.path().join("empdb11.secret");
    write_secret(
        &secret,
        &format!(
            "Server={};Database=empdb11;Port={};User Id=backup_user;Password=demo-password;Ssl Mode=Prefer;",
            cluster.host(),
            cluster.port()
        ),
    )?;
    say!(
        "credentials in {} (an ADO.NET connection string, as Azure keeps in Key Vault)",
        secret.display()
    );

    let home = work.path().join("home");
    let svc = Pgvault::open(Home::at(&home)).map_err(coded)?;
    let vault_dir = work.path().join("vault");

    step("pgvault backup-vault create --vault-name TestBkpVault")?;
    svc.create_vault(
        "TestBkpVault",
        &Default::default(),
        Some(&format!("file://{}", vault_dir.display())),
    )
    .await
    .map_err(coded)?;
    say!("vault at {}", vault_dir.display());

    step(
        "pgvault backup-policy get-default-policy-template | backup-policy create --backup-policy-name OssPolicy",
    )?;
    let policy = default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer);
    svc.create_policy("TestBkpVault", "OssPolicy", &policy)
        .await
        .map_err(coded)?;
    say!("weekly schedule, Default retention: 3 months in the vault tier");

    step(
        "pgvault backup-instance initialize ... && backup-instance create (validates, then protects)",
    )?;
    let request = initialize_instance(&InitializeArgs {
        datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer".into(),
        datasource_id: format!("postgres://{}:{}/empdb11", cluster.host(), cluster.port()),
        policy_id: "OssPolicy".into(),
        secret_store_type: "File".into(),
        secret_store_uri: format!("file://{}", secret.display()),
        location: None,
    })
    .map_err(coded)?;
    let instance = request.name.clone();
    svc.protect("TestBkpVault", request).await.map_err(coded)?;
    say!("protected: {instance}");

    step("pgvault backup-instance adhoc-backup --rule-name Default")?;
    let t = Instant::now();
    let (job, first) = svc
        .adhoc_backup("TestBkpVault", &instance, "Default", None)
        .await
        .map_err(coded)?;
    ensure_completed(&job, "backup")?;
    let first = first.expect("a completed backup has a recovery point");
    say!(
        "recovery point {}: read {} from pg_dump, stored {} in {:.1?}",
        first.recovery_point_id,
        mib(first.stats.bytes_read),
        mib(first.stats.bytes_stored),
        t.elapsed()
    );

    step(
        "Updating 1% of pgbench_accounts, then backing up again (only changed chunks are stored)",
    )?;
    cluster.psql(
        "empdb11",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0",
    );
    let (_, second) = svc
        .adhoc_backup("TestBkpVault", &instance, "Default", None)
        .await
        .map_err(coded)?;
    let second = second.context("the second backup failed")?;
    say!(
        "recovery point {}: read {}, stored {} ({:.1}% of the first)",
        second.recovery_point_id,
        mib(second.stats.bytes_read),
        mib(second.stats.bytes_stored),
        100.0 * second.stats.bytes_stored as f64 / first.stats.bytes_stored.max(1) as f64
    );

    step("pgvault backup-instance restore initialize-for-data-recovery ... && restore trigger")?;
    // The restore has its own credentials, as Azure's restore does: the target server may
    // be another one with other users.
    let restore_secret = work.path().join("restore.secret");
    write_secret(
        &restore_secret,
        "User Id=backup_user;Password=demo-password;Ssl Mode=Prefer;",
    )?;
    let req = initialize_for_data_recovery(
        &second.recovery_point_id,
        &format!(
            "postgres://{}:{}/empdb11_restored",
            cluster.host(),
            cluster.port()
        ),
        Some("File"),
        &format!("file://{}", restore_secret.display()),
        None,
    )
    .map_err(coded)?;
    let t = Instant::now();
    let (job, _) = svc
        .restore("TestBkpVault", &instance, &req)
        .await
        .map_err(coded)?;
    ensure_completed(&job, "restore")?;
    let count = |db: &str| {
        cluster.psql(
            db,
            "SELECT count(*) || ' accounts, balance sum ' || sum(abalance) FROM pgbench_accounts",
        )
    };
    say!(
        "restored in {:.1?}: source {} / restored {}",
        t.elapsed(),
        count("empdb11"),
        count("empdb11_restored")
    );

    step(
        "pgvault backup-instance restore initialize-for-data-recovery-as-files --target-directory ...",
    )?;
    let out_dir = work.path().join("out");
    let req = initialize_for_data_recovery_as_files(
        &first.recovery_point_id,
        &out_dir.display().to_string(),
        "empdb11",
        None,
    )
    .map_err(coded)?;
    let (job, _) = svc
        .restore("TestBkpVault", &instance, &req)
        .await
        .map_err(coded)?;
    ensure_completed(&job, "restore as files")?;
    let dump = out_dir.join("empdb11.dump");
    let listed = cluster
        .command("pg_restore")
        .arg("--list")
        .arg(&dump)
        .output()?;
    say!(
        "{} ({}), pg_restore --list shows {} entries",
        dump.display(),
        mib(std::fs::metadata(&dump)?.len()),
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .count()
    );

    step("pgvault job list --vault-name TestBkpVault -o table")?;
    let jobs = svc
        .jobs(&JobFilter::default().vault("TestBkpVault"))
        .map_err(coded)?;
    let v = Value::Array(svc.jobs_json(&jobs).await);
    say!("{}", render(&v, Format::Table));

    say!(
        "\nDone. The throwaway server and {} are removed now.",
        work.path().display()
    );
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}
