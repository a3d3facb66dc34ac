//! The web console in a real browser (headless Chromium through WebDriver): sign in with an
//! API token, configure backup of a real database through the wizard (first with a login that
//! lacks privileges: the readiness error and its grant script appear; the administrator runs
//! the script; then it is ready and protected), Backup Now and watch the job complete, restore
//! into a new database and compare it with its source. Each page is saved as a screenshot under
//! the tests' output folder (`target/tmp/console-screenshots`).

use std::path::PathBuf;

use crate::sdk::{Server, contributor_token};
use crate::support::{World, cluster, plain_dump, sample_database};
use crate::webdriver::Browser;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

#[test]
fn an_administrator_protects_backs_up_and_restores_a_database_in_the_browser() {
    let w = World::new();
    let c = cluster();
    let db = sample_database("console", 3_000);
    let restored = format!("{db}_restored");
    w.vault_with_policy("ConsoleVault");
    // A login that may connect but not read the tables: what an administrator starts with.
    let weak = format!("{db}_weak");
    c.psql(
        "postgres",
        &format!("CREATE ROLE {weak} LOGIN PASSWORD 'weak-pw'"),
    );
    let weak_secret = w.secret_file("weak.secret", &db, &weak, "weak-pw");
    let admin_secret = w.admin_secret("postgres");
    let server_url = format!("postgres://{}:{}", c.host(), c.port());
    let token = contributor_token(&w);
    let (mut server, base) = Server::start_with(&w, &[]);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let b = Browser::start(&screenshots());

    // Sign in.
    b.go(&format!("{base}/"));
    assert!(
        b.url().ends_with("/sign-in"),
        "an anonymous visit goes to sign-in: {}",
        b.url()
    );
    b.screenshot("01-sign-in");
    b.fill("#token", &token);
    b.click_and_load("form.card button[type=submit]");
    assert_eq!(b.text("main h1"), "Backup center");

    // Configure backup: list the server's databases with the weak login.
    b.go(&format!("{base}/configure"));
    b.fill("input[name=server]", &server_url);
    b.fill("input[name=secret]", &admin_secret);
    b.click_and_load("form.filters button[type=submit]");
    assert!(b.has(&format!("#db-{db}")), "the database is listed");
    b.click(&format!("#db-{db}"));
    b.fill(&format!("input[name=\"secret:{db}\"]"), &weak_secret);
    b.click_and_load("button[value=check]");
    let refused = b.text(".problem strong");
    assert_eq!(refused, "UserErrorMissingDBPermissions");
    assert!(
        b.text(".problem").contains(&weak),
        "the error names the login"
    );
    b.click("details summary");
    let script = b.text("details pre.output");
    assert!(
        script.contains("GRANT"),
        "a grant script is offered: {script}"
    );
    assert!(b.has("a[download]"), "the grant script can be downloaded");
    b.screenshot("02-configure-readiness-error");

    // The administrator runs the script; the database is now ready, then protected.
    c.psql(&db, &script);
    b.click_and_load("button[value=check]");
    assert_eq!(b.text("td .badge.ok"), "Ready");
    b.click_and_load("button[value=protect]");
    assert_eq!(b.text("td .badge.ok"), "Protected");
    b.screenshot("03-configure-protected");

    // The backup center shows it; its page offers Backup Now.
    b.go(&format!("{base}/"));
    b.screenshot("04-backup-center");
    b.click_and_load("a[href^=\"/vaults/ConsoleVault/instances/\"]");
    let instance_url = b.url();
    assert!(b.text("main h1").starts_with("Backup instance"));
    b.click_and_load("form[action$=\"/backup\"] button");
    // The operation's page follows the backup to its job, whose page reloads while it runs.
    assert_eq!(b.wait_for("dl.facts .badge.ok", 120), "Completed");
    assert!(b.url().contains("/jobs/"), "{}", b.url());
    b.screenshot("05-backup-job");
    // The backup center now counts the point and the bytes the vault stores.
    b.go(&format!("{base}/"));
    let vaults = b.text("main table");
    assert!(
        vaults.contains("ConsoleVault") && vaults.contains("KiB"),
        "{vaults}"
    );
    assert!(!vaults.contains("unreadable"), "{vaults}");

    // Restore the recovery point into a new database.
    b.go(&instance_url);
    b.screenshot("06-instance");
    b.click_and_load("a[href*=\"/restore?point=\"]");
    b.fill("#server", &server_url);
    b.fill("#database", &restored);
    b.fill("#secret", &admin_secret);
    b.screenshot("07-restore-wizard");
    b.click_and_load("form.card button[type=submit]");
    assert_eq!(b.wait_for("dl.facts .badge.ok", 120), "Completed");
    b.screenshot("08-restore-job");
    assert_eq!(plain_dump(&restored), plain_dump(&db));

    // The jobs page lists all three, and nothing secret reached the server's log.
    b.go(&format!("{base}/jobs"));
    let jobs = b.text("main table");
    for op in ["ConfigureBackup", "OnDemandBackup", "Restore"] {
        assert!(
            jobs.contains(op),
            "{op} missing from the jobs page:\n{jobs}"
        );
    }
    b.screenshot("09-jobs");
    let log = server.log();
    assert!(
        !log.contains(&token) && !log.contains("weak-pw"),
        "a secret reached the log:\n{log}"
    );
}
