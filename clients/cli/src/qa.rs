//! Session Q&A from the command line: attendees ask and upvote, moderators set a session's
//! rules and publish, answer, dismiss or pin questions, and anyone lists or watches them.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use futures::StreamExt;
use podium_client::{Client, pb};

use crate::{Ctx, output::table};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    Publish,
    Answer,
    Dismiss,
    Pin,
    Unpin,
}

#[derive(Debug, Subcommand)]
pub enum QaCmd {
    /// Ask a question in a session (attendees); prints the question id.
    Ask {
        session: String,
        text: String,
        /// Hide your name, where the session allows it.
        #[arg(long)]
        anonymous: bool,
    },
    /// Upvote a question (attendees; once per question, not your own).
    Upvote { question: String },
    /// A session's questions, most votes first; --watch keeps it updating.
    List {
        session: String,
        #[arg(long)]
        watch: bool,
    },
    /// Publish, answer, dismiss, pin or unpin a question (moderators).
    Moderate {
        question: String,
        #[arg(value_enum)]
        action: ActionArg,
        /// Told to the author, e.g. why a question was dismissed.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke the token of a question's author, an attendee abusing the Q&A (moderators):
    /// every call with it is refused from now on, without you learning who they are.
    RevokeAuthor {
        question: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a session's Q&A rules (moderators); a flag left out turns the rule off.
    Settings {
        session: String,
        /// Attendees may ask without their name shown.
        #[arg(long)]
        allow_anonymous: bool,
        /// New questions wait for a moderator before anyone else sees them.
        #[arg(long)]
        require_approval: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: QaCmd) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let questions = || ctx.client.questions();
    match cmd {
        QaCmd::Ask {
            session,
            text,
            anonymous,
        } => {
            let asked = questions()
                .ask_question(pb::AskQuestionRequest {
                    request_id: Client::request_id(),
                    conference_id,
                    session_id: session,
                    text,
                    anonymous,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&asked) {
                let q = asked.question.context("server sent no question")?;
                println!("{}", q.id);
                eprintln!("asked {} ({})", q.id, state(q.state()));
            }
        }
        QaCmd::Upvote { question } => {
            let upvoted = questions()
                .upvote_question(pb::UpvoteQuestionRequest {
                    conference_id,
                    question_id: question.clone(),
                })
                .await?
                .into_inner();
            if !ctx.out.json(&upvoted) {
                eprintln!(
                    "{} {question} has {} vote(s)",
                    if upvoted.counted {
                        "upvoted:"
                    } else {
                        "you had already upvoted it:"
                    },
                    upvoted.votes
                );
            }
        }
        QaCmd::RevokeAuthor { question, reason } => {
            let revoked = questions()
                .revoke_author(pb::RevokeAuthorRequest {
                    conference_id,
                    question_id: question.clone(),
                    reason,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&revoked) {
                eprintln!("revoked the author of {question}: their token is refused from now on");
            }
        }
        QaCmd::Moderate {
            question,
            action,
            reason,
        } => {
            let moderated = questions()
                .moderate_question(pb::ModerateQuestionRequest {
                    request_id: Client::request_id(),
                    conference_id,
                    question_id: question,
                    action: match action {
                        ActionArg::Publish => pb::ModerationAction::Publish,
                        ActionArg::Answer => pb::ModerationAction::Answer,
                        ActionArg::Dismiss => pb::ModerationAction::Dismiss,
                        ActionArg::Pin => pb::ModerationAction::Pin,
                        ActionArg::Unpin => pb::ModerationAction::Unpin,
                    } as i32,
                    reason: reason.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if !ctx.out.json(&moderated) {
                let q = moderated.question.context("server sent no question")?;
                eprintln!(
                    "{} is {}{}",
                    q.id,
                    state(q.state()),
                    if q.pinned { ", pinned" } else { "" }
                );
            }
        }
        QaCmd::Settings {
            session,
            allow_anonymous,
            require_approval,
        } => {
            let set = questions()
                .set_qa_settings(pb::SetQaSettingsRequest {
                    request_id: Client::request_id(),
                    conference_id,
                    session_id: session.clone(),
                    settings: Some(pb::QaSettings {
                        allow_anonymous,
                        require_approval,
                    }),
                })
                .await?
                .into_inner();
            if !ctx.out.json(&set) {
                let s = set.settings.unwrap_or_default();
                eprintln!("session {session}: {}", rules(&s));
            }
        }
        QaCmd::List { session, watch } => {
            if watch {
                return follow(ctx, conference_id, session).await;
            }
            let list = questions()
                .list_questions(pb::ListQuestionsRequest {
                    conference_id,
                    session_id: session,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&list) {
                println!(
                    "{}",
                    draw(&list.questions, &list.settings.unwrap_or_default())
                );
            }
        }
    }
    Ok(())
}

async fn follow(ctx: &Ctx, conference_id: String, session_id: String) -> anyhow::Result<()> {
    let mut stream = ctx
        .client
        .questions()
        .watch_questions(pb::WatchQuestionsRequest {
            conference_id,
            session_id,
        })
        .await?
        .into_inner();
    let live = std::io::stdout().is_terminal() && !ctx.out.json;
    let mut stdout = std::io::stdout().lock();
    while let Some(message) = stream.next().await {
        let message = message?;
        let settings = message.settings.unwrap_or_default();
        let written = if ctx.out.json {
            writeln!(stdout, "{}", podium_client::message_to_json(&message))
        } else if live {
            write!(
                stdout,
                "\x1b[2J\x1b[H{}\n(position {}; Ctrl-C stops)\n",
                draw(&message.questions, &settings),
                message.position
            )
        } else {
            writeln!(stdout, "{}", draw(&message.questions, &settings))
        };
        match written.and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn state(s: pb::QuestionState) -> &'static str {
    match s {
        pb::QuestionState::Pending => "pending",
        pb::QuestionState::Published => "published",
        pb::QuestionState::Answered => "answered",
        pb::QuestionState::Dismissed => "dismissed",
        pb::QuestionState::Unspecified => "",
    }
}

fn rules(s: &pb::QaSettings) -> String {
    format!(
        "anonymous questions {}, approval {}",
        if s.allow_anonymous {
            "allowed"
        } else {
            "not allowed"
        },
        if s.require_approval {
            "required"
        } else {
            "not required"
        }
    )
}

/// The questions as a table, in the server's order, with the session's rules below.
fn draw(questions: &[pb::Question], settings: &pb::QaSettings) -> String {
    let mut t = table(&["Question", "Votes", "State", "From", "Text"]);
    for q in questions {
        let mut status = state(q.state()).to_owned();
        if q.pinned {
            status.push_str(", pinned");
        }
        if !q.reason.is_empty() {
            status.push_str(&format!(" ({})", q.reason));
        }
        let from = match (q.anonymous, q.mine) {
            (_, true) => "you".to_owned(),
            (true, false) => "anonymous".to_owned(),
            (false, false) => q.author_name.clone(),
        };
        let votes = format!("{}{}", q.votes, if q.upvoted { " ✓" } else { "" });
        t.add_row(vec![q.id.clone(), votes, status, from, q.text.clone()]);
    }
    format!("{t}\n{} question(s); {}", questions.len(), rules(settings))
}
