//! Session ratings from the command line: attendees rate a session once it is live, moderators
//! read the aggregates.

use clap::Args;
use podium_client::{Client, pb};

use crate::{Ctx, output::table};

#[derive(Debug, Args)]
pub struct RateArgs {
    session: String,
    /// 1 (poor) to 5 (excellent).
    rating: i32,
    /// Up to 1000 characters.
    #[arg(long)]
    comment: Option<String>,
}

pub async fn rate(ctx: &Ctx, args: RateArgs) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let rated = ctx
        .client
        .ratings()
        .rate_session(pb::RateSessionRequest {
            request_id: Client::request_id(),
            conference_id,
            session_id: args.session,
            rating: args.rating,
            comment: args.comment.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if !ctx.out.json(&rated) {
        eprintln!(
            "{}",
            if rated.replaced {
                "your new rating replaces your earlier one"
            } else {
                "thank you: your rating is counted"
            }
        );
    }
    Ok(())
}

pub async fn ratings(ctx: &Ctx, session: Option<String>) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let got = ctx
        .client
        .ratings()
        .get_ratings(pb::GetRatingsRequest {
            conference_id,
            session_id: session.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if ctx.out.json(&got) {
        return Ok(());
    }
    let mut t = table(&["Session", "Ratings", "Mean", "1", "2", "3", "4", "5"]);
    for s in &got.sessions {
        let summary = s.summary.clone().unwrap_or_default();
        let mut row = vec![
            s.session_id.clone(),
            summary.count.to_string(),
            format!("{:.2}", summary.mean),
        ];
        row.extend(summary.distribution.iter().map(u64::to_string));
        t.add_row(row);
    }
    println!("{t}");
    for s in got.sessions.iter().filter(|s| !s.comments.is_empty()) {
        println!("\n{}:", s.session_id);
        for c in &s.comments {
            println!("- {c}");
        }
    }
    Ok(())
}
