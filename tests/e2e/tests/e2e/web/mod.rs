//! The pages, seen by real browsers (Debian's Chromium through chromedriver) and by plain
//! HTTP requests: an attendee on a phone joins, votes in every kind of poll, changes a vote and
//! asks a question; a moderator publishes it; the projector follows ballots live; a phone
//! without JavaScript votes too; every page passes axe-core's WCAG 2.1 A and AA rules in
//! English and Khmer; forged or broken requests are refused with a page that says why; a
//! moderator runs the show from the console and reads the pre-flight report, the ratings and
//! the export; a speaker sees their sessions in their own zone and tests their connection; a
//! rehearsal podiumd on another port leaves the live console's sign-in alone; and every page is
//! photographed at both sizes in both languages.

use podium_client::{Client, pb};
use podium_e2e::{NewPoll, Show, Talk, browser::Browser};

mod attendee;
mod http;
mod https;
mod rehearsal;
mod staff;
mod tour;

/// A show with a talk on now and one open poll of every kind.
pub async fn show() -> Show {
    // Sessions start on the minute, as agendas do.
    let now =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::Duration::minutes(1))
            .unwrap();
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
pub fn poll_form(show: &Show, question: &str) -> String {
    let poll = show
        .polls
        .iter()
        .find(|p| p.label == question)
        .unwrap_or_else(|| panic!("no poll {question:?}"));
    format!("form[action='/poll/{}/ballot']", poll.id)
}

/// Checks axe-core finds nothing on the page shown now.
pub async fn accessible(browser: &Browser, page: &str) {
    let violations = browser.accessibility_violations().await.unwrap();
    assert!(violations.is_empty(), "{page}: {violations:#?}");
}

/// The ballots counted in `poll`, as the admin's results stream says.
pub async fn ballots(show: &Show, poll: &pb::Poll) -> u64 {
    let mut polls = show.admin.polls();
    let request = pb::WatchResultsRequest {
        conference_id: podium_e2e::CONFERENCE.into(),
        poll_id: poll.id.clone(),
        language: String::new(),
    };
    let mut stream = polls.watch_results(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    first.results.unwrap().ballots
}

/// Makes `session`'s questions wait for a moderator.
pub async fn require_approval(show: &Show, session: &str) {
    show.admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.to_owned(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .unwrap();
}

/// A session that has been lived in: live, with a ballot in the first poll, a published
/// question by Dara Sok and her rating with a comment.
pub async fn lived_in(show: &Show) {
    let session = show.session_id().to_owned();
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
        })
        .await
        .unwrap();
    let dara = show.join("Dara Sok").await.unwrap();
    let first = &show.polls[0];
    dara.polls()
        .cast_ballot(podium_e2e::ballot(first, vec![first.options[0].id.clone()]))
        .await
        .unwrap();
    let asked = dara
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session.clone(),
            text: "Where can we download the data?".into(),
            anonymous: false,
        })
        .await
        .unwrap()
        .into_inner()
        .question
        .unwrap();
    show.admin
        .questions()
        .moderate_question(pb::ModerateQuestionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            question_id: asked.id,
            action: pb::ModerationAction::Publish as i32,
            reason: String::new(),
        })
        .await
        .unwrap();
    dara.ratings()
        .rate_session(pb::RateSessionRequest {
            request_id: Client::request_id(),
            conference_id: podium_e2e::CONFERENCE.into(),
            session_id: session,
            rating: 4,
            comment: "Clear slides, thank you".into(),
        })
        .await
        .unwrap();
}
