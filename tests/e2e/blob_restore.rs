//! Restore as files into a Blob container (Azure's `RestoreFilesTargetInfo` with an
//! `AzureBlobs` target), against Azurite: the dump lands as a blob, is downloaded and
//! restored with the real pg_restore into a new database that matches the source; a second
//! restore to the same name is refused and leaves the first blob as it was; a plain SQL file
//! of one table loads with psql; bad targets say what is wrong.

use object_store::ObjectStore;
use pgvault_testkit::{Azurite, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use serde_json::Value;

use crate::support::{World, cluster, plain_dump, sample_database};

const CONTAINER: &str = "restores";

/// The container as `--target-blob-container-url` takes it: Azure's form, which the emulator
/// settings send to Azurite.
fn container_url(container: &str) -> String {
    format!("https://{DEV_ACCOUNT}.blob.core.windows.net/{container}")
}

/// A blob's bytes, read from Azurite with its own client (not pgvault's); `None` if absent.
fn download(azurite: &Azurite, name: &str) -> Option<Vec<u8>> {
    download_from(azurite, CONTAINER, name)
}

/// A blob's bytes in `container`, read from Azurite with its own client; `None` if absent.
pub fn download_from(azurite: &Azurite, container: &str, name: &str) -> Option<Vec<u8>> {
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(DEV_ACCOUNT)
        .with_access_key(DEV_ACCOUNT_KEY)
        .with_container_name(container)
        // Azurite serves path-style URLs: the account comes first in the path.
        .with_endpoint(format!("{}/{DEV_ACCOUNT}", azurite.blob_url()))
        .with_allow_http(true)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match store.get(&object_store::path::Path::from(name)).await {
            Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("downloading {name}: {e}"),
        }
    })
}

struct Restorer<'a> {
    w: &'a World,
    instance: String,
    rp: String,
}

impl Restorer<'_> {
    /// `initialize-for-data-recovery-as-files` with `target` flags, then `restore trigger`:
    /// the finished job, or the stderr of the step that failed.
    fn restore<S: AsRef<str>>(&self, target: &[S], options: &[&str]) -> Result<Value, String> {
        let mut args = vec![
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--vault-name",
            "BlobVault",
            "--backup-instance-name",
            &self.instance,
            "--recovery-point-id",
            &self.rp,
        ];
        args.extend(target.iter().map(AsRef::as_ref));
        args.extend_from_slice(options);
        let out = self.w.run(&args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let request: Value = serde_json::from_slice(&out.stdout).unwrap();
        let file = self.w.write("request.json", &request.to_string());
        let out = self.w.run(&[
            "backup-instance",
            "restore",
            "trigger",
            "--vault-name",
            "BlobVault",
            "--backup-instance-name",
            &self.instance,
            "--restore-request-object",
            file.to_str().unwrap(),
        ]);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn detail<'a>(job: &'a Value, key: &str) -> &'a str {
    job["properties"]["extendedInfo"]["additionalDetails"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {job:#}"))
}

#[test]
fn a_restore_as_files_into_a_blob_container_is_a_dump_that_restores() {
    let azurite = Azurite::start();
    let mut w = World::new();
    w.env.extend(azurite.env());
    let db = sample_database("blobfiles", 5_000);

    // The vault lives in the same container (its creation makes the container); the
    // restored files go beside it.
    let template = w.json(&[
        "backup-policy",
        "get-default-policy-template",
        "--datasource-type",
        "AzureDatabaseForPostgreSQLFlexibleServer",
    ]);
    let policy = w.write("policy.json", &template.to_string());
    w.json(&[
        "backup-vault",
        "create",
        "--vault-name",
        "BlobVault",
        "--storage-url",
        &format!("az://{DEV_ACCOUNT}/{CONTAINER}/vault"),
    ]);
    w.json(&[
        "backup-policy",
        "create",
        "--vault-name",
        "BlobVault",
        "--backup-policy-name",
        "OssPolicy",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let instance = w.protect("BlobVault", &db, &w.admin_secret(&db));
    let job = w.backup("BlobVault", &instance);
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    let rp = w.recovery_points("BlobVault", &instance)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = Restorer {
        w: &w,
        instance,
        rp,
    };
    let url = container_url(CONTAINER);
    let to_container = |name: &str| -> Vec<String> {
        [
            "--target-blob-container-url",
            &url,
            "--target-file-name",
            name,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // The custom-format dump, as a blob named <file name>.dump.
    let job = r.restore(&to_container("daily/empdb"), &[]).unwrap();
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    assert_eq!(detail(&job, "RestoreTargetContainer"), url);
    assert_eq!(
        detail(&job, "RestoreTargetBlob"),
        format!("{url}/daily/empdb.dump")
    );
    let dump = download(&azurite, "daily/empdb.dump").expect("the blob was written");
    assert!(dump.starts_with(b"PGDMP"), "not a custom-format archive");
    assert_eq!(detail(&job, "BytesWritten"), dump.len().to_string());
    // It is a real dump: pg_restore loads it into a new database equal to the source.
    let c = cluster();
    let restored = c.create_database("blobfiles_restored");
    let file = w.path("downloaded.dump");
    std::fs::write(&file, &dump).unwrap();
    let out = c
        .command("pg_restore")
        .args(["--no-owner", "--no-acl", "--exit-on-error", "-d", &restored])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(plain_dump(&restored), plain_dump(&db));

    // FailIfExists: the same name again is refused, naming the blob, and the first is intact.
    let refused = r.restore(&to_container("daily/empdb"), &[]).unwrap_err();
    assert!(
        refused.contains("already exists") && refused.contains("daily/empdb.dump"),
        "{refused}"
    );
    assert!(refused.contains("--target-file-name"), "{refused}");
    assert_eq!(download(&azurite, "daily/empdb.dump").unwrap(), dump);

    // Plain SQL of one table, which psql loads.
    let job = r
        .restore(
            &to_container("orders"),
            &["--format", "plain", "--tables", "sales.orders"],
        )
        .unwrap();
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
    let sql = download(&azurite, "orders.sql").expect("the SQL blob was written");
    assert_eq!(detail(&job, "BytesWritten"), sql.len().to_string());
    let sql = String::from_utf8(sql).unwrap();
    assert!(
        sql.contains("COPY \"sales\".\"orders\""),
        "{}",
        &sql[..sql.len().min(2000)]
    );
    assert!(!sql.contains("\"notes\""));
    // Into an empty database: the SQL creates the table's schema itself.
    let loaded = c.create_database("blobfiles_sql");
    let sql_file = w.path("orders.sql");
    std::fs::write(&sql_file, &sql).unwrap();
    let out = c
        .command("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", &loaded, "-f"])
        .arg(&sql_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = "SELECT count(*), sum(amount) FROM sales.orders";
    assert_eq!(c.psql(&loaded, count), c.psql(&db, count));

    // A custom-format file is the whole archive: a selection is refused, as for a folder.
    let refused = r
        .restore(&to_container("x"), &["--tables", "sales.orders"])
        .unwrap_err();
    assert!(refused.contains("--format plain"), "{refused}");

    // Bad targets say what is wrong.
    let bad = r
        .restore(
            &[
                "--target-blob-container-url",
                &format!("https://{DEV_ACCOUNT}.blob.core.windows.net/Bad_Container"),
            ],
            &[],
        )
        .unwrap_err();
    assert!(bad.contains("not a container name"), "{bad}");
    let sas = r
        .restore(
            &[
                "--target-blob-container-url",
                &format!("{url}?sv=2024&sig=S3CRETSIG"),
            ],
            &[],
        )
        .unwrap_err();
    assert!(sas.contains("AZURE_STORAGE_SAS_TOKEN"), "{sas}");
    assert!(!sas.contains("S3CRETSIG"), "{sas}");
    let missing = r
        .restore(
            &[
                "--target-blob-container-url",
                &container_url("no-such-container"),
            ],
            &[],
        )
        .unwrap_err();
    assert!(
        missing.contains("container `no-such-container` does not exist"),
        "{missing}"
    );
    let both = r
        .restore(
            &[
                "--target-blob-container-url",
                &url,
                "--target-directory",
                w.path("out").to_str().unwrap(),
            ],
            &[],
        )
        .unwrap_err();
    assert!(both.contains("not both"), "{both}");
    let neither = r.restore::<&str>(&[], &[]).unwrap_err();
    assert!(neither.contains("--target-blob-container-url"), "{neither}");
    // The folder form still works.
    let job = r
        .restore(
            &["--target-directory", w.path("out").to_str().unwrap()],
            &[],
        )
        .unwrap();
    assert_eq!(job["properties"]["status"], "Completed", "{job:#}");
}
