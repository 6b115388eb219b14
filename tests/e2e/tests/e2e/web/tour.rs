//! Every page, at phone and projector sizes, in English and in Khmer: a screenshot of each
//! under `target/screenshots`, and axe-core's WCAG 2.2 A and AA rules on each in both
//! languages (with 44 px tap targets on phones), in a state with open polls, a ballot, a published question and a rating.

use podium_client::pb;
use podium_e2e::{
    Show, Speaker,
    browser::{Browser, Screen},
};

use super::{accessible, lived_in, show};

/// The tokens a tour signs in with, in turn.
struct Tokens {
    moderator: String,
    speaker: String,
}

/// Shows the page now open: checked by axe-core when `check`, and photographed.
async fn look(browser: &Browser, page: &str, size: &str, lang: &str, check: bool) {
    if check {
        accessible(browser, &format!("{page} ({lang})")).await;
        // A phone's controls take a thumb: 44 px each way (WCAG 2.5.5).
        if size == "phone" {
            let small = browser.small_tap_targets().await.unwrap();
            assert!(
                small.is_empty(),
                "{page} ({lang}): small to tap: {small:#?}"
            );
        }
    }
    browser
        .screenshot(&format!("{page}-{size}-{lang}"))
        .await
        .unwrap();
}

/// One browser visits every page, signing in as an attendee, then the moderator, then the
/// speaker, as one person at a conference never would, but each page sees its own role.
async fn tour(show: &Show, tokens: &Tokens, screen: Screen, lang: &str, check: bool) {
    let base = format!("http://{}", show.server.addr);
    let size = match screen {
        Screen::Phone => "phone",
        Screen::Projector => "projector",
    };
    let browser = Browser::open(&base, screen, true, lang).await.unwrap();
    let session = show.session_id();

    browser.goto("/no-such-page").await.unwrap();
    browser.wait_for_text("h1", "").await.unwrap();
    look(&browser, "error", size, lang, check).await;

    browser
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    browser.wait_for_text("h1", "").await.unwrap();
    look(&browser, "join", size, lang, check).await;
    browser.fill("#name", "Vicheka").await.unwrap();
    browser
        .submit("main form button[type=submit]")
        .await
        .unwrap();
    browser
        .wait_for_text("main", "Open contracting in Cambodia")
        .await
        .unwrap();
    look(&browser, "conference", size, lang, check).await;

    browser.goto(&format!("/session/{session}")).await.unwrap();
    browser
        .wait_for_text("main", "Where can we download the data?")
        .await
        .unwrap();
    look(&browser, "session", size, lang, check).await;

    browser.goto("/me").await.unwrap();
    browser.wait_for_text("main code", "att-").await.unwrap();
    look(&browser, "mydata", size, lang, check).await;

    browser
        .goto(&format!(
            "/p/{}/{}?token={}",
            podium_e2e::CONFERENCE,
            show.odc.hall.id,
            tokens.moderator
        ))
        .await
        .unwrap();
    browser
        .wait_for_text(".code", show.odc.join_code())
        .await
        .unwrap();
    look(&browser, "projector", size, lang, check).await;

    browser
        .goto(&format!("/m/?token={}", tokens.moderator))
        .await
        .unwrap();
    browser
        .wait_for_text(&format!("#row-{session}"), "Sokha Chan")
        .await
        .unwrap();
    look(&browser, "console", size, lang, check).await;

    browser
        .goto(&format!("/m/confirm/end/{session}"))
        .await
        .unwrap();
    browser
        .wait_for_text("main", "Open contracting in Cambodia")
        .await
        .unwrap();
    look(&browser, "confirm", size, lang, check).await;

    browser.goto("/m/report").await.unwrap();
    browser
        .wait_for_text("main", "Clear slides, thank you")
        .await
        .unwrap();
    look(&browser, "report", size, lang, check).await;

    browser
        .goto(&format!("/s/?token={}", tokens.speaker))
        .await
        .unwrap();
    browser
        .wait_for_text("main", "Open contracting in Cambodia")
        .await
        .unwrap();
    look(&browser, "speaker", size, lang, check).await;

    browser.close().await.unwrap();
}

#[tokio::test]
async fn every_page_at_both_sizes_in_both_languages_is_photographed_and_accessible() {
    let show = show().await;
    lived_in(&show).await;
    let tokens = Tokens {
        moderator: show
            .token(pb::Role::Moderator, None, "Sokha, moderator")
            .await
            .unwrap(),
        speaker: show
            .token(pb::Role::Speaker, Some(Speaker::Sokha), "Sokha Chan")
            .await
            .unwrap(),
    };
    // axe-core once per page and language, on the phone, where layouts are tightest; the
    // projector size is photographed.
    for (screen, lang, check) in [
        (Screen::Phone, "en", true),
        (Screen::Phone, "km", true),
        (Screen::Projector, "en", false),
        (Screen::Projector, "km", false),
    ] {
        tour(&show, &tokens, screen, lang, check).await;
    }
    let written = std::fs::read_dir(podium_e2e::browser::screenshot_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect::<Vec<_>>();
    for page in [
        "error",
        "join",
        "conference",
        "session",
        "projector",
        "console",
        "confirm",
        "report",
        "speaker",
        "mydata",
    ] {
        for size in ["phone", "projector"] {
            for lang in ["en", "km"] {
                let name = format!("{page}-{size}-{lang}.png");
                assert!(written.contains(&name), "no screenshot {name}");
            }
        }
    }
}
