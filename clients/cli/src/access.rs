//! Who may do what, from the command line: issuing, listing and revoking tokens, joining a
//! conference with its code, and asking whose token this is. Tokens go alone to stdout so that scripts can capture them;
//! what happened goes to stderr.

use clap::{Args, Subcommand, ValueEnum};
use podium_client::pb;
use podium_proto::time::instant;

use crate::{
    Ctx,
    output::{self, table},
    settings,
};

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
    /// List the tokens issued for the conference (admin without --conference: every token):
    /// holder, role, issued when and by whom, last seen, revoked.
    List,
    /// Revoke a token at once: every call with it is refused, and its open streams end.
    Revoke {
        /// The token's id (`podium token list`, or `podium whoami` with it), or an attendee id.
        id: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
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
    match cmd {
        TokenCmd::Issue {
            role,
            name,
            speaker,
            days,
        } => issue(ctx, role, name, speaker, days).await,
        TokenCmd::List => list(ctx).await,
        TokenCmd::Revoke { id, reason } => revoke(ctx, id, reason).await,
    }
}

async fn issue(
    ctx: &Ctx,
    role: RoleArg,
    name: String,
    speaker: Option<String>,
    days: Option<u64>,
) -> anyhow::Result<()> {
    let out = &ctx.out;
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

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    // An admin without a conference lists every token; anyone else their conference's.
    let conference_id = ctx.conference_if_set();
    let listed = ctx
        .client
        .access()
        .list_tokens(pb::ListTokensRequest { conference_id })
        .await?
        .into_inner();
    if ctx.out.json(&listed) {
        return Ok(());
    }
    let when = |t: &Option<_>| {
        instant(t).map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let mut t = table(&[
        "id",
        "role",
        "holder",
        "conference",
        "issued (UTC)",
        "by",
        "expires",
        "last seen",
        "revoked",
    ]);
    for token in &listed.tokens {
        t.add_row(vec![
            token.token_id.clone(),
            output::role(token.role).to_owned(),
            token.holder_name.clone(),
            token.conference_id.clone(),
            when(&token.issued_at),
            token.issued_by.clone(),
            when(&token.expires_at),
            when(&token.last_seen),
            match &token.revoked_at {
                Some(_) => format!("{} by {}", when(&token.revoked_at), token.revoked_by),
                None => String::new(),
            },
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn revoke(ctx: &Ctx, id: String, reason: String) -> anyhow::Result<()> {
    let revoked = ctx
        .client
        .access()
        .revoke_token(pb::RevokeTokenRequest {
            token_id: id.clone(),
            conference_id: ctx.conference_if_set(),
            reason,
        })
        .await?
        .into_inner();
    if !ctx.out.json(&revoked) {
        let at = instant(&revoked.revoked_at).map_or_else(String::new, |t| {
            t.format(" at %Y-%m-%d %H:%M UTC").to_string()
        });
        if revoked.already_revoked {
            eprintln!("token {id} was already revoked{at}");
        } else {
            eprintln!("revoked token {id}{at}: it is refused from now on, and its streams end");
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
        if !p.token_id.is_empty() {
            println!(
                "token {} (to revoke it: podium token revoke {})",
                p.token_id, p.token_id
            );
        }
        if let Some(exp) = instant(&p.expires_at) {
            println!("expires {}", exp.format("%Y-%m-%d %H:%M UTC"));
        }
    }
    Ok(())
}
