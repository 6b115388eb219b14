//! `podium privacy`: what podium holds about one person, and erasing them.

use clap::{Args, Subcommand};
use podium_client::pb;
use podium_proto::time::instant;

use crate::context::Ctx;

#[derive(Debug, Subcommand)]
pub enum PrivacyCmd {
    /// Print everything podium holds about one person (admin or organiser; an attendee may
    /// ask for themselves).
    Export(PersonArgs),
    /// Erase a person for good: their name, questions and comments (an attendee) or their
    /// name and organisation (a speaker) become unreadable everywhere, while counts, tallies
    /// and the log's positions stay. An attendee is signed out too. Cannot be undone.
    Erase(PersonArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PersonArgs {
    /// The attendee's id (they see it on their page, or with `podium whoami`).
    #[arg(long)]
    attendee: Option<String>,
    /// The speaker's id (`podium speaker list`).
    #[arg(long)]
    speaker: Option<String>,
}

impl PersonArgs {
    async fn person(self, ctx: &Ctx) -> anyhow::Result<pb::Person> {
        let (kind, person_id) = match (self.attendee, self.speaker) {
            (Some(id), _) => (pb::PersonKind::Attendee, id),
            (None, Some(id)) => (pb::PersonKind::Speaker, id),
            (None, None) => anyhow::bail!("say whom with --attendee ID or --speaker ID"),
        };
        Ok(pb::Person {
            conference_id: ctx.conference().await?,
            kind: kind as i32,
            person_id,
        })
    }
}

pub async fn privacy(ctx: &Ctx, cmd: PrivacyCmd) -> anyhow::Result<()> {
    match cmd {
        PrivacyCmd::Export(args) => export(ctx, args.person(ctx).await?).await,
        PrivacyCmd::Erase(args) => erase(ctx, args.person(ctx).await?).await,
    }
}

async fn export(ctx: &Ctx, person: pb::Person) -> anyhow::Result<()> {
    let data = ctx
        .client
        .privacy()
        .export_person(pb::ExportPersonRequest {
            person: Some(person.clone()),
        })
        .await?
        .into_inner();
    if ctx.out.json(&data) {
        return Ok(());
    }
    let erased = if data.erased { " (erased)" } else { "" };
    if person.kind == pb::PersonKind::Speaker as i32 {
        println!("speaker {}{erased}", person.person_id);
        println!("  name: {}", data.name);
        println!("  organisation: {}", data.organisation);
        println!("  time zone: {}", data.time_zone);
        println!("  sessions: {}", data.session_ids.join(", "));
        return Ok(());
    }
    println!("attendee {}{erased}", person.person_id);
    println!("  name on questions: {}", data.display_name);
    println!("  questions: {}", data.questions.len());
    for q in &data.questions {
        let when = instant(&q.asked_at)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let how = if q.anonymous { "anonymously" } else { "named" };
        println!(
            "    {} in {} ({when}, {how}, {} votes): {}",
            q.question_id, q.session_id, q.votes, q.text
        );
    }
    println!("  ratings: {}", data.ratings.len());
    for r in &data.ratings {
        println!("    {}: {}/5 {}", r.session_id, r.rating, r.comment);
    }
    println!(
        "  ballots on polls that are not anonymous: {}",
        data.ballots.len()
    );
    for b in &data.ballots {
        let answer = if !b.option_ids.is_empty() {
            b.option_ids.join(", ")
        } else if !b.text.is_empty() {
            b.text.clone()
        } else {
            b.rating.to_string()
        };
        println!("    {}: {answer}", b.poll_id);
    }
    Ok(())
}

async fn erase(ctx: &Ctx, person: pb::Person) -> anyhow::Result<()> {
    let erased = ctx
        .client
        .privacy()
        .erase(pb::EraseRequest {
            person: Some(person.clone()),
        })
        .await?
        .into_inner();
    if ctx.out.json(&erased) {
        return Ok(());
    }
    let at = instant(&erased.erased_at).map_or_else(String::new, |t| {
        t.format(" at %Y-%m-%d %H:%M UTC").to_string()
    });
    let kind = if person.kind == pb::PersonKind::Speaker as i32 {
        "speaker"
    } else {
        "attendee"
    };
    eprintln!("erased {kind} {}{at}", person.person_id);
    if erased.plain_events > 0 {
        eprintln!(
            "{} events stored before podium encrypted personal data still hold their data in the log's files (podium shows them erased): take a backup and restore it to drop them (see the README, \"Forgetting a person\")",
            erased.plain_events
        );
    }
    Ok(())
}
