//! The moderator console and the speaker page in a real browser.

use podium_client::{Client, pb};
use podium_e2e::browser::{Browser, Screen};

use super::{accessible, require_approval, show};

#[tokio::test]
async fn a_moderator_starts_switches_and_moderates_from_the_console_and_the_board_follows() {
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let session = show.session_id().to_owned();
    let token = show
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    // Two moderators at the back of the hall: one acts, the other watches the board.
    let acting = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    let watching = Browser::open(&base, Screen::Projector, true, "km")
        .await
        .unwrap();
    for browser in [&acting, &watching] {
        browser.goto(&format!("/m/?token={token}")).await.unwrap();
        browser.wait_for_text("h1", "").await.unwrap();
        let path = browser.path().await.unwrap();
        assert_eq!(path, "/m/", "the token stays out of the URL");
    }
    let row = format!("#row-{session}");
    acting.wait_for_text(&row, "scheduled").await.unwrap();
    accessible(&acting, "console").await;

    // Start, after a confirmation.
    acting
        .submit(&format!("{row} a[href^='/m/confirm/start/']"))
        .await
        .unwrap();
    acting.wait_for_text("h1", "Please confirm").await.unwrap();
    accessible(&acting, "confirmation").await;
    acting
        .submit("main form button[type=submit]")
        .await
        .unwrap();
    acting.wait_for_text(&row, "live").await.unwrap();
    acting
        .wait_for_text(&row, "speaker: Sokha Chan")
        .await
        .unwrap();
    watching.wait_for_text(&row, "កំពុងផ្សាយផ្ទាល់").await.unwrap();

    // Switch to the slate: the other moderator's board shows it without a reload.
    acting
        .submit(&format!("{row} a[href*='kind=slate']"))
        .await
        .unwrap();
    acting
        .wait_for_text("main", "slate (please stand by)")
        .await
        .unwrap();
    acting
        .submit("main form button[type=submit]")
        .await
        .unwrap();
    acting
        .wait_for_text(&row, "a moderator switched")
        .await
        .unwrap();
    watching.wait_for_text(&row, "ផ្ទាំងរង់ចាំ").await.unwrap();
    accessible(&watching, "console in Khmer").await;
    watching.screenshot("console-km").await.unwrap();
    acting.screenshot("console-en").await.unwrap();

    // A question waits for approval; the console publishes it.
    require_approval(&show, &session).await;
    let attendee = show.join("Dara").await.unwrap();
    attendee
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
            text: "Where can we download the data?".into(),
            anonymous: false,
        })
        .await
        .unwrap();
    acting.goto("/m/").await.unwrap();
    acting
        .wait_for_text("main", "Where can we download the data?")
        .await
        .unwrap();
    acting
        .submit("form[action$='/publish'] button")
        .await
        .unwrap();
    acting.wait_for_text("main", "Done.").await.unwrap();
    let listed = attendee
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .questions;
    assert_eq!(listed[0].state, pb::QuestionState::Published as i32);

    // An attendee's cookie does not open the console.
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    phone.submit("main form button[type=submit]").await.unwrap();
    phone.goto("/m/").await.unwrap();
    phone
        .wait_for_text("main", "Your role may not do this.")
        .await
        .unwrap();

    phone.close().await.unwrap();
    watching.close().await.unwrap();
    acting.close().await.unwrap();
}

#[tokio::test]
async fn a_speaker_in_new_york_sees_their_session_in_both_zones_and_gets_a_calendar_file() {
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let talk = show
        .add_session(
            podium_e2e::Talk::new(
                "Open data in New York",
                "2030-11-14T09:00:00+07:00",
                "2030-11-14T09:45:00+07:00",
            )
            .by(podium_e2e::Speaker::Sarah),
        )
        .await
        .unwrap();
    let token = show
        .token(
            pb::Role::Speaker,
            Some(podium_e2e::Speaker::Sarah),
            "Sarah Miller",
        )
        .await
        .unwrap();
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    phone.goto(&format!("/s/?token={token}")).await.unwrap();
    phone.wait_for_text("h1", "Your sessions").await.unwrap();
    assert_eq!(
        phone.path().await.unwrap(),
        "/s/",
        "the token stays out of the URL"
    );
    let shown = phone.text("main").await.unwrap();
    assert!(shown.contains("Open data in New York"), "{shown}");
    // 09:00 in Phnom Penh is 21:00 the evening before in New York.
    assert!(
        shown.contains("America/New_York") && shown.contains("Wed 13 Nov 21:00"),
        "{shown}"
    );
    assert!(
        shown.contains("Asia/Phnom_Penh") && shown.contains("Thu 14 Nov 09:00"),
        "{shown}"
    );
    accessible(&phone, "speaker").await;
    phone.screenshot("speaker-phone-en").await.unwrap();
    phone.close().await.unwrap();

    let ics = podium_e2e::http::request(
        &show.server.addr,
        "GET",
        &format!("/s/session/{}.ics", talk.id),
        &[("cookie", &format!("podium_session={token}"))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(ics.status, 200);
    assert_eq!(
        ics.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert!(
        ics.body.contains("DTSTART:20301114T020000Z\r\n"),
        "{}",
        ics.body
    );
    assert!(
        ics.body.contains("SUMMARY:Open data in New York\r\n"),
        "{}",
        ics.body
    );
}
