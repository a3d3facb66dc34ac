//! Tests of the test kit against the real server it starts: databases are separate, the client
//! tools run, passwords are checked, and clusters are cleaned up both on drop and when the
//! process that started them is killed.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgvault_testkit::TestCluster;

#[test]
fn databases_are_created_fresh_and_kept_apart() {
    let cluster = TestCluster::shared();
    let first = cluster.create_database("Kit Apart!");
    let second = cluster.create_database("Kit Apart!");
    assert_ne!(first, second);
    assert!(first.starts_with("kit_apart__"), "{first}");

    cluster.psql(
        &first,
        "CREATE TABLE t (id int PRIMARY KEY, note text);
         INSERT INTO t VALUES (1, 'one'), (2, 'two');",
    );
    assert_eq!(
        cluster.psql(&first, "SELECT id, note FROM t ORDER BY id"),
        "1|one\n2|two"
    );
    assert_eq!(cluster.psql(&second, "SELECT to_regclass('t')"), "");
    assert_eq!(cluster.psql(&second, "SELECT current_database()"), second);
}

#[test]
fn the_server_speaks_utf8_and_runs_as_the_admin() {
    let cluster = TestCluster::shared();
    assert_eq!(
        cluster.psql("postgres", "SHOW server_encoding; SELECT current_user; SELECT rolsuper FROM pg_roles WHERE rolname = current_user"),
        format!("UTF8\n{}\nt", cluster.admin_user())
    );
}

#[test]
fn admin_url_names_the_server() {
    let cluster = TestCluster::shared();
    let url = cluster.admin_url();
    assert!(
        url.starts_with(&format!("postgres://{}:", cluster.admin_user())),
        "{url}"
    );
    assert!(
        url.ends_with(&format!("@{}:{}/postgres", cluster.host(), cluster.port())),
        "{url}"
    );
    assert!(cluster.admin_url_for("other db").ends_with("/other%20db"));
}

#[test]
fn client_tools_in_bindir_run() {
    let cluster = TestCluster::shared();
    for (tool, banner) in [
        ("pg_dump", "pg_dump (PostgreSQL)"),
        ("pg_restore", "pg_restore (PostgreSQL)"),
        ("psql", "psql (PostgreSQL)"),
        ("pgbench", "pgbench (PostgreSQL)"),
    ] {
        let output = cluster.command(tool).arg("--version").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{tool} --version: {output:?}");
        assert!(stdout.starts_with(banner), "{tool} --version: {stdout}");
    }
}

#[test]
fn pg_dump_dumps_a_test_database() {
    let cluster = TestCluster::shared();
    let database = cluster.create_database("kit_dump");
    cluster.psql(&database, "CREATE TABLE dumped (x int)");
    let output = cluster
        .command("pg_dump")
        .args(["--schema-only", "-d", &database])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("CREATE TABLE public.dumped"));
}

#[test]
fn only_the_right_password_gets_in() {
    let cluster = TestCluster::shared();
    let connect = |password: &str| {
        cluster
            .command("psql")
            .env("PGPASSWORD", password)
            .args(["-X", "-w", "-At", "-d", "postgres", "-c", "SELECT 1"])
            .output()
            .unwrap()
    };

    let right = connect(cluster.admin_password());
    assert!(right.status.success(), "{right:?}");

    let wrong = connect("not-the-password");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

#[test]
fn an_own_cluster_is_gone_after_drop() {
    let cluster = TestCluster::start();
    assert_eq!(cluster.psql("postgres", "SELECT 40 + 2"), "42");
    let dir = cluster_dir(&cluster);
    let port = cluster.port();
    assert!(dir.is_dir());

    drop(cluster);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port}"
    );
}

/// Set in the child process that [`a_killed_process_leaves_nothing_behind`] starts.
const CHILD_ENV: &str = "PGVAULT_TESTKIT_KILLED_CHILD";
const MARKER: &str = "pgvault-testkit-cluster:";

/// The reaper is what cleans up the shared cluster, so test it the hard way: a child process
/// starts a cluster and is killed with SIGKILL, which runs no destructor at all.
#[test]
fn a_killed_process_leaves_nothing_behind() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child: start a cluster, say where it is, and wait to be killed.
        let cluster = TestCluster::start();
        println!(
            "{MARKER}{} {}",
            cluster_dir(&cluster).display(),
            cluster.port()
        );
        loop {
            std::thread::park();
        }
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_leaves_nothing_behind",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let announced = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix(MARKER).map(str::to_owned));
    let Some(announced) = announced else {
        let output = child.wait_with_output().unwrap();
        panic!(
            "the child never announced its cluster: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let (dir, port) = announced.rsplit_once(' ').unwrap();
    let (dir, port) = (PathBuf::from(dir), port.parse::<u16>().unwrap());
    assert!(dir.is_dir());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    child.kill().unwrap();
    child.wait().unwrap();

    // The reaper is another process, and we cannot wait on it; look until it is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists a minute after its process was killed",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port}"
    );
}

/// The cluster's own directory: the parent of its data directory.
fn cluster_dir(cluster: &TestCluster) -> PathBuf {
    cluster
        .data_dir()
        .and_then(|data| data.parent())
        .expect("a cluster from TestCluster::start has a directory")
        .to_path_buf()
}
