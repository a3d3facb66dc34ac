//! Rhai bindings for a PostgreSQL server as a whole, rather than one protected database:
//! `server_databases(#{..})`, the databases a server offers for backup, so a script can
//! protect every database of a server (see `scripts/protect-unprotected.rhai`).

use rhai::{Dynamic, Engine, Map};

use super::instance::field;
use super::{RhaiResult, ScriptContext, coded, to_dynamic};
use pgvault_core::engine::protect::{ServerArgs, server_databases};
use pgvault_core::postgres::connection::Datasource;
use pgvault_core::secrets::SecretRef;

/// A core error of any kind as the script's error, with its code.
fn coded_from(e: impl Into<pgvault_core::engine::Error>) -> Box<rhai::EvalAltResult> {
    coded(e.into())
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    let c = ctx.clone();
    engine.register_fn(
        "server_databases",
        move |opts: Map| -> RhaiResult<Dynamic> {
            c.redactor
                .learn_reference(&field(&opts, "secret_store_uri").unwrap_or_default());
            let args = ServerArgs {
                datasource_type: field(&opts, "datasource_type")?,
                datasource_id: field(&opts, "datasource_id")?,
                secret_store_type: field(&opts, "secret_store_type")?,
                secret_store_uri: field(&opts, "secret_store_uri")?,
            };
            if c.sandbox.is_some() {
                let target: Datasource = args.datasource_id.parse().map_err(coded_from)?;
                let secret = SecretRef::from_store(
                    args.secret_store_type.parse().map_err(coded_from)?,
                    &args.secret_store_uri,
                )
                .map_err(coded_from)?;
                c.check_secret_destination(&secret, &target)?;
            }
            to_dynamic(&c.block_on(server_databases(&args)).map_err(coded)?)
        },
    );
}
