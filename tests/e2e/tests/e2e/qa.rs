//! Session Q&A against the real podiumd and `podium` CLI: attendees ask and upvote (a second
//! upvote counts once), lists are ordered by pins and votes, the approval flow, a dismissal
//! that only its author (and moderators) see with the reason, a live stream, a restart, and
//! another conference's token finding nothing. Session ratings once the session is live.

use futures::StreamExt;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, PATIENCE, Show, ShowBuilder, Talk, cli};
use tonic::Code;

fn ask(session_id: &str, text: &str, anonymous: bool) -> pb::AskQuestionRequest {
    pb::AskQuestionRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
        text: text.into(),
        anonymous,
    }
}

fn upvote(question_id: &str) -> pb::UpvoteQuestionRequest {
    pb::UpvoteQuestionRequest {
        conference_id: CONFERENCE.into(),
        question_id: question_id.into(),
    }
}

fn moderate(
    question_id: &str,
    action: pb::ModerationAction,
    reason: &str,
) -> pb::ModerateQuestionRequest {
    pb::ModerateQuestionRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        question_id: question_id.into(),
        action: action as i32,
        reason: reason.into(),
    }
}

async fn list(client: &Client, session_id: &str) -> Vec<pb::Question> {
    client
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: session_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .questions
}

/// The show of these tests: one session, "Open budgets", given by Sokha, and three attendees
/// (Dara, Sok, Chenda).
fn open_budgets() -> ShowBuilder {
    Show::start()
        .session(Talk::new(
            "Open budgets",
            "2024-11-14T02:00:00Z",
            "2024-11-14T03:00:00Z",
        ))
        .attendees(3)
}

fn ids(questions: &[pb::Question]) -> Vec<&str> {
    questions.iter().map(|q| q.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendees_ask_and_upvote_moderators_decide_and_authors_are_told() {
    let mut show = open_budgets().await.unwrap();
    let (admin, ses) = (show.admin.clone(), show.session_id().to_owned());
    let [dara, sok, chenda] = [0, 1, 2].map(|i| show.attendees[i].client.clone());
    let sok_token = show.attendees[1].token.clone();

    // Dara follows the session from the start.
    let mut stream = dara
        .questions()
        .watch_questions(pb::WatchQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: ses.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = stream.next().await.unwrap().unwrap();
    assert!(snapshot.questions.is_empty());

    let asked = |client: &Client, text: &str| {
        let (client, request) = (client.clone(), ask(&ses, text, false));
        async move {
            client
                .questions()
                .ask_question(request)
                .await
                .unwrap()
                .into_inner()
                .question
                .unwrap()
        }
    };
    let q1 = asked(&dara, "Which budget lines will be open by 2025?").await;
    let q2 = asked(&sok, "Is the data licensed CC-BY?").await;
    let q3 = asked(&chenda, "Are provincial budgets included?").await;
    assert_eq!(q1.state(), pb::QuestionState::Published);
    assert_eq!(q1.author_name, "Dara");

    // One upvote per attendee: the second is answered and not counted; not your own.
    let first = sok
        .questions()
        .upvote_question(upvote(&q1.id))
        .await
        .unwrap()
        .into_inner();
    assert!(first.counted);
    let second = sok
        .questions()
        .upvote_question(upvote(&q1.id))
        .await
        .unwrap()
        .into_inner();
    assert!(!second.counted);
    assert_eq!(second.votes, 1);
    assert_eq!(second.position, first.position);
    chenda
        .questions()
        .upvote_question(upvote(&q1.id))
        .await
        .unwrap();
    dara.questions()
        .upvote_question(upvote(&q3.id))
        .await
        .unwrap();
    let own = dara
        .questions()
        .upvote_question(upvote(&q1.id))
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::FailedPrecondition);

    let seen = list(&dara, &ses).await;
    assert_eq!(ids(&seen), [&q1.id, &q3.id, &q2.id], "most votes first");
    assert_eq!(seen.iter().map(|q| q.votes).collect::<Vec<_>>(), [2, 1, 0]);
    assert!(seen[0].mine && seen[1].upvoted && !seen[2].upvoted);

    // The stream catches up with the votes, positions never going back.
    let mut last = snapshot.position;
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(message.position >= last);
        last = message.position;
        if message
            .questions
            .iter()
            .map(|q| q.votes)
            .collect::<Vec<_>>()
            == [2, 1, 0]
        {
            break;
        }
    }

    // Bad input names the field; anonymous questions need the session's permission.
    let empty = dara
        .questions()
        .ask_question(ask(&ses, "   ", false))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("text:"), "{}", empty.message());
    let long = dara
        .questions()
        .ask_question(ask(&ses, &"?".repeat(501), false))
        .await
        .unwrap_err();
    assert!(long.message().starts_with("text:"), "{}", long.message());
    let anon = sok
        .questions()
        .ask_question(ask(&ses, "Who pays?", true))
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::FailedPrecondition);
    assert!(
        anon.message().starts_with("anonymous:"),
        "{}",
        anon.message()
    );

    // Approval flow: pending questions are seen by moderators and their author only.
    let denied = sok
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: String::new(),
            conference_id: CONFERENCE.into(),
            session_id: ses.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: String::new(),
            conference_id: CONFERENCE.into(),
            session_id: ses.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .unwrap();
    let q4 = sok
        .questions()
        .ask_question(ask(&ses, "Who pays for the portal?", true))
        .await
        .unwrap()
        .into_inner()
        .question
        .unwrap();
    assert_eq!(q4.state(), pb::QuestionState::Pending);
    assert!(!ids(&list(&dara, &ses).await).contains(&q4.id.as_str()));
    assert_eq!(
        dara.questions()
            .upvote_question(upvote(&q4.id))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let mine = list(&sok, &ses).await;
    assert!(mine.iter().any(|q| q.id == q4.id && q.mine));
    let staff = list(&admin, &ses).await;
    let pending = staff.iter().find(|q| q.id == q4.id).unwrap();
    assert!(
        pending.anonymous && pending.author_name.is_empty(),
        "nobody sees an anonymous author"
    );
    admin
        .questions()
        .moderate_question(moderate(&q4.id, pb::ModerationAction::Publish, ""))
        .await
        .unwrap();
    assert!(ids(&list(&dara, &ses).await).contains(&q4.id.as_str()));

    // A dismissal: the author sees it with the reason, other attendees do not see it at all.
    admin
        .questions()
        .moderate_question(moderate(
            &q2.id,
            pb::ModerationAction::Dismiss,
            "covered in the talk",
        ))
        .await
        .unwrap();
    assert!(!ids(&list(&dara, &ses).await).contains(&q2.id.as_str()));
    let told = list(&sok, &ses)
        .await
        .into_iter()
        .find(|q| q.id == q2.id)
        .unwrap();
    assert_eq!(told.state(), pb::QuestionState::Dismissed);
    assert_eq!(told.reason, "covered in the talk");
    let pin_dismissed = admin
        .questions()
        .moderate_question(moderate(&q2.id, pb::ModerationAction::Pin, ""))
        .await
        .unwrap_err();
    assert_eq!(pin_dismissed.code(), Code::FailedPrecondition);

    // Pinned first; answered after the open questions.
    admin
        .questions()
        .moderate_question(moderate(&q4.id, pb::ModerationAction::Pin, ""))
        .await
        .unwrap();
    admin
        .questions()
        .moderate_question(moderate(&q1.id, pb::ModerationAction::Answer, ""))
        .await
        .unwrap();
    let answered = chenda
        .questions()
        .upvote_question(upvote(&q1.id))
        .await
        .unwrap()
        .into_inner();
    assert!(!answered.counted, "chenda's earlier upvote stands");
    let order = list(&dara, &ses).await;
    assert_eq!(ids(&order), [&q4.id, &q3.id, &q1.id]);

    // Another conference's attendee finds nothing here.
    let other = show.other_conference().await.unwrap();
    let other_code = admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: other.conference.id,
        })
        .await
        .unwrap()
        .into_inner()
        .conference
        .unwrap()
        .join_code;
    let stranger = podium_e2e::join(&show.server, &other_code, "Stranger")
        .await
        .unwrap();
    let codes = [
        stranger
            .questions()
            .upvote_question(upvote(&q3.id))
            .await
            .unwrap_err()
            .code(),
        stranger
            .questions()
            .ask_question(ask(&ses, "Hello?", false))
            .await
            .unwrap_err()
            .code(),
        stranger
            .questions()
            .list_questions(pb::ListQuestionsRequest {
                conference_id: CONFERENCE.into(),
                session_id: ses.clone(),
            })
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::NotFound; 3]);

    // The CLI: an attendee asks and lists; the table shows their pending question.
    let (ok, out, err) = cli(
        &show.server,
        &sok_token,
        &["qa", "ask", &ses, "Is there an API?"],
    )
    .unwrap();
    assert!(ok, "{err}");
    let cli_question = out.trim().to_owned();
    let (ok, out, err) = cli(&show.server, &sok_token, &["qa", "list", &ses]).unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains(&cli_question) && out.contains("pending"),
        "{out}"
    );
    let (ok, _, err) = cli(&show.server, &sok_token, &["qa", "upvote", &q3.id]).unwrap();
    assert!(ok, "{err}");

    // A restart keeps every list as it was.
    let before = list(&admin, &ses).await;
    show.restart().await.unwrap();
    assert_eq!(list(&show.admin, &ses).await, before);
}

#[tokio::test]
async fn a_session_is_rated_once_it_is_live_and_moderators_see_the_aggregates() {
    let show = open_budgets().await.unwrap();
    let (server, admin, ses) = (&show.server, &show.admin, show.session_id());
    let (dara, sok) = (&show.attendees[0].token, &show.attendees[1].token);
    let admin_token = server.admin_token().unwrap();

    let (ok, _, err) = cli(server, dara, &["rate", ses, "5"]).unwrap();
    assert!(!ok && err.contains("has not started"), "{err}");
    admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: ses.into(),
        })
        .await
        .unwrap();
    // Right after the status service took it live.
    let (ok, _, err) = cli(server, dara, &["rate", ses, "2"]).unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        server,
        dara,
        &["rate", ses, "4", "--comment", "clear and useful"],
    )
    .unwrap();
    assert!(ok && err.contains("replaces"), "{err}");
    let (ok, _, err) = cli(server, sok, &["rate", ses, "5"]).unwrap();
    assert!(ok, "{err}");

    let (ok, _, err) = cli(server, dara, &["ratings"]).unwrap();
    assert!(!ok && err.contains("may not read ratings"), "{err}");
    let (ok, out, err) = cli(
        server,
        &admin_token,
        &["-c", CONFERENCE, "ratings", "--json"],
    )
    .unwrap();
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rated = &json["sessions"][0];
    assert_eq!(rated["summary"]["count"], 2, "{json}");
    assert_eq!(rated["summary"]["mean"], 4.5, "{json}");
    assert_eq!(rated["comments"][0], "clear and useful", "{json}");
}

#[tokio::test]
async fn rate_limits_stop_a_flooding_attendee_with_a_retry_hint_and_spare_the_others() {
    use tonic_types::StatusExt;

    let show = open_budgets()
        .args(&["--rate-questions", "2", "--rate-joins", "3"])
        .await
        .unwrap();
    let ses = show.session_id();
    let [dara, sok, chenda] = &show.attendees[..] else {
        panic!("three attendees")
    };

    // Joins are limited per client address: a fourth from this one waits.
    let refused = show
        .server
        .client(None)
        .await
        .unwrap()
        .access()
        .join(pb::JoinRequest {
            join_code: show.odc.join_code().into(),
            display_name: "Flood".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");

    // Questions are limited per attendee.
    for text in ["Where is the budget data?", "Is it open licensed?"] {
        dara.questions()
            .ask_question(ask(ses, text, false))
            .await
            .unwrap();
    }
    let refused = dara
        .questions()
        .ask_question(ask(ses, "And the 2023 figures?", false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("too many questions"),
        "{}",
        refused.message()
    );
    let retry = refused
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_secs(30));

    // Others are not held back by Dara, and the refused question was never stored.
    sok.questions()
        .ask_question(ask(ses, "Who maintains it?", false))
        .await
        .unwrap();
    assert_eq!(list(chenda, ses).await.len(), 3);
}
