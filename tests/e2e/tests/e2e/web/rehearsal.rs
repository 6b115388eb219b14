//! A rehearsal podiumd beside the live one, on another port of the same machine: browsers keep
//! cookies per host, not per port, so before the session cookie carried the port, opening the
//! rehearsal's console signed the moderator out of the live one (its token, signed by another
//! key, was cleared as a bad session), and signing in to one replaced the other's token.

use podium_client::pb;
use podium_e2e::{
    CONFERENCE, Odc, Podiumd,
    browser::{Browser, Screen},
};

/// The moderator console's heading, in English.
const CONSOLE: &str = "Moderator console";
/// The live show's talk, which the rehearsal does not have.
const LIVE_TALK: &str = "Open contracting in Cambodia";

#[tokio::test]
async fn a_moderator_signed_in_to_the_live_console_stays_signed_in_beside_a_rehearsal() {
    let live = super::show().await;
    let live_token = live
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let rehearsal = Podiumd::start().unwrap();
    let admin = rehearsal.admin().await.unwrap();
    Odc::create(&admin, CONFERENCE).await.unwrap();
    let rehearsal_token = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Moderator.into(),
            conference_id: CONFERENCE.into(),
            name: "Sokha, rehearsing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let live_base = format!("http://{}", live.server.addr);
    let rehearsal_base = format!("http://{}", rehearsal.addr);

    let laptop = Browser::open(&live_base, Screen::Projector, true, "en")
        .await
        .unwrap();
    let console_of = |base: &str| format!("{base}/m/");
    // Shows the console at `base` and says whether it is the live one, signed in.
    let live_console_shown = async |laptop: &Browser| {
        laptop.goto_url(&console_of(&live_base)).await.unwrap();
        laptop.wait_for_text("h1", CONSOLE).await.unwrap();
        laptop.wait_for_text("main", LIVE_TALK).await.unwrap();
    };

    laptop
        .goto(&format!("/m/?token={live_token}"))
        .await
        .unwrap();
    live_console_shown(&laptop).await;

    // The rehearsal's console, not signed in there: it asks to sign in, and leaves the live
    // one's cookie alone.
    laptop.goto_url(&console_of(&rehearsal_base)).await.unwrap();
    laptop
        .wait_for_text("main", "Your sign-in has expired or is not valid")
        .await
        .unwrap();
    live_console_shown(&laptop).await;

    // Signed in to both at once, each with its own token.
    laptop
        .goto_url(&format!("{rehearsal_base}/m/?token={rehearsal_token}"))
        .await
        .unwrap();
    laptop.wait_for_text("h1", CONSOLE).await.unwrap();
    let rehearsal_console = laptop.text("main").await.unwrap();
    assert!(
        !rehearsal_console.contains(LIVE_TALK),
        "the rehearsal's console shows the live show: {rehearsal_console}"
    );
    live_console_shown(&laptop).await;
    laptop.goto_url(&console_of(&rehearsal_base)).await.unwrap();
    laptop.wait_for_text("h1", CONSOLE).await.unwrap();
    laptop.close().await.unwrap();
}
