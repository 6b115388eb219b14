//! Who may do what, from the command line: issuing tokens, joining a conference with its code,
//! and asking whose token this is. Tokens go alone to stdout so that scripts can capture them;
//! what happened goes to stderr.

use clap::{Args, Subcommand, ValueEnum};
use podium_client::pb;
use podium_proto::time::instant;

use crate::{Ctx, output, settings};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Organiser,
    Moderator,
    Integration,
    Speaker,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Issue a token (admin, or organiser of the conference).
    Issue {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Who holds it, e.g. "OBS bridge".
        #[arg(long, default_value = "")]
        name: String,
        /// For --role speaker.
        #[arg(long)]
        speaker: Option<String>,
        /// Days the token is valid (default 30).
        #[arg(long)]
        days: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The join code, e.g. KQ7M-2XHD.
    code: String,
    /// Your display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Save the token and conference to the config file.
    #[arg(long)]
    save: bool,
}

pub async fn token(ctx: &Ctx, cmd: TokenCmd) -> anyhow::Result<()> {
    let out = &ctx.out;
    let TokenCmd::Issue {
        role,
        name,
        speaker,
        days,
    } = cmd;
    let role = match role {
        RoleArg::Admin => pb::Role::Admin,
        RoleArg::Organiser => pb::Role::Organiser,
        RoleArg::Moderator => pb::Role::Moderator,
        RoleArg::Integration => pb::Role::Integration,
        RoleArg::Speaker => pb::Role::Speaker,
    };
    let conference_id = if role == pb::Role::Admin {
        String::new()
    } else {
        ctx.conference().await?
    };
    let issued = ctx
        .client
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: role as i32,
            conference_id,
            speaker_id: speaker.unwrap_or_default(),
            name,
            ttl_seconds: days.map_or(0, |d| d.saturating_mul(86_400)),
        })
        .await?
        .into_inner();
    if !out.json(&issued) {
        // The token alone on stdout, so that `TOKEN=$(podium token issue ...)` works.
        println!("{}", issued.token);
        if let Some(p) = issued.principal {
            eprintln!(
                "issued a {} token for {} ({})",
                output::role(p.role),
                p.name,
                p.id
            );
        }
    }
    Ok(())
}

pub async fn join(ctx: &Ctx, args: JoinArgs) -> anyhow::Result<()> {
    let out = &ctx.out;
    let JoinArgs { code, name, save } = args;
    let joined = ctx
        .client
        .access()
        .join(pb::JoinRequest {
            join_code: code,
            display_name: name,
        })
        .await?
        .into_inner();
    let principal = joined.principal.clone().unwrap_or_default();
    if save {
        let path = settings::save(&settings::FileSettings {
            addr: Some(ctx.addr.clone()),
            token: Some(joined.token.clone()),
            conference: Some(principal.conference_id.clone()),
        })?;
        eprintln!(
            "saved token for conference {} to {}",
            principal.conference_id,
            path.display()
        );
    }
    if !out.json(&joined) {
        println!("{}", joined.token);
        eprintln!(
            "joined conference {} as {} ({})",
            principal.conference_id, principal.name, principal.id
        );
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let out = &ctx.out;
    let me = ctx
        .client
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    if !out.json(&me) {
        let p = me.principal.unwrap_or_default();
        println!("{} ({}), role {}", p.name, p.id, output::role(p.role));
        if !p.conference_id.is_empty() {
            println!("conference {}", p.conference_id);
        }
        if !p.speaker_id.is_empty() {
            println!("speaker {}", p.speaker_id);
        }
        if let Some(exp) = instant(&p.expires_at) {
            println!("expires {}", exp.format("%Y-%m-%d %H:%M UTC"));
        }
    }
    Ok(())
}
