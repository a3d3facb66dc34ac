//! `-o table` is for people (issue 16): sizes in binary units, durations in seconds and
//! minutes, times in UTC to the second, and one form of the instance in every job's row,
//! on a database shaped like the ones the issue was found on. JSON keeps Azure's forms, and
//! a job reports the datasource type its instance was created with.

use std::collections::BTreeMap;

use crate::support::{World, cluster, owned_database};

/// An aligned table's rows as header-to-cell maps, the columns found from the dashes line
/// under the headers (cells may be empty, so splitting on spaces would shift them).
fn parse_table(text: &str) -> Vec<BTreeMap<String, String>> {
    let lines: Vec<&str> = text.lines().collect();
    let dashes = lines
        .iter()
        .position(|l| l.starts_with('-'))
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in lines[dashes].char_indices().chain([(usize::MAX, ' ')]) {
        match (c, start) {
            ('-', None) => start = Some(i),
            (' ', Some(s)) => {
                spans.push(s);
                start = None;
            }
            _ => {}
        }
    }
    let cell = |line: &str, i: usize| -> String {
        let from = spans[i];
        let to = spans.get(i + 1).copied().unwrap_or(usize::MAX);
        line.get(from..to.min(line.len()))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let headers: Vec<String> = (0..spans.len())
        .map(|i| cell(lines[dashes - 1], i))
        .collect();
    lines[dashes + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|line| {
            headers
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), cell(line, i)))
                .collect()
        })
        .collect()
}

fn stdout(w: &World, args: &[&str]) -> String {
    let out = w.run(args);
    assert!(
        out.status.success(),
        "pgvault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `2026-12-06T11:48:01Z`: UTC, to the second.
fn is_time_to_the_second(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[10] == b'T'
        && b[19] == b'Z'
        && s.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            13 | 16 => c == ':',
            10 | 19 => true,
            _ => c.is_ascii_digit(),
        })
}

/// `0.32 s`, `4.5 s`, `45 s`, `1 min 34 s`, `2 h 5 min`, `3 d 4 h`, `< 0.01 s`.
fn is_human_duration(s: &str) -> bool {
    let words: Vec<&str> = s.split(' ').collect();
    let number = |w: &str| {
        !w.is_empty()
            && w.chars().all(|c| c.is_ascii_digit() || c == '.')
            && w.split('.').nth(1).is_none_or(|f| f.len() <= 2)
    };
    match words.as_slice() {
        ["<", "0.01", "s"] => true,
        [n, unit] => number(n) && ["s", "min", "h", "d"].contains(unit),
        [n, unit, m, small] => {
            number(n)
                && number(m)
                && matches!((*unit, *small), ("min", "s") | ("h", "min") | ("d", "h"))
        }
        _ => false,
    }
}

/// Whether a text has a number with seven decimals (a .NET TimeSpan or a tick-precise time).
fn has_seven_decimals(s: &str) -> bool {
    s.split('.')
        .skip(1)
        .any(|after| after.len() >= 7 && after[..7].chars().all(|c| c.is_ascii_digit()))
}

#[test]
fn job_and_recovery_point_tables_read_as_people_write() {
    let w = World::new();
    let db = owned_database("tables", 20_000);
    w.vault_with_policy("TableVault");
    let instance = w.protect("TableVault", &db.name, &w.admin_secret(&db.name));
    let first = w.backup("TableVault", &instance);
    let second = w.backup("TableVault", &instance);
    let first_rp = first["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap();
    // A deletion records the instance by its name alone; a backup by Azure's friendly name
    // too: the table must show one form for both.
    w.json(&[
        "recovery-point",
        "delete",
        "--vault-name",
        "TableVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        first_rp,
        "--yes",
    ]);

    let text = stdout(
        &w,
        &["job", "list", "--vault-name", "TableVault", "-o", "table"],
    );
    assert!(!has_seven_decimals(&text), "{text}");
    let rows = parse_table(&text);
    let operations: Vec<&str> = rows.iter().map(|r| r["Operation"].as_str()).collect();
    assert_eq!(
        operations,
        [
            "DeleteRecoveryPoint",
            "OnDemandBackup",
            "OnDemandBackup",
            "ConfigureBackup"
        ],
        "{text}"
    );
    for row in &rows {
        assert_eq!(
            row["Instance"], instance,
            "one form of the instance:\n{text}"
        );
        assert!(is_time_to_the_second(&row["Start"]), "{row:?}");
        assert!(is_human_duration(&row["Duration"]), "{row:?}");
        for size in [&row["Read"], &row["Stored"]] {
            let unit = size.rsplit(' ').next().unwrap();
            assert!(
                ["B", "KiB", "MiB", "GiB"].contains(&unit),
                "{size:?} in {row:?}"
            );
        }
    }
    // A real backup of a database this size reads megabytes.
    let backup = &rows[2];
    assert!(
        backup["Read"].ends_with(" MiB") || backup["Read"].ends_with(" KiB"),
        "{backup:?}"
    );
    let read: u64 = first["properties"]["extendedInfo"]["additionalDetails"]["BytesRead"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!backup["Read"].contains(&read.to_string()), "{backup:?}");

    // `job show`: the job's row, then its steps, the same way.
    let job_id = second["name"].as_str().unwrap();
    let shown = stdout(&w, &["job", "show", "--job-id", job_id, "-o", "table"]);
    assert!(!has_seven_decimals(&shown), "{shown}");
    let tasks_text = shown
        .split("\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{shown}"));
    let tasks = parse_table(tasks_text);
    assert_eq!(tasks.len(), 4, "{shown}");
    for task in &tasks {
        assert!(is_time_to_the_second(&task["Start"]), "{task:?}");
        assert!(is_human_duration(&task["Duration"]), "{task:?}");
    }
    // The Upload step's own words give sizes the same way, not a byte count.
    assert!(
        shown.contains(" read, ") && !shown.contains(&format!("{read} bytes read")),
        "{shown}"
    );
    assert!(shown.contains("MiB read, "), "{shown}");

    // Recovery points: times to the second.
    let text = stdout(
        &w,
        &[
            "recovery-point",
            "list",
            "--vault-name",
            "TableVault",
            "--backup-instance-name",
            &instance,
            "-o",
            "table",
        ],
    );
    assert!(!has_seven_decimals(&text), "{text}");
    let points = parse_table(&text);
    assert_eq!(points.len(), 1, "{text}");
    assert!(is_time_to_the_second(&points[0]["Time"]), "{text}");
    assert!(is_time_to_the_second(&points[0]["Expiry"]), "{text}");

    // JSON keeps Azure's forms: byte counts, TimeSpans, ticks, the friendly name.
    let jobs = w.json(&["job", "list", "--vault-name", "TableVault"]);
    let backup = &jobs[2]["properties"];
    assert_eq!(
        backup["extendedInfo"]["additionalDetails"]["BytesRead"],
        read.to_string()
    );
    assert!(has_seven_decimals(backup["startTime"].as_str().unwrap()));
    assert!(backup["duration"].as_str().unwrap().starts_with("PT"));
    assert!(
        backup["backupInstanceFriendlyName"]
            .as_str()
            .unwrap()
            .ends_with(&format!("\\{}", db.name)),
        "{backup}"
    );
}

/// An instance created as a flexible server database reports that type in its jobs' JSON,
/// whatever the job (configure, backup, restore, delete), as Azure does.
#[test]
fn jobs_report_their_instances_datasource_type() {
    let w = World::new();
    let db = owned_database("dstype", 200);
    w.vault_with_policy("TypeVault");
    let instance = w.protect("TypeVault", &db.name, &w.admin_secret(&db.name));
    let shown = w.json(&[
        "backup-instance",
        "show",
        "--vault-name",
        "TypeVault",
        "--name",
        &instance,
    ]);
    let flexible = "Microsoft.DBforPostgreSQL/flexibleServers/databases";
    assert_eq!(
        shown["properties"]["dataSourceInfo"]["datasourceType"],
        flexible
    );
    let backup = w.backup("TypeVault", &instance);
    assert_eq!(
        backup["properties"]["dataSourceType"], flexible,
        "{backup:#}"
    );
    let rp = backup["properties"]["result"]["recoveryPointId"]
        .as_str()
        .unwrap();
    let out_dir = w.path("files");
    let req = w.json(&[
        "backup-instance",
        "restore",
        "initialize-for-data-recovery-as-files",
        "--vault-name",
        "TypeVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        rp,
        "--target-directory",
        out_dir.to_str().unwrap(),
        "--target-file-name",
        "dump",
    ]);
    let req_file = w.write("restore-files.json", &req.to_string());
    w.json(&[
        "backup-instance",
        "restore",
        "trigger",
        "--vault-name",
        "TypeVault",
        "--backup-instance-name",
        &instance,
        "--restore-request-object",
        req_file.to_str().unwrap(),
    ]);
    // A deletion (as a retention sweep's and a rehydration's) reads the instance too.
    w.backup("TypeVault", &instance);
    w.json(&[
        "recovery-point",
        "delete",
        "--vault-name",
        "TypeVault",
        "--backup-instance-name",
        &instance,
        "--recovery-point-id",
        rp,
        "--yes",
    ]);
    let jobs = w.json(&["job", "list", "--vault-name", "TypeVault"]);
    let kinds: Vec<(&str, &str)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["properties"]["pgvaultOperation"].as_str().unwrap(),
                j["properties"]["dataSourceType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("DeleteRecoveryPoint", flexible),
            ("OnDemandBackup", flexible),
            ("Restore", flexible),
            ("OnDemandBackup", flexible),
            ("ConfigureBackup", flexible)
        ]
    );
    // And Azure's friendly name, the same for every job.
    for job in jobs.as_array().unwrap() {
        assert_eq!(
            job["properties"]["backupInstanceFriendlyName"],
            format!("{}\\{}", cluster().host(), db.name),
            "{job:#}"
        );
    }
}
