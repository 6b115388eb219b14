//! The pages, seen by real browsers (Debian's Chromium through chromedriver) and by plain
//! HTTP requests: an attendee on a phone joins, votes in every kind of poll, changes a vote and
//! asks a question; a moderator publishes it; the projector follows ballots live; a phone
//! without JavaScript votes too; every page passes axe-core's WCAG 2.1 A and AA rules in
//! English and Khmer; and forged or broken requests are refused with a page that says why.

use std::time::Instant;

use podium_client::{Client, pb};
use podium_e2e::{
    NewPoll, Show, Talk,
    browser::{Browser, Screen},
    http::{self, form},
};

/// A show with a talk on now and one open poll of every kind.
async fn show() -> Show {
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now + chrono::Duration::minutes(minutes)).to_rfc3339();
    Show::start()
        .session(Talk::new("Open contracting in Cambodia", &at(-10), &at(50)))
        .poll(NewPoll::single_choice(&["Budgets", "Land", "Health"]).question("Which data first?"))
        .poll(
            NewPoll::multiple_choice(&["CSV", "JSON", "PDF"]).question("Which formats do you use?"),
        )
        .poll(NewPoll::rating(1, 5).question("How useful was the keynote?"))
        .poll(NewPoll::word_cloud().question("One word for open data"))
        .poll(NewPoll::open_text().question("What should we do next year?"))
        .await
        .unwrap()
}

/// The form of the poll whose heading says `question`.
fn poll_form(show: &Show, question: &str) -> String {
    let poll = show
        .polls
        .iter()
        .find(|p| p.label == question)
        .unwrap_or_else(|| panic!("no poll {question:?}"));
    format!("form[action='/poll/{}/ballot']", poll.id)
}

/// Checks axe-core finds nothing on the page shown now.
async fn accessible(browser: &Browser, page: &str) {
    let violations = browser.accessibility_violations().await.unwrap();
    assert!(violations.is_empty(), "{page}: {violations:#?}");
}

#[tokio::test]
async fn an_attendee_on_a_phone_votes_in_every_poll_asks_and_the_projector_follows() {
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();

    // The join link from the projector's QR code, then a name.
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    accessible(&phone, "join").await;
    phone.screenshot("join-phone-en").await.unwrap();
    phone.fill("#name", "Dara").await.unwrap();
    phone.click("main form button[type=submit]").await.unwrap();
    phone
        .wait_for_text("h1", "Open Data Conference 2024")
        .await
        .unwrap();
    assert_eq!(phone.path().await.unwrap(), "/", "the URL carries no token");

    // Every kind of poll, each with its own controls.
    let single = poll_form(&show, "Which data first?");
    phone
        .click(&format!("{single} input[type=radio]"))
        .await
        .unwrap();
    phone.click(&format!("{single} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let multiple = poll_form(&show, "Which formats do you use?");
    phone
        .click(&format!("{multiple} input[type=checkbox]"))
        .await
        .unwrap();
    phone.click(&format!("{multiple} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let rating = poll_form(&show, "How useful was the keynote?");
    phone
        .click(&format!("{rating} input[value='4']"))
        .await
        .unwrap();
    phone.click(&format!("{rating} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let words = poll_form(&show, "One word for open data");
    phone
        .fill(&format!("{words} input[type=text]"), "ទិន្នន័យ")
        .await
        .unwrap();
    phone.click(&format!("{words} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let text = poll_form(&show, "What should we do next year?");
    phone
        .fill(
            &format!("{text} textarea"),
            "More workshops in the provinces",
        )
        .await
        .unwrap();
    phone.click(&format!("{text} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();

    // Changing a ballot: the last choice counts, once.
    phone
        .click(&format!("{single} div.choice:last-of-type input"))
        .await
        .unwrap();
    phone.click(&format!("{single} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is changed.")
        .await
        .unwrap();
    let results = phone
        .text(&format!(
            "section[aria-labelledby='poll-{}']",
            show.polls[0].id
        ))
        .await
        .unwrap();
    assert!(results.contains("1 ballots"), "{results}");
    assert!(results.contains("Health\n1 votes (100 %)"), "{results}");
    accessible(&phone, "conference, polls open and voted").await;
    phone.screenshot("conference-phone-en").await.unwrap();

    // A question in the session on now, where a moderator approves questions first.
    let session = show.session_id().to_owned();
    show.admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .unwrap();
    phone.goto(&format!("/session/{session}")).await.unwrap();
    phone
        .fill("#question", "Will the data be published as CSV?")
        .await
        .unwrap();
    phone
        .click("form[action$='/questions'] button")
        .await
        .unwrap();
    phone
        .wait_for_text("main", "Your question is sent.")
        .await
        .unwrap();
    phone
        .wait_for_text("main ul.plain", "waiting for a moderator")
        .await
        .unwrap();

    // A moderator publishes it; the attendee sees it published.
    let moderator_token = show
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let moderator = show
        .server
        .client(Some(moderator_token.clone()))
        .await
        .unwrap();
    let questions = moderator
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .questions;
    moderator
        .questions()
        .moderate_question(pb::ModerateQuestionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            question_id: questions[0].id.clone(),
            action: pb::ModerationAction::Publish as i32,
            reason: String::new(),
        })
        .await
        .unwrap();
    phone.goto(&format!("/session/{session}")).await.unwrap();
    phone
        .wait_for_text("main ul.plain", "published")
        .await
        .unwrap();
    accessible(&phone, "session with a published question").await;
    phone.screenshot("session-phone-en").await.unwrap();

    // In Khmer, chosen with the switcher and remembered.
    phone.click("button[value='km']").await.unwrap();
    phone.wait_for_text("h2", "ការស្ទង់មតិ").await.unwrap();
    accessible(&phone, "session in Khmer").await;
    phone.screenshot("session-phone-km").await.unwrap();
    phone.goto("/").await.unwrap();
    phone
        .wait_for_text("h1", "សន្និសីទទិន្នន័យបើកចំហ ២០២៤")
        .await
        .unwrap();
    accessible(&phone, "conference in Khmer").await;
    phone.screenshot("conference-phone-km").await.unwrap();

    // The projector, opened from a link with the moderator's token, follows a new ballot live.
    let projector = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    projector
        .goto(&format!(
            "/p/{}/{}?token={moderator_token}",
            podium_e2e::CONFERENCE,
            show.odc.hall.id
        ))
        .await
        .unwrap();
    projector
        .wait_for_text(".code", show.odc.join_code())
        .await
        .unwrap();
    let path = projector.path().await.unwrap();
    assert!(
        !path.contains("token"),
        "the token stays out of the URL: {path}"
    );
    let first = format!("section[aria-labelledby='poll-{}']", show.polls[0].id);
    projector.wait_for_text(&first, "1 ballots").await.unwrap();
    accessible(&projector, "projector").await;
    projector.screenshot("projector-en").await.unwrap();
    let another = show.join("Vicheka").await.unwrap();
    let cast = Instant::now();
    another
        .polls()
        .cast_ballot(podium_e2e::ballot(
            &show.polls[0],
            vec![show.polls[0].options[0].id.clone()],
        ))
        .await
        .unwrap();
    projector.wait_for_text(&first, "2 ballots").await.unwrap();
    println!(
        "ballot acknowledged -> shown on the projector: {:?}",
        cast.elapsed()
    );
    let shown = projector.text("main").await.unwrap();
    assert!(
        !shown.contains("Dara") && !shown.contains("Vicheka"),
        "no attendee names: {shown}"
    );

    projector.close().await.unwrap();
    phone.close().await.unwrap();
}

#[tokio::test]
async fn a_phone_without_javascript_joins_and_votes() {
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let phone = Browser::open(&base, Screen::Phone, false, "km")
        .await
        .unwrap();
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    phone.wait_for_text("h1", "ចូលរួមសន្និសីទ").await.unwrap();
    phone.screenshot("join-phone-km").await.unwrap();
    phone.click("main form button[type=submit]").await.unwrap();
    let single = poll_form(&show, "Which data first?");
    phone
        .click(&format!("{single} input[type=radio]"))
        .await
        .unwrap();
    phone.click(&format!("{single} button")).await.unwrap();
    phone
        .wait_for_text("main", "ការបោះឆ្នោតរបស់អ្នកត្រូវបានរក្សាទុក")
        .await
        .unwrap();
    let mut polls = show.admin.polls();
    let results = polls.watch_results(pb::WatchResultsRequest {
        conference_id: podium_e2e::CONFERENCE.into(),
        poll_id: show.polls[0].id.clone(),
        language: String::new(),
    });
    let mut stream = results.await.unwrap().into_inner();
    let counted = stream.message().await.unwrap().unwrap().results.unwrap();
    assert_eq!(counted.ballots, 1);
    phone.close().await.unwrap();
}

#[tokio::test]
async fn pages_send_security_headers_and_refuse_forged_and_broken_requests() {
    let show = show().await;
    let addr = show.server.addr.clone();

    // Every page: a strict policy, no sniffing, no referrer, no framing, no caching.
    let home = http::request(&addr, "GET", "/", &[], "").await.unwrap();
    assert_eq!(home.status, 200);
    let csp = home.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(home.header("referrer-policy"), Some("same-origin"));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    let csrf_cookie = home
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("podium_csrf="))
        .unwrap();
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = home.cookie("podium_csrf").unwrap();
    let cookie = format!("podium_csrf={csrf}");
    let code = show.odc.join_code().to_owned();

    // A join without the form's CSRF value, or from another site, does nothing.
    let no_token = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie)],
        &form(&[("code", &code)]),
    )
    .await
    .unwrap();
    assert_eq!(no_token.status, 403);
    assert!(
        no_token.body.contains("This form has expired"),
        "{}",
        no_token.body
    );
    assert_eq!(no_token.cookie("podium_session"), None);
    let cross_site = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        &form(&[("csrf", &csrf), ("code", &code)]),
    )
    .await
    .unwrap();
    assert_eq!(cross_site.status, 403);
    assert_eq!(cross_site.cookie("podium_session"), None);

    // A wrong code: a page in the reader's language, nothing stored.
    let wrong = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("accept-language", "km-KH, en;q=0.5")],
        &form(&[("csrf", &csrf), ("code", "NOPE-NOPE")]),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 404);
    assert!(
        wrong.body.contains("គ្មានសន្និសីទណាមួយមានលេខកូដនេះទេ"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("lang=\"km\""));

    // An oversized form: refused with a page that says so.
    let huge = "x".repeat(podium_web::MAX_FORM_BYTES + 1);
    let oversized = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie)],
        &form(&[("csrf", &csrf), ("code", &huge)]),
    )
    .await
    .unwrap();
    assert_eq!(oversized.status, 413);
    assert!(
        oversized.body.contains("What you sent is too long."),
        "{}",
        oversized.body
    );

    // The right code: an HttpOnly, Strict session cookie and a redirect to a token-free URL.
    let joined = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("origin", &format!("http://{addr}"))],
        &form(&[("csrf", &csrf), ("code", &code), ("name", "Dara")]),
    )
    .await
    .unwrap();
    assert_eq!(joined.status, 303, "{}", joined.body);
    assert_eq!(joined.header("location"), Some("/"));
    let session = joined
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("podium_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let token = joined.cookie("podium_session").unwrap();

    // A ballot with the cookie but without the CSRF value is not counted.
    let signed_in = format!("{cookie}; podium_session={token}");
    let poll = &show.polls[0];
    let forged = http::request(
        &addr,
        "POST",
        &format!("/poll/{}/ballot", poll.id),
        &[("cookie", &signed_in)],
        &form(&[("option", &poll.options[0].id)]),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 403);
    // A tampered session cookie: treated as signed out, and cleared.
    let tampered = http::request(
        &addr,
        "GET",
        "/",
        &[("cookie", &format!("{cookie}; podium_session={token}x"))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(tampered.status, 401);
    assert!(
        tampered.body.contains("Your sign-in has expired"),
        "{}",
        tampered.body
    );
    assert!(
        tampered
            .cookies()
            .iter()
            .any(|c| c.starts_with("podium_session=;")),
        "{:?}",
        tampered.cookies()
    );
    let counted = show
        .admin
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            poll_id: poll.id.clone(),
            language: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .results
        .unwrap();
    assert_eq!(counted.ballots, 0, "nothing forged was stored");

    // Assets: content-hashed names, a year's cache, compressed on request.
    let css = home
        .body
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.ends_with(".css")))
        .unwrap()
        .to_owned();
    let asset = http::request(&addr, "GET", &css, &[("accept-encoding", "gzip")], "")
        .await
        .unwrap();
    assert_eq!(asset.status, 200);
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(asset.header("content-encoding"), Some("gzip"));
}

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
        .click(&format!("{row} a[href^='/m/confirm/start/']"))
        .await
        .unwrap();
    acting.wait_for_text("h1", "Please confirm").await.unwrap();
    accessible(&acting, "confirmation").await;
    acting.click("main form button[type=submit]").await.unwrap();
    acting.wait_for_text(&row, "live").await.unwrap();
    acting
        .wait_for_text(&row, "speaker: Sokha Chan")
        .await
        .unwrap();
    watching.wait_for_text(&row, "កំពុងផ្សាយផ្ទាល់").await.unwrap();

    // Switch to the slate: the other moderator's board shows it without a reload.
    acting
        .click(&format!("{row} a[href*='kind=slate']"))
        .await
        .unwrap();
    acting
        .wait_for_text("main", "slate (please stand by)")
        .await
        .unwrap();
    acting.click("main form button[type=submit]").await.unwrap();
    acting
        .wait_for_text(&row, "a moderator switched")
        .await
        .unwrap();
    watching.wait_for_text(&row, "ផ្ទាំងរង់ចាំ").await.unwrap();
    accessible(&watching, "console in Khmer").await;
    watching.screenshot("console-km").await.unwrap();
    acting.screenshot("console-en").await.unwrap();

    // A question waits for approval; the console publishes it.
    show.admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .unwrap();
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
        .click("form[action$='/publish'] button")
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
    phone.click("main form button[type=submit]").await.unwrap();
    phone.goto("/m/").await.unwrap();
    phone
        .wait_for_text("main", "Your role may not do this.")
        .await
        .unwrap();

    phone.close().await.unwrap();
    watching.close().await.unwrap();
    acting.close().await.unwrap();
}
