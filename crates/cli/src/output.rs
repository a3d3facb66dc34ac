//! Printing: Azure's JSON by default, or a human table with `--output table`.
//!
//! Tables pick a few columns per resource type, the way `az ... -o table` does; a value
//! that is not a known resource prints as JSON either way.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// Columns per resource `type`: (header, JSON pointer).
fn columns(kind: &str) -> Option<&'static [(&'static str, &'static str)]> {
    let k = kind.to_ascii_lowercase();
    Some(match k.as_str() {
        "microsoft.dataprotection/backupvaults" => &[
            ("Name", "/name"),
            ("Storage", "/properties/storageUrl"),
            ("State", "/properties/provisioningState"),
        ],
        "microsoft.dataprotection/backupvaults/backuppolicies" => &[
            ("Name", "/name"),
            ("Datasource types", "/properties/datasourceTypes/0"),
        ],
        "microsoft.dataprotection/backupvaults/backupinstances" => &[
            ("Name", "/name"),
            ("Datasource", "/properties/dataSourceInfo/resourceID"),
            ("Policy", "/properties/policyInfo/policyId"),
            ("Protection", "/properties/currentProtectionState"),
        ],
        "microsoft.dataprotection/backupvaults/backupinstances/recoverypoints" => &[
            ("Recovery point", "/name"),
            ("Time", "/properties/recoveryPointTime"),
            ("Tag", "/properties/retentionTagName"),
            ("Expiry", "/properties/expiryTime"),
            ("State", "/properties/recoveryPointState"),
        ],
        "microsoft.dataprotection/backupvaults/backupjobs" => &[
            ("Job", "/name"),
            ("Operation", "/properties/operation"),
            ("Status", "/properties/status"),
            ("Instance", "/properties/backupInstanceFriendlyName"),
            ("Start", "/properties/startTime"),
            ("Duration", "/properties/duration"),
            (
                "Read",
                "/properties/extendedInfo/additionalDetails/BytesRead",
            ),
            (
                "Stored",
                "/properties/extendedInfo/additionalDetails/BytesStored",
            ),
            ("Error", "/properties/errorDetails/0/code"),
        ],
        _ => return None,
    })
}

fn cell(v: Option<&Value>, pointer: &str) -> String {
    let s = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // Ids are long; the last segment is what a person reads.
    if pointer.ends_with("policyId") {
        s.rsplit('/').next().unwrap_or(&s).to_string()
    } else {
        s
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
                .map(|v| cols.iter().map(|(_, p)| cell(v.pointer(p), p)).collect())
                .collect();
            return table(&cols.iter().map(|(h, _)| *h).collect::<Vec<_>>(), &rows);
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
            "properties": {"operation": "OnDemandBackup", "status": "Completed", "duration": "00:00:01"}});
        let t = render(&Value::Array(vec![job]), Format::Table);
        assert!(t.lines().next().unwrap().starts_with("Job"));
        assert!(t.contains("OnDemandBackup  Completed"), "{t}");
    }
}
