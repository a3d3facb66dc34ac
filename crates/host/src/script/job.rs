//! Rhai bindings for the job history: `jobs(#{vault, instance, status, operation, since,
//! before, limit})` and `job(id)`, as Azure's job JSON. The window's end is `before`, not the
//! CLI's `--until`, because `until` is a reserved word in Rhai and cannot be a map key.
//!
//! A window may be given as times or, since a script has no clock of its own, as a duration
//! back from now (`since: "P7D"`); [`job_filter`] takes the time as a parameter, so its
//! tests pin it, and only the binding reads the clock.

use chrono::{DateTime, Utc};
use rhai::{Dynamic, Engine, Map};

use super::{RhaiResult, ScriptContext, coded, fail, to_dynamic};
use pgvault_core::model::duration::IsoDuration;
use pgvault_core::model::job::{JobFilter, retention_cutoff};
use pgvault_core::model::simulate::parse_time;

/// A window bound: RFC 3339, a date (its midnight UTC), or an ISO 8601 duration meaning that
/// long before `now` (subtracted calendar-wise, as `job prune --older-than` does).
fn bound(key: &str, text: &str, now: DateTime<Utc>) -> RhaiResult<DateTime<Utc>> {
    if text.trim_start().starts_with(['P', 'p']) {
        let back: IsoDuration = text.parse().map_err(|e| fail(format!("`{key}`: {e}")))?;
        return Ok(retention_cutoff(now, &back));
    }
    parse_time(text).map_err(|_| {
        fail(format!(
            "`{key}` must be a time (2025-01-01 or 2025-01-01T02:00:00Z) or a duration back \
             from now (P7D, PT12H), not {text:?}"
        ))
    })
}

/// The filter `jobs(#{..})` asks for, checked as `job list` checks its flags.
pub(super) fn job_filter(opts: &Map, now: DateTime<Utc>) -> RhaiResult<JobFilter> {
    let mut filter = JobFilter::default();
    for (k, v) in opts {
        if k.as_str() == "limit" {
            let n = v
                .as_int()
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| fail(format!("`limit` must be a number of jobs, not {v}")))?;
            filter.limit = Some(n);
            continue;
        }
        let s = v
            .clone()
            .into_string()
            .map_err(|t| fail(format!("`{k}` must be a string, not {t}")))?;
        match k.as_str() {
            "vault" => filter.vault = Some(s),
            "instance" => filter.instance = Some(s),
            "status" => filter.status = Some(s.parse().map_err(fail)?),
            "operation" => filter.operation = Some(s.parse().map_err(fail)?),
            "since" => filter.started_after = Some(bound("since", &s, now)?),
            "before" => filter.started_before = Some(bound("before", &s, now)?),
            other => {
                return Err(fail(format!(
                    "unknown job filter `{other}` (use vault, instance, status, operation, \
                     since, before, limit)"
                )));
            }
        }
    }
    if let (Some(since), Some(before)) = (filter.started_after, filter.started_before)
        && since >= before
    {
        return Err(fail(format!(
            "`since` ({}) is not before `before` ({}); the window is [since, before)",
            since.to_rfc3339(),
            before.to_rfc3339()
        )));
    }
    Ok(filter)
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    let c = ctx.clone();
    engine.register_fn("jobs", move |opts: Map| -> RhaiResult<Dynamic> {
        let filter = job_filter(&opts, c.pgvault.now())?;
        to_dynamic(&c.jobs_json(&c.pgvault.jobs(&filter).map_err(coded)?))
    });
    let c = ctx.clone();
    engine.register_fn("jobs", move || -> RhaiResult<Dynamic> {
        to_dynamic(&c.jobs_json(&c.pgvault.jobs(&JobFilter::default()).map_err(coded)?))
    });
    let c = ctx.clone();
    engine.register_fn("job", move |id: &str| -> RhaiResult<Dynamic> {
        let job = c.pgvault.job(id).map_err(coded)?;
        to_dynamic(&c.jobs_json(std::slice::from_ref(&job))[0])
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_core::model::job::{JobStatus, Operation};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Options as a script writes them, evaluated by a bare engine.
    fn opts(script: &str) -> Map {
        Engine::new()
            .eval::<Map>(script)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    #[test]
    fn job_filters_from_script_options() {
        let now = at("2026-03-31T12:00:00Z");
        let cases: [(&str, JobFilter); 7] = [
            ("#{}", JobFilter::default()),
            (
                r#"#{ vault: "V", instance: "db1", status: "failed", operation: "ondemandbackup" }"#,
                JobFilter::default()
                    .vault("V")
                    .instance("db1")
                    .status(JobStatus::Failed)
                    .operation(Operation::OnDemandBackup),
            ),
            (
                r#"#{ since: "P7D" }"#,
                JobFilter::default().started_after(at("2026-03-24T12:00:00Z")),
            ),
            (
                // Calendar-wise, as job prune: a month before March 31st is February's end.
                r#"#{ since: "P1M", before: "PT1H" }"#,
                JobFilter::default()
                    .started_after(at("2026-02-28T12:00:00Z"))
                    .started_before(at("2026-03-31T11:00:00Z")),
            ),
            (
                r#"#{ since: "2026-01-01", before: "2026-02-01T06:00:00+01:00" }"#,
                JobFilter::default()
                    .started_after(at("2026-01-01T00:00:00Z"))
                    .started_before(at("2026-02-01T05:00:00Z")),
            ),
            (r#"#{ limit: 3 }"#, JobFilter::default().limit(3)),
            (
                r#"#{ status: "Failed", since: "P7D", limit: 0 }"#,
                JobFilter::default()
                    .status(JobStatus::Failed)
                    .started_after(at("2026-03-24T12:00:00Z"))
                    .limit(0),
            ),
        ];
        for (script, want) in cases {
            let got = job_filter(&opts(script), now).unwrap_or_else(|e| panic!("{script}: {e}"));
            assert_eq!(got, want, "{script}");
        }
    }

    #[test]
    fn bad_job_filters_say_what_to_write() {
        let now = at("2026-03-31T12:00:00Z");
        let cases = [
            (r#"#{ colour: "red" }"#, "unknown job filter `colour`"),
            (r#"#{ since: "last week" }"#, "duration back from now (P7D"),
            (r#"#{ since: "P7X" }"#, "`since`:"),
            (
                r#"#{ since: "P1D", before: "P7D" }"#,
                "is not before `before`",
            ),
            (r#"#{ limit: -1 }"#, "`limit` must be a number of jobs"),
            (r#"#{ limit: "3" }"#, "`limit` must be a number of jobs"),
            (r#"#{ status: 1 }"#, "`status` must be a string"),
            (r#"#{ status: "Sleeping" }"#, "is not a job status"),
        ];
        for (script, says) in cases {
            let err = job_filter(&opts(script), now).unwrap_err().to_string();
            assert!(err.contains(says), "{script}: {err}");
        }
    }
}
