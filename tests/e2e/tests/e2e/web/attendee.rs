//! An attendee's pages in a real browser, with and without JavaScript.

use std::time::Instant;

use podium_client::{Client, pb};
use podium_e2e::browser::{Browser, Screen};

use super::{accessible, ballots, poll_form, require_approval, show};

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
    phone.submit("main form button[type=submit]").await.unwrap();
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
    phone.submit(&format!("{single} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let multiple = poll_form(&show, "Which formats do you use?");
    phone
        .click(&format!("{multiple} input[type=checkbox]"))
        .await
        .unwrap();
    phone.submit(&format!("{multiple} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let rating = poll_form(&show, "How useful was the keynote?");
    phone
        .click(&format!("{rating} input[value='4']"))
        .await
        .unwrap();
    phone.submit(&format!("{rating} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();
    let words = poll_form(&show, "One word for open data");
    phone
        .fill(&format!("{words} input[type=text]"), "ទិន្នន័យ")
        .await
        .unwrap();
    phone.submit(&format!("{words} button")).await.unwrap();
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
    phone.submit(&format!("{text} button")).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();

    // Changing a ballot: the last choice counts, once.
    phone
        .click(&format!("{single} div.choice:last-of-type input"))
        .await
        .unwrap();
    phone.submit(&format!("{single} button")).await.unwrap();
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
    assert!(
        results.contains("1 ballot") && !results.contains("1 ballots"),
        "{results}"
    );
    assert!(results.contains("Health\n1 vote (100 %)"), "{results}");
    // Another attendee's ballot: the results follow, and a screen reader is told the new
    // count (once, politely), not read every bar again.
    let announcer = format!("[data-announce='{}']", show.polls[0].id);
    // Once the page follows the results, it has said nothing of what it already shows.
    phone
        .wait_for(&format!("{announcer}[data-following]"))
        .await
        .unwrap();
    assert_eq!(phone.text_content(&announcer).await.unwrap(), "");
    let other = show.join("Chanthou").await.unwrap();
    let choice = show.polls[0].options[0].id.clone();
    other
        .polls()
        .cast_ballot(podium_e2e::ballot(&show.polls[0], vec![choice]))
        .await
        .unwrap();
    phone
        .wait_for_text_content(&announcer, "Which data first?: 2 ballots")
        .await
        .unwrap();
    accessible(&phone, "conference, polls open and voted").await;
    phone.screenshot("conference-phone-en").await.unwrap();

    // A question in the session on now, where a moderator approves questions first.
    let session = show.session_id().to_owned();
    require_approval(&show, &session).await;
    phone.goto(&format!("/session/{session}")).await.unwrap();
    phone
        .fill("#question", "Will the data be published as CSV?")
        .await
        .unwrap();
    phone
        .submit("form[action$='/questions'] button")
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
    phone.submit("button[value='km']").await.unwrap();
    phone.wait_for_text("h2", "ការស្ទង់មតិ").await.unwrap();
    // The reader's own time in Khmer too, though this Chromium has no Khmer locale of its own.
    let local = phone.text("main time .local").await.unwrap();
    assert!(
        local.starts_with("ថ្ងៃ") && local.contains("(ម៉ោងរបស់អ្នក, ") && !local.contains('M'),
        "{local}"
    );
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
    projector.wait_for_text(&first, "2 ballots").await.unwrap();
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
    projector.wait_for_text(&first, "3 ballots").await.unwrap();
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
    phone.submit("main form button[type=submit]").await.unwrap();
    let single = poll_form(&show, "Which data first?");
    phone
        .click(&format!("{single} input[type=radio]"))
        .await
        .unwrap();
    phone.submit(&format!("{single} button")).await.unwrap();
    phone
        .wait_for_text("main", "ការបោះឆ្នោតរបស់អ្នកត្រូវបានរក្សាទុក")
        .await
        .unwrap();
    assert_eq!(ballots(&show, &show.polls[0]).await, 1);
    phone.close().await.unwrap();
}

#[tokio::test]
async fn an_attendee_joins_votes_and_asks_with_the_keyboard_alone() {
    use fantoccini::key::Key;
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();

    // The skip link comes first, then the form: the code is filled in by the link.
    phone.press(Key::Tab).await.unwrap();
    assert!(phone.focused_matches("a.skip").await.unwrap());
    phone.tab_to("#name", 20).await.unwrap();
    for c in "Kiri".chars() {
        phone.press(c).await.unwrap();
    }
    phone.press(Key::Enter).await.unwrap();
    phone
        .wait_for_text("h1", "Open Data Conference 2024")
        .await
        .unwrap();

    // A radio group: Tab reaches it, Space picks, Tab reaches the poll's button, Enter votes.
    let single = poll_form(&show, "Which data first?");
    phone
        .tab_to(&format!("{single} input[type=radio]"), 80)
        .await
        .unwrap();
    phone.press(' ').await.unwrap();
    phone.tab_to(&format!("{single} button"), 10).await.unwrap();
    phone.press(Key::Enter).await.unwrap();
    phone
        .wait_for_text("main", "Your vote is saved.")
        .await
        .unwrap();

    // The session's page through its link, then a question.
    let session = show.session_id().to_owned();
    phone
        .tab_to(&format!("a[href='/session/{session}']"), 80)
        .await
        .unwrap();
    phone.press(Key::Enter).await.unwrap();
    phone
        .wait_for_text("h1", "Open contracting in Cambodia")
        .await
        .unwrap();
    phone.tab_to("#question", 80).await.unwrap();
    for c in "Is the budget data open?".chars() {
        phone.press(c).await.unwrap();
    }
    phone
        .tab_to("form[action$='/questions'] button", 10)
        .await
        .unwrap();
    phone.press(Key::Enter).await.unwrap();
    phone
        .wait_for_text("main", "Your question is sent.")
        .await
        .unwrap();
    phone
        .wait_for_text("main", "Is the budget data open?")
        .await
        .unwrap();
    phone.close().await.unwrap();
}

#[tokio::test]
async fn a_question_published_from_the_console_and_a_pin_reach_open_pages_without_a_reload() {
    let show = show().await;
    let session = show.session_id().to_owned();
    require_approval(&show, &session).await;
    let base = format!("http://{}", show.server.addr);
    let moderator = show
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    phone.submit("main form button[type=submit]").await.unwrap();
    phone.goto(&format!("/session/{session}")).await.unwrap();
    phone
        .wait_for_text("[data-poll=questions]", "No questions yet.")
        .await
        .unwrap();
    let projector = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    projector
        .goto(&format!(
            "/p/{}/{}?token={moderator}",
            podium_e2e::CONFERENCE,
            show.odc.hall.id
        ))
        .await
        .unwrap();
    projector
        .wait_for_text(".code", show.odc.join_code())
        .await
        .unwrap();
    assert_eq!(projector.text("[data-poll=pinned]").await.unwrap(), "");

    // Another attendee asks; the question waits for a moderator, so the phone shows nothing.
    let dara = show.join("Dara").await.unwrap();
    let asked = dara
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
            text: "Who maintains the land registry data?".into(),
            anonymous: false,
        })
        .await
        .unwrap()
        .into_inner()
        .question
        .unwrap();
    let moderate = |action: pb::ModerationAction| pb::ModerateQuestionRequest {
        request_id: Client::request_id(),
        conference_id: podium_e2e::CONFERENCE.into(),
        question_id: asked.id.clone(),
        action: action as i32,
        reason: String::new(),
    };
    // A moderator publishes it from the console (which lists the questions of live sessions),
    // in a browser of their own; the phone's list shows it, with an upvote button, without a
    // reload.
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
        })
        .await
        .unwrap();
    let console = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    console
        .goto(&format!("/m/?token={moderator}"))
        .await
        .unwrap();
    console
        .wait_for_text("main", "Who maintains the land registry data?")
        .await
        .unwrap();
    console
        .submit(&format!(
            "form[action='/m/questions/{}/publish'] button",
            asked.id
        ))
        .await
        .unwrap();
    console.wait_for_text("main", "Done.").await.unwrap();
    console.close().await.unwrap();
    phone
        .wait_for_text(
            "[data-poll=questions]",
            "Who maintains the land registry data?",
        )
        .await
        .unwrap();
    assert_eq!(
        phone.path().await.unwrap(),
        format!("/session/{session}"),
        "the page stayed where it was"
    );
    // The upvote form that arrived live works like one rendered with the page.
    phone
        .submit(&format!(
            "form[action='/question/{}/upvote'] button",
            asked.id
        ))
        .await
        .unwrap();
    phone
        .wait_for_text("[data-poll=questions]", "You upvoted this")
        .await
        .unwrap();

    // Pinned: the projector shows it in large type.
    show.admin
        .questions()
        .moderate_question(moderate(pb::ModerationAction::Pin))
        .await
        .unwrap();
    projector
        .wait_for_text(
            "[data-poll=pinned]",
            "Who maintains the land registry data?",
        )
        .await
        .unwrap();
    phone.close().await.unwrap();
    projector.close().await.unwrap();
}

#[tokio::test]
async fn an_attendee_reads_their_data_and_erases_it_from_their_phone() {
    let show = show().await;
    let base = format!("http://{}", show.server.addr);
    let phone = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    phone
        .goto(&format!("/j/{}", show.odc.join_code()))
        .await
        .unwrap();
    phone.fill("#name", "Chanthou Forgetme").await.unwrap();
    phone.submit("main form button[type=submit]").await.unwrap();
    let session = show.session_id().to_owned();
    phone.goto(&format!("/session/{session}")).await.unwrap();
    let question = "Who audits the procurement data?";
    phone.fill("#question", question).await.unwrap();
    phone
        .submit("form[action$='/questions'] button")
        .await
        .unwrap();
    phone
        .wait_for_text("main", "Your question is sent.")
        .await
        .unwrap();

    // "Your data", from the link beside the name.
    phone.click("header a[href='/me']").await.unwrap();
    phone.wait_for_text("h1", "Your data").await.unwrap();
    phone.wait_for_text("main", question).await.unwrap();
    phone
        .wait_for_text("main dl", "Chanthou Forgetme")
        .await
        .unwrap();
    // The name in the header is said to be where it is kept: in the sign-in, on this phone.
    phone
        .wait_for_text("main dl", "Name you joined with")
        .await
        .unwrap();
    phone
        .wait_for_text("main dl", "kept in your sign-in on this device")
        .await
        .unwrap();
    let id = phone.text("main code").await.unwrap();
    assert!(id.starts_with("att-"), "{id}");
    accessible(&phone, "my data").await;
    phone.screenshot("mydata-phone-en").await.unwrap();

    phone.click("#confirm").await.unwrap();
    phone
        .submit("form[action='/me/erase'] button")
        .await
        .unwrap();
    phone
        .wait_for_text("main", "Your data is erased and you are signed out.")
        .await
        .unwrap();
    let listed = show
        .admin
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session,
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<(&str, &str)> = listed
        .questions
        .iter()
        .map(|q| (q.text.as_str(), q.author_name.as_str()))
        .collect();
    assert_eq!(texts, [("[erased]", "[erased]")]);
    // Signed out: the page asks them to join again.
    phone.goto("/me").await.unwrap();
    phone
        .wait_for_text("main", "Join again with the code")
        .await
        .unwrap();
    phone.close().await.unwrap();
}
