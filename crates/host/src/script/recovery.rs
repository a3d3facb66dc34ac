//! Rhai bindings for retention and recovery: `vault.retention_sweep`, `vault.rehydrate` and
//! `vault.verify`, so a runbook can apply retention, bring a point back from the archive tier
//! and prove recovery points read back. In a sandbox, a sweep judged at another time and a
//! rehydration that ends an existing copy sooner are destructive calls.

use rhai::{Dynamic, Engine, Map};

use super::instance::job_result;
use super::vault::VaultRef;
use super::{RhaiResult, ScriptContext, coded, fail, to_dynamic};
use pgvault_core::engine::verify::PointSelection;
use pgvault_core::model::simulate::parse_time;

use crate::retention::GcMode;

fn sweep(ctx: &ScriptContext, vault: &str, options: &Map) -> RhaiResult<Dynamic> {
    let given_at = match options.get("at") {
        Some(v) if !v.is_unit() => {
            let text = v
                .clone()
                .into_string()
                .map_err(|t| fail(format!("`at` must be a time such as 2030-01-01, not {t}")))?;
            Some(parse_time(&text).map_err(fail)?)
        }
        _ => None,
    };
    let at = given_at.unwrap_or_else(chrono::Utc::now);
    let dry_run = match options.get("dry_run") {
        Some(v) if !v.is_unit() => v
            .as_bool()
            .map_err(|t| fail(format!("`dry_run` must be true or false, not {t}")))?,
        _ => false,
    };
    if let Some(unknown) = options
        .keys()
        .find(|k| !matches!(k.as_str(), "at" | "dry_run"))
    {
        return Err(fail(format!(
            "unknown retention_sweep option `{unknown}`: use at and dry_run"
        )));
    }
    // A sweep judged at another time deletes what the policy keeps now (a future `at`) or
    // is no sweep the policy asked for (a past one): a plan only, unless destructive calls
    // are allowed.
    if given_at.is_some() && !dry_run {
        ctx.check_destructive(
            "retention_sweep with `at`",
            "deletes recovery points a sweep now would keep (give dry_run: true to only plan)",
        )?;
    }
    let outcome = ctx
        .block_on(ctx.pgvault.retention_sweep(
            vault,
            at,
            dry_run,
            // A runbook's sweep is the operator's `retention sweep`: it collects garbage.
            GcMode::Always,
        ))
        .map_err(coded)?;
    let mut value = serde_json::to_value(&outcome).expect("a sweep outcome serializes");
    if let Some(job) = &outcome.job {
        value["job"] = ctx.jobs_json(std::slice::from_ref(job))[0].clone();
        value["actionJobs"] = serde_json::Value::Array(ctx.jobs_json(&outcome.action_jobs));
    }
    to_dynamic(&value)
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    let c = ctx.clone();
    engine.register_fn(
        "retention_sweep",
        move |v: &mut VaultRef| -> RhaiResult<Dynamic> { sweep(&c, &v.name, &Map::new()) },
    );
    let c = ctx.clone();
    engine.register_fn(
        "retention_sweep",
        move |v: &mut VaultRef, options: Map| -> RhaiResult<Dynamic> {
            sweep(&c, &v.name, &options)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "rehydrate",
        move |v: &mut VaultRef, instance: &str, id: &str, days: i64| -> RhaiResult<Dynamic> {
            let days = u32::try_from(days)
                .map_err(|_| fail(format!("a rehydration lasts 10 to 30 days, not {days}")))?;
            // A second rehydration sets the copy's end anew: one that ends sooner than the
            // copy already in the vault tier shortens its life.
            if c.sandbox.is_some() {
                let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
                let point = c
                    .block_on(vault.stored_point(instance, id))
                    .map_err(coded)?;
                let until = c.pgvault.now() + chrono::TimeDelta::days(i64::from(days));
                if let Some(current) = point.vault.and_then(|m| m.rehydration_expiry_time)
                    && current > until
                {
                    c.check_destructive(
                        "rehydrate",
                        &format!(
                            "would end the rehydrated copy sooner than {}",
                            current.to_rfc3339()
                        ),
                    )?;
                }
            }
            let job = c
                .block_on(c.pgvault.rehydrate(&v.name, instance, id, days, "Standard"))
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "verify",
        move |v: &mut VaultRef, instance: &str| -> RhaiResult<Dynamic> {
            let results = c
                .block_on(
                    c.pgvault.verify_recovery_points(
                        &v.name,
                        &PointSelection::Instance(instance.into()),
                    ),
                )
                .map_err(coded)?;
            to_dynamic(&results)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "verify",
        move |v: &mut VaultRef, instance: &str, id: &str| -> RhaiResult<Dynamic> {
            let results = c
                .block_on(c.pgvault.verify_recovery_points(
                    &v.name,
                    &PointSelection::One {
                        instance: instance.into(),
                        recovery_point_id: id.into(),
                    },
                ))
                .map_err(coded)?;
            to_dynamic(&results)
        },
    );
}
