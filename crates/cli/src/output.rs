//! Printing: Azure's JSON by default, or a human table with `--output table`.
//!
//! Tables pick a few columns per resource type, the way `az ... -o table` does; a value
//! that is not a known resource prints as JSON either way. Cells are for people: sizes in
//! binary units, durations in seconds and minutes, times in UTC to the second (see
//! [`pgvault_model::human`]); JSON keeps Azure's exact forms.

use serde_json::Value;

use pgvault_model::human;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// How a column's JSON value reads in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// As it is.
    Text,
    /// The last segment of a resource id: ids are long, and their end is what a person reads.
    Name,
    /// A timestamp, to the second in UTC.
    Time,
    /// An ISO 8601 duration (or an older job's .NET TimeSpan), as `0.32 s` or `1 min 34 s`.
    Duration,
    /// A byte count, in KiB, MiB, GiB.
    Size,
}

/// Columns per resource `type`: (header, JSON pointer, how it reads).
fn columns(kind: &str) -> Option<&'static [(&'static str, &'static str, Cell)]> {
    use Cell::*;
    let k = kind.to_ascii_lowercase();
    Some(match k.as_str() {
        "microsoft.dataprotection/backupvaults" => &[
            ("Name", "/name", Text),
            ("Storage", "/properties/storageUrl", Text),
            ("State", "/properties/provisioningState", Text),
        ],
        "microsoft.dataprotection/backupvaults/backuppolicies" => &[
            ("Name", "/name", Text),
            ("Datasource types", "/properties/datasourceTypes/0", Text),
        ],
        "microsoft.dataprotection/backupvaults/backupinstances" => &[
            ("Name", "/name", Text),
            ("Datasource", "/properties/dataSourceInfo/resourceID", Text),
            ("Policy", "/properties/policyInfo/policyId", Name),
            ("Protection", "/properties/currentProtectionState", Text),
        ],
        "microsoft.dataprotection/backupvaults/backupinstances/recoverypoints" => &[
            ("Recovery point", "/name", Text),
            ("Time", "/properties/recoveryPointTime", Time),
            ("Tag", "/properties/retentionTagName", Text),
            ("Expiry", "/properties/expiryTime", Time),
            ("State", "/properties/recoveryPointState", Text),
        ],
        // The instance by its name, as `backup-instance list` and every other command name
        // it: Azure's friendly name (`server\database`) is recorded only by the jobs that
        // read the instance, so a column of it mixed two forms.
        "microsoft.dataprotection/backupvaults/backupjobs" => &[
            ("Job", "/name", Text),
            // pgvault's operation, finer than Azure's `operation` (a scheduled backup and
            // an on-demand one are both Azure's `Backup`).
            ("Operation", "/properties/pgvaultOperation", Text),
            ("Status", "/properties/status", Text),
            ("Instance", "/properties/backupInstanceId", Name),
            ("Start", "/properties/startTime", Time),
            ("Duration", "/properties/duration", Duration),
            (
                "Read",
                "/properties/extendedInfo/additionalDetails/BytesRead",
                Size,
            ),
            (
                "Stored",
                "/properties/extendedInfo/additionalDetails/BytesStored",
                Size,
            ),
            ("Error", "/properties/errorDetails/0/code", Text),
        ],
        _ => return None,
    })
}

fn cell(v: Option<&Value>, how: Cell) -> String {
    let s = match v {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match how {
        Cell::Text => s,
        Cell::Name => s.rsplit('/').next().unwrap_or(&s).to_string(),
        Cell::Time => human::time_text(&s),
        Cell::Duration => human::duration_text(&s),
        Cell::Size => human::size_text(&s),
    }
}

/// Renders rows as an aligned text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

pub fn render(value: &Value, format: Format) -> String {
    if format == Format::Table {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let kind = items
            .first()
            .and_then(|v| v["type"].as_str())
            .unwrap_or_default();
        if let Some(cols) = columns(kind) {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|v| {
                    cols.iter()
                        .map(|(_, pointer, how)| cell(v.pointer(pointer), *how))
                        .collect()
                })
                .collect();
            return table(&cols.iter().map(|(h, ..)| *h).collect::<Vec<_>>(), &rows);
        }
        if items.is_empty() {
            return "(none)".into();
        }
    }
    serde_json::to_string_pretty(value).expect("JSON values serialize")
}

/// Prints `value` as `format` asks. A closed stdout (`pgvault job list -o table | head`) is
/// an error of kind `BrokenPipe` for the caller to pass up, which `main` ends quietly on.
pub fn print(value: &Value, format: Format) -> std::io::Result<()> {
    line(&render(value, format))
}

/// Writes `text` and a newline to stdout, through a handle whose errors come back: `println!`
/// panics when the reader has gone, and ending the process here instead would skip the
/// destructors that release vault locks.
pub fn line(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_render_as_a_table() {
        let job = serde_json::json!({"name": "j1", "type": "Microsoft.DataProtection/backupVaults/backupJobs",
            "properties": {"operation": "Backup", "pgvaultOperation": "OnDemandBackup", "status": "Completed", "duration": "PT1S"}});
        let t = render(&Value::Array(vec![job]), Format::Table);
        assert!(t.lines().next().unwrap().starts_with("Job"));
        assert!(t.contains("OnDemandBackup  Completed"), "{t}");
    }

    /// A backup as `job list -o table` got it before: raw bytes, a .NET TimeSpan with seven
    /// decimals, a time to the tick, and the friendly name for some jobs only.
    #[test]
    fn job_cells_are_for_people() {
        let job = |name: &str, friendly: Option<&str>| {
            serde_json::json!({"name": name, "type": "Microsoft.DataProtection/backupVaults/backupJobs",
                "properties": {"operation": "Backup", "pgvaultOperation": "OnDemandBackup", "status": "Completed",
                    "backupInstanceFriendlyName": friendly,
                    "backupInstanceId": "/providers/Microsoft.DataProtection/backupVaults/V/backupInstances/pg1-sales-0b0e",
                    "startTime": "2026-03-01T02:00:00.1234567Z", "duration": "00:00:00.3195821",
                    "extendedInfo": {"additionalDetails": {"BytesRead": "21740989", "BytesStored": "1023"}}}})
        };
        let t = render(
            &Value::Array(vec![
                job("j1", Some("pg1\\sales")),
                job("j2", Some("pg1-sales-0b0e")),
            ]),
            Format::Table,
        );
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{t}");
        for row in rows {
            for want in [
                "pg1-sales-0b0e",
                "2026-03-01T02:00:00Z",
                "0.32 s",
                "20.7 MiB",
                "1023 B",
            ] {
                assert!(row.contains(want), "{want} in {row}");
            }
            assert!(!row.contains("pg1\\sales"), "{row}");
            assert!(
                !row.contains("3195821") && !row.contains("1234567"),
                "{row}"
            );
        }
    }

    #[test]
    fn recovery_point_times_are_to_the_second() {
        let rp = serde_json::json!({"name": "rp1", "type": "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints",
            "properties": {"recoveryPointTime": "2026-03-01T02:00:00.5Z", "expiryTime": null, "retentionTagName": "Default"}});
        let t = render(&rp, Format::Table);
        assert!(
            t.contains("rp1             2026-03-01T02:00:00Z  Default"),
            "{t}"
        );
    }
}
