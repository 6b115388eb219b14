//! What every command works with: the connected client, the conference it works on and how to
//! print. Built once from the global flags, the environment and the config file, in that order
//! of precedence, so the commands never read settings themselves.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use podium_client::{Client, Tls, pb};

use crate::{cli::Cli, output::Out, settings::FileSettings};

const DEFAULT_ADDR: &str = "127.0.0.1:50051";

pub struct Ctx {
    pub client: Client,
    /// The address connected to, kept so that `podium join --save` can save it.
    pub addr: String,
    conference: Option<String>,
    pub out: Out,
}

impl Ctx {
    /// Connects to podiumd as the flags, then the config file, say.
    pub async fn connect(cli: &Cli, file: FileSettings) -> anyhow::Result<Ctx> {
        let addr = address(cli, &file);
        let token = cli.token.clone().or(file.token);
        let conference = cli.conference.clone().or(file.conference);
        let out = Out::new(cli.json, cli.lang.clone());
        let client = Client::connect_with(&addr, token, tls(cli)?.as_ref()).await?;
        Ok(Ctx {
            client,
            addr,
            conference,
            out,
        })
    }

    /// The conference to work on: --conference, the config file's, or the token's own.
    pub async fn conference(&self) -> anyhow::Result<String> {
        if let Some(c) = &self.conference {
            return Ok(c.clone());
        }
        let me = self
            .client
            .access()
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        me.principal
            .map(|p| p.conference_id)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| anyhow!("say which conference with --conference (or PODIUM_CONFERENCE)"))
    }

    /// The conference named by --conference or the config file, if any; empty otherwise
    /// (the server then takes the token's own, or for an admin every conference).
    pub fn conference_if_set(&self) -> String {
        self.conference.clone().unwrap_or_default()
    }

    pub async fn fetch_conference(&self, id: &str) -> anyhow::Result<pb::Conference> {
        let response = self
            .client
            .agenda()
            .get_conference(pb::GetConferenceRequest {
                conference_id: id.to_owned(),
            })
            .await?;
        response
            .into_inner()
            .conference
            .context("server sent no conference")
    }
}

/// The address to reach podiumd at: the flag (or `PODIUM_ADDR`), the config file's, or the
/// default; several nodes separated by commas.
pub fn address(cli: &Cli, file: &FileSettings) -> String {
    cli.addr
        .clone()
        .or_else(|| file.addr.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned())
}

/// The TLS settings the flags give, if any.
pub fn tls(cli: &Cli) -> anyhow::Result<Option<Tls>> {
    if cli.tls_ca.is_none() && cli.tls_cert.is_none() && cli.tls_domain.is_none() {
        return Ok(None);
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Some(Tls {
        ca_pem: cli.tls_ca.as_ref().map(read).transpose()?,
        identity: match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
        domain: cli.tls_domain.clone(),
    }))
}
