//! `podium export`: a conference's feedback as open data, aggregated and anonymised. Poll
//! tallies, rating summaries and published questions with their votes; no attendee ids or
//! names, open text only from polls marked publishable, no rating comments.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use podium_client::pb;
use podium_proto::Translations;
use serde_json::{Value, json};

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

/// One row of the CSV: every section shares these columns.
struct Row {
    section: &'static str,
    session_id: String,
    item_id: String,
    question: String,
    answer: String,
    count: u64,
    mean: Option<f64>,
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
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

    let mut rows = Vec::new();
    let mut poll_docs = Vec::new();
    for poll in polls.iter().filter(|p| p.state() != pb::PollState::Draft) {
        let Some(results) = poll_results(ctx, &conference_id, poll).await? else {
            continue;
        };
        let labels: std::collections::HashMap<&str, &str> = poll
            .options
            .iter()
            .map(|o| (o.id.as_str(), o.label.as_str()))
            .collect();
        let mut answers = Vec::new();
        for o in &results.options {
            let label = labels
                .get(o.option_id.as_str())
                .copied()
                .unwrap_or(&o.label)
                .to_owned();
            answers.push(json!({ "option": label, "count": o.count }));
            rows.push(Row {
                section: "poll",
                session_id: poll.session_id.clone(),
                item_id: poll.id.clone(),
                question: poll.label.clone(),
                answer: label,
                count: o.count,
                mean: None,
            });
        }
        if let Some(r) = &results.rating {
            for (i, n) in r.distribution.iter().enumerate() {
                let point = (poll.scale_min + i as i32).to_string();
                rows.push(Row {
                    section: "poll",
                    session_id: poll.session_id.clone(),
                    item_id: poll.id.clone(),
                    question: poll.label.clone(),
                    answer: point,
                    count: *n,
                    mean: Some(r.mean),
                });
            }
        }
        for w in &results.words {
            rows.push(Row {
                section: "poll",
                session_id: poll.session_id.clone(),
                item_id: poll.id.clone(),
                question: poll.label.clone(),
                answer: w.word.clone(),
                count: w.count,
                mean: None,
            });
        }
        // Open text only when the poll says it may be published.
        let texts: Vec<String> = if poll.publishable {
            results.texts.clone()
        } else {
            Vec::new()
        };
        for t in &texts {
            rows.push(Row {
                section: "poll",
                session_id: poll.session_id.clone(),
                item_id: poll.id.clone(),
                question: poll.label.clone(),
                answer: t.clone(),
                count: 1,
                mean: None,
            });
        }
        poll_docs.push(json!({
            "id": poll.id,
            "session": poll.session_id,
            "question": poll.label,
            "kind": poll.kind().as_str_name(),
            "state": poll.state().as_str_name(),
            "ballots": results.ballots,
            "options": answers,
            "rating": results.rating.as_ref().map(|r| json!({ "count": r.count, "mean": r.mean, "distribution": r.distribution })),
            "words": results.words.iter().map(|w| json!({ "word": w.word, "count": w.count })).collect::<Vec<_>>(),
            "texts": texts,
        }));
    }

    let ratings = ctx
        .client
        .ratings()
        .get_ratings(pb::GetRatingsRequest {
            conference_id: conference_id.clone(),
            session_id: String::new(),
        })
        .await?
        .into_inner()
        .sessions;
    let mut rating_docs = Vec::new();
    for s in &ratings {
        let Some(summary) = &s.summary else { continue };
        // Aggregates only: comments can name people.
        rows.push(Row {
            section: "rating",
            session_id: s.session_id.clone(),
            item_id: String::new(),
            question: "session rating".into(),
            answer: String::new(),
            count: summary.count,
            mean: Some(summary.mean),
        });
        rating_docs.push(json!({ "session": s.session_id, "count": summary.count, "mean": summary.mean, "distribution": summary.distribution }));
    }

    let mut question_docs = Vec::new();
    for session in &sessions {
        let listed = ctx
            .client
            .questions()
            .list_questions(pb::ListQuestionsRequest {
                conference_id: conference_id.clone(),
                session_id: session.id.clone(),
            })
            .await?
            .into_inner();
        for q in listed.questions.iter().filter(|q| {
            matches!(
                q.state(),
                pb::QuestionState::Published | pb::QuestionState::Answered
            )
        }) {
            rows.push(Row {
                section: "question",
                session_id: session.id.clone(),
                item_id: q.id.clone(),
                question: q.text.clone(),
                answer: q.state().as_str_name().to_owned(),
                count: q.votes,
                mean: None,
            });
            question_docs.push(json!({ "session": session.id, "id": q.id, "text": q.text, "state": q.state().as_str_name(), "votes": q.votes }));
        }
    }

    let document = match args.format {
        Format::Json => {
            let doc: Value = json!({
                "conference": { "id": conference.id, "time_zone": conference.time_zone },
                "sessions": sessions.iter().map(|s| json!({
                    "id": s.id,
                    "title": s.title.pick(None, &conference.default_language),
                    "start_utc": s.start.as_ref().and_then(|t| t.utc).map(|t| t.seconds),
                })).collect::<Vec<_>>(),
                "polls": poll_docs,
                "ratings": rating_docs,
                "questions": question_docs,
            });
            serde_json::to_string_pretty(&doc)? + "\n"
        }
        Format::Csv => {
            let mut out = String::from("section,session,item,question,answer,count,mean\n");
            for r in rows {
                let mean = r.mean.map(|m| format!("{m:.3}")).unwrap_or_default();
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    r.section,
                    csv_field(&r.session_id),
                    csv_field(&r.item_id),
                    csv_field(&r.question),
                    csv_field(&r.answer),
                    r.count,
                    mean
                ));
            }
            out
        }
    };
    match args.out {
        Some(path) => std::fs::write(&path, document)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(document.as_bytes())?,
    }
    Ok(())
}
