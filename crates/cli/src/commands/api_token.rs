//! `pgvault api-token`: the bearer tokens of the REST API and the web console
//! (`pgvault serve --listen`). A token is printed once, when it is created; the home keeps
//! only its hash.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use pgvault_host::access::Role;

use super::{coded, open_service};
use crate::output::{Format, print};

#[derive(Subcommand, Debug)]
pub enum ApiTokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    #[command(
        after_help = "Example:\n  pgvault api-token create --name ops-laptop --role Operator\n\nRoles, as Azure's Backup roles: Reader reads; Operator also backs up, restores and\nsuspends or resumes protection; Contributor also creates, changes and deletes."
    )]
    Create {
        /// The token's name, shown in the audit table and the jobs it starts.
        #[arg(long)]
        name: String,
        /// Reader, Operator or Contributor.
        #[arg(long)]
        role: String,
    },
    /// List the tokens (names, roles, when created or revoked; never the tokens).
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(cmd: ApiTokenCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        ApiTokenCommand::Create { name, role } => {
            let role: Role = role.parse().map_err(coded)?;
            let token = svc.create_api_token(&name, role).map_err(coded)?;
            match format {
                Format::Json => print(
                    &json!({"name": name, "role": role.as_str(), "token": token}),
                    format,
                )?,
                _ => {
                    eprintln!(
                        "Token `{name}` ({role}); it is shown only now, keep it in a secret store:"
                    );
                    println!("{token}");
                }
            }
        }
        ApiTokenCommand::List => {
            let tokens: Vec<serde_json::Value> = svc
                .api_tokens()
                .map_err(coded)?
                .into_iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "role": t.role.as_str(),
                        "createdTime": t.created.to_rfc3339(),
                        "revokedTime": t.revoked.map(|r| r.to_rfc3339()),
                    })
                })
                .collect();
            print(&serde_json::Value::Array(tokens), format)?;
        }
        ApiTokenCommand::Revoke { name } => {
            svc.revoke_api_token(&name).map_err(coded)?;
            eprintln!("Token `{name}` revoked.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
