//! Rhai bindings for policies: `policy_template(datasource_type)`, which returns the
//! default policy as a map a script can edit before `vault.create_policy`.

use rhai::{Dynamic, Engine};

use super::{RhaiResult, ScriptContext, fail, to_dynamic};
use pgvault_core::model::policy::DatasourceType;
use pgvault_core::model::templates::default_policy_template;

pub fn register(engine: &mut Engine, _ctx: &ScriptContext) {
    engine.register_fn(
        "policy_template",
        |datasource_type: &str| -> RhaiResult<Dynamic> {
            let t: DatasourceType = datasource_type.parse().map_err(fail)?;
            to_dynamic(&default_policy_template(t))
        },
    );
}
