//! `pgvault backup-policy simulate`: prints what a policy keeps over a window, as JSON or a
//! table with the reason for each recovery point's fate, and optionally draws it as an SVG.
//! The simulation itself is [`pgvault_model::simulate`].

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use pgvault_model::policy::{BackupPolicy, DataStoreType};
use pgvault_model::retention::DataStoreSpan;
use pgvault_model::simulate::{Simulation, simulate};

use crate::output::{Format, table};

/// A time on the command line: RFC 3339 or a date (midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    pgvault_model::simulate::parse_time(text)
}

pub fn run(
    policy: &BackupPolicy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
    plot: Option<&Path>,
    format: Format,
) -> anyhow::Result<()> {
    let simulation = simulate(policy, from, to, at)?;
    if let Some(path) = plot {
        std::fs::write(path, pgvault_model::plot::render_svg(&simulation))
            .with_context(|| format!("cannot write the plot to `{}`", path.display()))?;
    }
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&simulation)?,
        Format::Table => render_table(&simulation),
    };
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// One row per recovery point (its time, tag, time in each tier, state at the as-of time and
/// why), then the summary.
fn render_table(simulation: &Simulation) -> String {
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let stay = |spans: &[DataStoreSpan], store: DataStoreType| {
        spans
            .iter()
            .find(|s| s.data_store_type == store)
            .map(|s| match s.until {
                Some(until) => format!("{} to {}", day(s.from), day(until)),
                None => format!("{} on (kept)", day(s.from)),
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = simulation
        .recovery_points
        .iter()
        .map(|p| {
            let state = if p.state_at.is_empty() {
                p.fate.to_string()
            } else {
                p.state_at
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            };
            vec![
                p.recovery_point_time.format("%Y-%m-%d %H:%M").to_string(),
                p.retention_tag_name.clone(),
                stay(&p.data_stores, DataStoreType::VaultStore),
                stay(&p.data_stores, DataStoreType::ArchiveStore),
                state,
                p.reason.clone(),
            ]
        })
        .collect();
    let summary = simulation.summary;
    format!(
        "{}\n\nAs of {}: {} in VaultStore, {} in ArchiveStore, {} deleted ({} recovery points \
         taken from {} to {}).",
        table(
            &[
                "Recovery point (UTC)",
                "Tag",
                "Vault tier",
                "Archive tier",
                "State at",
                "Why"
            ],
            &rows
        ),
        simulation.at.format("%Y-%m-%d %H:%M UTC"),
        summary.vault_store,
        summary.archive_store,
        summary.deleted,
        simulation.recovery_points.len(),
        day(simulation.from),
        day(simulation.to),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("2025-01-01").unwrap().to_rfc3339(),
            "2025-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2025-01-01T02:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2025-01-01T01:00:00+00:00"
        );
        let error = parse_time("01/01/2025").unwrap_err();
        assert!(error.contains("2025-01-01T02:00:00Z"), "{error}");
    }
}
