//! Rhai bindings for the job history: `jobs(#{vault, instance, status, operation})` and
//! `job(id)`, as Azure's job JSON.

use rhai::{Dynamic, Engine, Map};

use super::{RhaiResult, ScriptContext, coded, fail, to_dynamic};
use pgvault_core::model::job::{Job, JobFilter};
use pgvault_core::model::resource::vault_id;

fn azure(jobs: &[Job]) -> Vec<serde_json::Value> {
    jobs.iter()
        .map(|j| j.to_azure_json(&vault_id(&j.vault_name)))
        .collect()
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    let c = ctx.clone();
    engine.register_fn("jobs", move |opts: Map| -> RhaiResult<Dynamic> {
        let mut filter = JobFilter::default();
        for (k, v) in &opts {
            let s = v
                .clone()
                .into_string()
                .map_err(|t| fail(format!("`{k}` must be a string, not {t}")))?;
            match k.as_str() {
                "vault" => filter.vault = Some(s),
                "instance" => filter.instance = Some(s),
                "status" => filter.status = Some(s.parse().map_err(fail)?),
                "operation" => filter.operation = Some(s.parse().map_err(fail)?),
                other => {
                    return Err(fail(format!(
                        "unknown job filter `{other}` (use vault, instance, status, operation)"
                    )));
                }
            }
        }
        to_dynamic(&azure(&c.pgvault.jobs(&filter).map_err(coded)?))
    });
    let c = ctx.clone();
    engine.register_fn("jobs", move || -> RhaiResult<Dynamic> {
        to_dynamic(&azure(
            &c.pgvault.jobs(&JobFilter::default()).map_err(coded)?,
        ))
    });
    let c = ctx.clone();
    engine.register_fn("job", move |id: &str| -> RhaiResult<Dynamic> {
        let job = c.pgvault.job(id).map_err(coded)?;
        to_dynamic(&job.to_azure_json(&vault_id(&job.vault_name)))
    });
}
