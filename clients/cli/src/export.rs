//! `podium export`: a conference's feedback as open data, aggregated and anonymised. This
//! gathers the parts through the API; [`podium_proto::export`] writes the document and says
//! what it leaves out.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use podium_client::pb;
use podium_proto::export::Feedback;

use crate::Ctx;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

async fn poll_results(
    ctx: &Ctx,
    conference_id: &str,
    poll: &pb::Poll,
) -> anyhow::Result<Option<pb::Results>> {
    let request = pb::WatchResultsRequest {
        conference_id: conference_id.to_owned(),
        poll_id: poll.id.clone(),
        language: String::new(),
    };
    let mut stream = ctx
        .client
        .polls()
        .watch_results(request)
        .await?
        .into_inner();
    Ok(stream.next().await.transpose()?.and_then(|m| m.results))
}

pub async fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let conference = ctx.fetch_conference(&conference_id).await?;
    let sessions = ctx
        .client
        .agenda()
        .list_sessions(pb::ListSessionsRequest {
            conference_id: conference_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .sessions;
    let polls = ctx
        .client
        .polls()
        .list_polls(pb::ListPollsRequest {
            conference_id: conference_id.clone(),
            session_id: String::new(),
            language: String::new(),
        })
        .await?
        .into_inner()
        .polls;

    let mut feedback = Feedback {
        conference,
        sessions,
        ..Default::default()
    };
    for poll in polls
        .into_iter()
        .filter(|p| p.state() != pb::PollState::Draft)
    {
        if let Some(results) = poll_results(ctx, &conference_id, &poll).await? {
            feedback.polls.push((poll, results));
        }
    }
    feedback.ratings = ctx
        .client
        .ratings()
        .get_ratings(pb::GetRatingsRequest {
            conference_id: conference_id.clone(),
            session_id: String::new(),
        })
        .await?
        .into_inner()
        .sessions;
    for session in &feedback.sessions {
        let listed = ctx
            .client
            .questions()
            .list_questions(pb::ListQuestionsRequest {
                conference_id: conference_id.clone(),
                session_id: session.id.clone(),
            })
            .await?
            .into_inner();
        feedback.questions.extend(listed.questions);
    }
    let document = match args.format {
        Format::Json => feedback.json(),
        Format::Csv => feedback.csv(),
    };
    match args.out {
        Some(path) => std::fs::write(&path, document)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(document.as_bytes())?,
    }
    Ok(())
}
