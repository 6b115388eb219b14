//! Live polls from the command line: moderators create, open and close them and watch results
//! drawn as bars; attendees vote.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use podium_client::{Client, pb};

use crate::{Ctx, output::table, parse::localized};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Single,
    Multiple,
    Rating,
    Words,
    Text,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VisibilityArg {
    Live,
    AfterClose,
    Moderators,
}

#[derive(Debug, Subcommand)]
pub enum PollCmd {
    /// Create a poll (a draft until you open it).
    Create(CreateArgs),
    /// Open a poll for voting.
    Open { poll: String },
    /// Close a poll and show its final results.
    Close { poll: String },
    /// The conference's polls.
    List {
        #[arg(long)]
        session: Option<String>,
    },
    /// The results as they are now.
    Results { poll: String },
    /// Results updating live, as bars on a terminal.
    Watch { poll: String },
    /// Hide a word from a word cloud (--show to show it again).
    Hide {
        poll: String,
        word: String,
        #[arg(long)]
        show: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The question; repeat with LANG=TEXT for translations, e.g. --question km="...".
    #[arg(long, required = true)]
    question: Vec<String>,
    #[arg(long, value_enum, default_value_t = KindArg::Single)]
    kind: KindArg,
    /// An option ("Open budgets", or "en=Open budgets;km=ថវិកាបើកចំហ"); repeat for each.
    #[arg(long = "option")]
    options: Vec<String>,
    /// Multiple choice: the most options one ballot may pick.
    #[arg(long, default_value_t = 0)]
    max: u32,
    /// Rating scale, e.g. 1-5 or 0-10.
    #[arg(long)]
    scale: Option<String>,
    #[arg(long, value_enum, default_value_t = VisibilityArg::Live)]
    visibility: VisibilityArg,
    /// Ballots cannot be changed once cast.
    #[arg(long)]
    lock: bool,
    /// Keep no link from attendee to choice once the poll closes.
    #[arg(long)]
    anonymous: bool,
    /// Open-text answers may be shown to everyone and exported.
    #[arg(long)]
    publishable: bool,
    /// Part of the conference survey: results never go to the public stream.
    #[arg(long)]
    survey: bool,
    /// The session the poll belongs to.
    #[arg(long)]
    session: Option<String>,
}

#[derive(Debug, Args)]
pub struct VoteArgs {
    poll: String,
    /// Option ids or numbers (1 = the first option).
    options: Vec<String>,
    /// For a rating poll.
    #[arg(long, allow_negative_numbers = true)]
    rating: Option<i32>,
    /// For a word cloud or open-text poll.
    #[arg(long)]
    text: Option<String>,
}

pub async fn run(ctx: &Ctx, cmd: PollCmd) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let polls = || ctx.client.polls();
    let language = ctx.out.lang().unwrap_or_default().to_owned();
    match cmd {
        PollCmd::Create(a) => {
            let conference = ctx.fetch_conference(&conference_id).await?;
            let (scale_min, scale_max) = match &a.scale {
                Some(s) => {
                    let (lo, hi) = s
                        .split_once('-')
                        .ok_or_else(|| anyhow!("--scale looks like 1-5"))?;
                    (
                        lo.trim().parse().context("--scale")?,
                        hi.trim().parse().context("--scale")?,
                    )
                }
                None => (0, 0),
            };
            let request = pb::CreatePollRequest {
                request_id: Client::request_id(),
                conference_id: conference_id.clone(),
                session_id: a.session.unwrap_or_default(),
                question: Some(localized(&a.question, &conference.default_language)?),
                kind: match a.kind {
                    KindArg::Single => pb::PollKind::SingleChoice,
                    KindArg::Multiple => pb::PollKind::MultipleChoice,
                    KindArg::Rating => pb::PollKind::Rating,
                    KindArg::Words => pb::PollKind::WordCloud,
                    KindArg::Text => pb::PollKind::OpenText,
                } as i32,
                options: a
                    .options
                    .iter()
                    .map(|o| localized(std::slice::from_ref(o), &conference.default_language))
                    .collect::<anyhow::Result<_>>()?,
                max_choices: a.max,
                scale_min,
                scale_max,
                visibility: match a.visibility {
                    VisibilityArg::Live => pb::ResultVisibility::Live,
                    VisibilityArg::AfterClose => pb::ResultVisibility::AfterClose,
                    VisibilityArg::Moderators => pb::ResultVisibility::ModeratorsOnly,
                } as i32,
                lock_ballots: a.lock,
                anonymous: a.anonymous,
                publishable: a.publishable,
                survey: a.survey,
            };
            let created = polls().create_poll(request).await?.into_inner();
            if !ctx.out.json(&created) {
                let poll = created.poll.context("server sent no poll")?;
                println!("{}", poll.id);
                eprintln!(
                    "created poll {} (draft): {}; open it with `podium poll open {}`",
                    poll.id, poll.label, poll.id
                );
            }
        }
        PollCmd::Open { poll } => {
            let opened = polls()
                .open_poll(pb::OpenPollRequest {
                    conference_id,
                    poll_id: poll,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&opened) {
                eprintln!(
                    "poll {} is open",
                    opened.poll.map(|p| p.id).unwrap_or_default()
                );
            }
        }
        PollCmd::Close { poll } => {
            let closed = polls()
                .close_poll(pb::ClosePollRequest {
                    conference_id,
                    poll_id: poll,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&closed) {
                let poll = closed.poll.unwrap_or_default();
                println!("{}", draw(&poll, closed.results.as_ref()));
            }
        }
        PollCmd::List { session } => {
            let list = polls()
                .list_polls(pb::ListPollsRequest {
                    conference_id,
                    session_id: session.unwrap_or_default(),
                    language,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&list) {
                let mut t = table(&["Poll", "Question", "Kind", "State"]);
                for p in &list.polls {
                    t.add_row(vec![
                        p.id.clone(),
                        p.label.clone(),
                        kind(p.kind()).to_owned(),
                        state(p.state()).to_owned(),
                    ]);
                }
                println!("{t}");
            }
        }
        PollCmd::Results { poll } => watch(ctx, conference_id, poll, language, false).await?,
        PollCmd::Watch { poll } => watch(ctx, conference_id, poll, language, true).await?,
        PollCmd::Hide { poll, word, show } => {
            let r = polls()
                .hide_word(pb::HideWordRequest {
                    conference_id: conference_id.clone(),
                    poll_id: poll.clone(),
                    word,
                    hidden: !show,
                })
                .await?
                .into_inner();
            if !ctx.out.json(&r) {
                let p = polls()
                    .get_poll(pb::GetPollRequest {
                        conference_id,
                        poll_id: poll,
                        language,
                    })
                    .await?
                    .into_inner()
                    .poll
                    .unwrap_or_default();
                println!("{}", draw(&p, r.results.as_ref()));
            }
        }
    }
    Ok(())
}

pub async fn vote(ctx: &Ctx, args: VoteArgs) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let poll = ctx
        .client
        .polls()
        .get_poll(pb::GetPollRequest {
            conference_id: conference_id.clone(),
            poll_id: args.poll.clone(),
            language: String::new(),
        })
        .await?
        .into_inner()
        .poll
        .context("server sent no poll")?;
    // "2" means the second option; anything else is an option id.
    let option_ids = args
        .options
        .iter()
        .map(|o| match o.parse::<usize>() {
            Ok(n) if n >= 1 && n <= poll.options.len() => poll.options[n - 1].id.clone(),
            _ => o.clone(),
        })
        .collect();
    let cast = ctx
        .client
        .polls()
        .cast_ballot(pb::CastBallotRequest {
            conference_id,
            poll_id: args.poll,
            ballot_id: Client::request_id(),
            option_ids,
            rating: args.rating.unwrap_or(0),
            text: args.text.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if !ctx.out.json(&cast) {
        eprintln!(
            "{}",
            if cast.replaced {
                "your new ballot replaces your earlier one"
            } else {
                "your ballot is counted"
            }
        );
    }
    Ok(())
}

async fn watch(
    ctx: &Ctx,
    conference_id: String,
    poll_id: String,
    language: String,
    follow: bool,
) -> anyhow::Result<()> {
    let mut stream = ctx
        .client
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id,
            poll_id,
            language,
        })
        .await?
        .into_inner();
    let live = follow && std::io::stdout().is_terminal() && !ctx.out.json;
    let mut poll = pb::Poll::default();
    let mut stdout = std::io::stdout().lock();
    while let Some(message) = stream.next().await {
        let message = message?;
        if let Some(p) = &message.poll {
            poll = p.clone();
        }
        let written = if ctx.out.json {
            writeln!(stdout, "{}", podium_client::message_to_json(&message))
        } else if live {
            write!(
                stdout,
                "\x1b[2J\x1b[H{}\n(position {}; Ctrl-C stops)\n",
                draw(&poll, message.results.as_ref()),
                message.position
            )
        } else {
            writeln!(stdout, "{}", draw(&poll, message.results.as_ref()))
        };
        match written.and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if !follow {
            return Ok(());
        }
    }
    Ok(())
}

fn kind(k: pb::PollKind) -> &'static str {
    match k {
        pb::PollKind::SingleChoice => "single choice",
        pb::PollKind::MultipleChoice => "multiple choice",
        pb::PollKind::Rating => "rating",
        pb::PollKind::WordCloud => "word cloud",
        pb::PollKind::OpenText => "open text",
        pb::PollKind::Unspecified => "",
    }
}

fn state(s: pb::PollState) -> &'static str {
    match s {
        pb::PollState::Draft => "draft",
        pb::PollState::Open => "open",
        pb::PollState::Closed => "closed",
        pb::PollState::Unspecified => "",
    }
}

/// One bar of `width` cells for `count` out of `max`, with the count and share.
fn bar(label: &str, count: u64, max: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let cells = if max == 0 {
        0
    } else {
        (count * WIDTH).div_ceil(max)
    } as usize;
    let share = if total == 0 {
        0.0
    } else {
        count as f64 * 100.0 / total as f64
    };
    format!(
        "{label:<24} {:<30} {count:>5} ({share:.0}%)",
        "█".repeat(cells)
    )
}

/// The results as text: bars for choices, ratings and words; the answers for open text.
pub fn draw(poll: &pb::Poll, results: Option<&pb::Results>) -> String {
    let mut out = format!(
        "{} [{}, {}]\n",
        poll.label,
        kind(poll.kind()),
        state(poll.state())
    );
    let Some(r) = results else {
        out.push_str("results are not visible yet\n");
        return out;
    };
    out.push_str(&format!("{} ballot(s)\n", r.ballots));
    let labels: HashMap<&str, &str> = poll
        .options
        .iter()
        .map(|o| (o.id.as_str(), o.label.as_str()))
        .collect();
    if !r.options.is_empty() {
        let max = r.options.iter().map(|o| o.count).max().unwrap_or(0);
        for o in &r.options {
            out.push_str(&bar(
                labels
                    .get(o.option_id.as_str())
                    .copied()
                    .unwrap_or(&o.label),
                o.count,
                max,
                r.ballots,
            ));
            out.push('\n');
        }
    }
    if let Some(rating) = &r.rating {
        let max = rating.distribution.iter().copied().max().unwrap_or(0);
        for (i, n) in rating.distribution.iter().enumerate() {
            out.push_str(&bar(
                &(poll.scale_min + i as i32).to_string(),
                *n,
                max,
                rating.count,
            ));
            out.push('\n');
        }
        out.push_str(&format!(
            "mean {:.2} of {} rating(s)\n",
            rating.mean, rating.count
        ));
    }
    if !r.words.is_empty() {
        let max = r.words.iter().map(|w| w.count).max().unwrap_or(0);
        for w in r.words.iter().take(20) {
            out.push_str(&bar(&w.word, w.count, max, r.ballots));
            out.push('\n');
        }
    }
    for t in &r.texts {
        out.push_str(&format!("- {t}\n"));
    }
    if !r.hidden_words.is_empty() {
        out.push_str(&format!("hidden: {}\n", r.hidden_words.join(", ")));
    }
    out
}
