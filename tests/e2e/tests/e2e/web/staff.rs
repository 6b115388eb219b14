//! The moderator console and the speaker page in a real browser.

use podium_client::{Client, pb};
use podium_e2e::browser::{Browser, Screen};

use super::{accessible, lived_in, require_approval, show};

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

    // With both consoles open, an organiser gives the session a backup speaker, new to the
    // conference: the board the second moderator keeps open will offer a switch to her.
    let organiser = &show.admin;
    let chenda = podium_e2e::add_speaker(
        organiser,
        podium_e2e::CONFERENCE,
        "Chenda Lim",
        "Open Development Cambodia",
        "Asia/Phnom_Penh",
    )
    .await
    .unwrap();
    let mut backed_up = podium_e2e::unchanged(&show.sessions[0]);
    backed_up.backup_speaker_ids.push(chenda.id.clone());
    organiser.agenda().update_session(backed_up).await.unwrap();

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
    // The board open since before the change offers the new backup, by name.
    watching
        .wait_for_text(&row, "វាគ្មិនបម្រុង: Chenda Lim")
        .await
        .unwrap();
    acting
        .wait_for_text(&row, "backup speaker: Chenda Lim")
        .await
        .unwrap();

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
    // Published: the console offers what may follow (answer, pin, dismiss), not publishing it
    // again.
    let card = acting.text("section.card").await.unwrap();
    assert!(
        card.contains("Mark answered") && card.contains("Pin") && !card.contains("Publish"),
        "{card}"
    );

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
    let session_name = show.server.session_cookie();
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

    // Pre-flight: nothing done yet. The green-room test runs from the page, with no agent.
    let card = format!("#session-{}", talk.id);
    phone
        .wait_for_text(&card, "No test connection yet")
        .await
        .unwrap();
    phone
        .wait_for_text(&card, "No recording uploaded yet")
        .await
        .unwrap();
    phone
        .wait_for_text(&card, "Send your recorded talk to the organisers")
        .await
        .unwrap();
    phone
        .submit(&format!("form[action='/s/test/{}'] button", talk.id))
        .await
        .unwrap();
    phone
        .wait_for_text(&card, "Test recorded. Round trip:")
        .await
        .unwrap();
    phone
        .wait_for_text(&card, "Connection tested")
        .await
        .unwrap();
    let report = show.preflight().await.unwrap();
    let sarah = &report
        .sessions
        .iter()
        .find(|s| s.session_id == talk.id)
        .unwrap()
        .speakers[0];
    assert!(sarah.tested, "the page's test is recorded: {report:?}");

    // A recording uploaded by the organisers shows on the speaker's page.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("talk.mp4");
    std::fs::write(&file, podium_client::placeholder_mp4(45 * 60 * 1000)).unwrap();
    let header = pb::RecordingHeader {
        conference_id: podium_e2e::CONFERENCE.into(),
        session_id: talk.id.clone(),
        media_type: "video/mp4".into(),
        file_name: "talk.mp4".into(),
        ..Default::default()
    };
    show.admin
        .upload_recording_file(&file, header, |_| {})
        .await
        .unwrap();
    phone.goto("/s/").await.unwrap();
    phone
        .wait_for_text(&card, "Recording uploaded and verified")
        .await
        .unwrap();

    // Now: the session is scheduled, Sarah's agent is not connected and the page says how to
    // connect it; a moderator starts the session and the page follows without a reload.
    let live = format!("[data-poll='live-{}']", talk.id);
    phone
        .wait_for_text(&live, "State: scheduled")
        .await
        .unwrap();
    phone
        .wait_for_text(&live, "Your link, as podium sees it: offline")
        .await
        .unwrap();
    phone
        .wait_for_text(
            &live,
            &format!("podium speaker connect --session {}", talk.id),
        )
        .await
        .unwrap();
    accessible(&phone, "speaker, live part").await;
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: talk.id.clone(),
        })
        .await
        .unwrap();
    phone.wait_for_text(&live, "State: live").await.unwrap();
    phone.wait_for_text(&live, "On air:").await.unwrap();
    // A screen reader hears it: the session's title, its state and her link, not the figures.
    phone
        .wait_for_text_content(
            &format!("[data-announce='live-{}']", talk.id),
            "Open data in New York: live; Your link, as podium sees it: offline",
        )
        .await
        .unwrap();
    phone.close().await.unwrap();

    // The service checks what the page cannot: enough round trips, and only a speaker of the
    // session.
    let speaker = show.admin.with_token(Some(token.clone())).unwrap();
    // A speaker watches the status of their own sessions only.
    let watched = |client: podium_client::Client| async move {
        let request = pb::WatchStatusRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            ..Default::default()
        };
        let mut stream = client
            .stage()
            .watch_status(request)
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().update {
            Some(pb::watch_status_response::Update::Snapshot(s)) => s.sessions,
            other => panic!("a snapshot first, not {other:?}"),
        }
    };
    let hers = watched(speaker.clone()).await;
    assert_eq!(
        hers.iter()
            .map(|s| s.session_id.as_str())
            .collect::<Vec<_>>(),
        [talk.id.as_str()]
    );
    assert!(watched(show.admin.clone()).await.len() > 1);
    // And of the changes that follow, only hers: another session starts, then hers ends.
    let mut changes = speaker
        .stage()
        .watch_status(pb::WatchStatusRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    changes.message().await.unwrap().unwrap();
    let (conference_id, mut stage) = (podium_e2e::CONFERENCE.to_owned(), show.admin.stage());
    stage
        .start_session(pb::StartSessionRequest {
            conference_id: conference_id.clone(),
            session_id: show.session_id().to_owned(),
            request_id: Client::request_id(),
        })
        .await
        .unwrap();
    stage
        .end_session(pb::EndSessionRequest {
            conference_id,
            session_id: talk.id.clone(),
            request_id: Client::request_id(),
        })
        .await
        .unwrap();
    match changes.message().await.unwrap().unwrap().update {
        Some(pb::watch_status_response::Update::Changed(s)) => {
            assert_eq!(s.session_id, talk.id);
            assert_eq!(s.state(), pb::SessionState::Ended);
        }
        other => panic!("her session's change, not {other:?}"),
    }
    let test = |samples: u32, session: &str| pb::RecordTestRequest {
        session_id: session.to_owned(),
        figures: Some(pb::LinkFigures {
            round_trip_ms: 40,
            ..Default::default()
        }),
        samples,
        agent: "a test".into(),
    };
    let few = speaker
        .presence()
        .record_test(test(2, &talk.id))
        .await
        .unwrap_err();
    assert_eq!(few.code(), tonic::Code::InvalidArgument);
    assert!(few.message().contains("samples"), "{few:?}");
    let not_hers = speaker
        .presence()
        .record_test(test(5, show.session_id()))
        .await
        .unwrap_err();
    assert_eq!(
        not_hers.code(),
        tonic::Code::PermissionDenied,
        "{not_hers:?}"
    );
    let not_a_speaker = show
        .admin
        .presence()
        .record_test(test(5, &talk.id))
        .await
        .unwrap_err();
    assert_eq!(not_a_speaker.code(), tonic::Code::PermissionDenied);

    let ics = podium_e2e::http::request(
        &show.server.addr,
        "GET",
        &format!("/s/session/{}.ics", talk.id),
        &[("cookie", &format!("{session_name}={token}"))],
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
    // Never changed since it was added.
    assert!(ics.body.contains("SEQUENCE:0\r\n"), "{}", ics.body);
    assert!(
        ics.body.contains("SUMMARY:Open data in New York\r\n"),
        "{}",
        ics.body
    );
}

#[tokio::test]
async fn a_moderator_reads_the_preflight_report_and_ratings_and_downloads_the_export() {
    let show = show().await;
    let session_name = show.server.session_cookie();
    lived_in(&show).await;
    let base = format!("http://{}", show.server.addr);
    let token = show
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let laptop = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    laptop.goto(&format!("/m/?token={token}")).await.unwrap();
    laptop.submit("main a[href='/m/report']").await.unwrap();
    laptop
        .wait_for_text("h1", "Pre-flight, ratings and export")
        .await
        .unwrap();
    let shown = laptop.text("main").await.unwrap();
    // The live session's speaker has not tested and there is no recording: at risk, and why.
    assert!(shown.contains("At risk"), "{shown}");
    assert!(
        shown.contains("Sokha Chan: has not done a test connection"),
        "{shown}"
    );
    assert!(
        shown.contains("No verified recording to fall back to"),
        "{shown}"
    );
    assert!(shown.contains("Sokha Chan: not tested"), "{shown}");
    // Dara's rating and comment, without her name.
    assert!(shown.contains("Average: 4.0"), "{shown}");
    assert!(shown.contains("Rated 4: 1"), "{shown}");
    assert!(shown.contains("Clear slides, thank you"), "{shown}");
    assert!(!shown.contains("Dara"), "no rater's name: {shown}");
    accessible(&laptop, "report").await;
    laptop.close().await.unwrap();
    // A Khmer reader reads why in Khmer, not the service's English.
    let laptop = Browser::open(&base, Screen::Projector, true, "km")
        .await
        .unwrap();
    laptop.goto(&format!("/m/?token={token}")).await.unwrap();
    laptop.goto("/m/report").await.unwrap();
    laptop.wait_for("#preflight-heading").await.unwrap();
    let shown = laptop.text("main").await.unwrap();
    assert!(
        shown.contains("Sokha Chan: មិនទាន់បានសាកល្បងការតភ្ជាប់"),
        "{shown}"
    );
    assert!(!shown.contains("test connection"), "{shown}");
    assert!(!shown.contains("no verified recording"), "{shown}");
    accessible(&laptop, "report in Khmer").await;
    laptop.close().await.unwrap();

    // The export, as the CLI gives it: tallies, ratings, published questions; no names.
    let cookie = format!("{session_name}={token}");
    let csv = podium_e2e::http::request(
        &show.server.addr,
        "GET",
        "/m/export.csv",
        &[("cookie", &cookie)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.header("content-disposition"),
        Some("attachment; filename=\"odc2024-feedback.csv\"")
    );
    let first = &show.polls[0];
    assert!(
        csv.body
            .starts_with("section,session,item,question,answer,count,mean\n"),
        "{}",
        csv.body
    );
    assert!(
        csv.body.contains(&format!(
            "poll,,{},Which data first?,Budgets,1,\n",
            first.id
        )),
        "{}",
        csv.body
    );
    assert!(
        csv.body.contains(&format!(
            "rating,{},,session rating,,1,4.000\n",
            show.session_id()
        )),
        "{}",
        csv.body
    );
    assert!(
        csv.body.contains("Where can we download the data?"),
        "{}",
        csv.body
    );
    assert!(!csv.body.contains("Dara"), "{}", csv.body);
    assert!(
        !csv.body.contains("Clear slides"),
        "comments stay out: {}",
        csv.body
    );
    let json = podium_e2e::http::request(
        &show.server.addr,
        "GET",
        "/m/export.json",
        &[("cookie", &cookie)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(json.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(doc["conference"]["id"], podium_e2e::CONFERENCE);
    assert_eq!(doc["ratings"][0]["mean"], 4.0);

    // An attendee's cookie gets no export.
    let attendee = show.join("Vicheka").await.unwrap();
    let refused = podium_e2e::http::request(
        &show.server.addr,
        "GET",
        "/m/export.json",
        &[("cookie", &format!("{session_name}={}", attendee.token))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 403);
    assert!(!refused.body.contains("Where can we download"));
}
