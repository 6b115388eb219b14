//! Taking access back, against a real podiumd: listing and revoking tokens (also the streams
//! they opened, and after a restart), rotating the signing key with a grace period, and attendee
//! tokens that end with their conference.

use std::time::Duration;

use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, OTHER_CONFERENCE, Show, Talk, from_now};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

mod rotation;

/// How long a test waits for a stream to end before it fails; the promise is one second.
const PATIENCE: Duration = Duration::from_secs(10);

async fn revoke(by: &Client, token_id: &str) -> Result<pb::RevokeTokenResponse, Status> {
    by.access()
        .revoke_token(pb::RevokeTokenRequest {
            token_id: token_id.into(),
            conference_id: String::new(),
            reason: "link posted in the public chat".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Who a client's token says it is.
async fn who_am_i(client: &Client) -> pb::Principal {
    client
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
}

async fn token_id(client: &Client) -> String {
    who_am_i(client).await.token_id
}

/// Reads `stream` until it ends with a status, which it returns.
async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Status {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("the stream ended without a status"),
            }
        }
    })
    .await
    .expect("the stream did not end after its token was revoked")
}

/// A token issued by `by` for the fixture conference (another with `conference`).
async fn issue(
    by: &Client,
    role: pb::Role,
    conference: &str,
    name: &str,
    ttl_seconds: u64,
) -> pb::IssueTokenResponse {
    by.access()
        .issue_token(pb::IssueTokenRequest {
            role: role as i32,
            conference_id: conference.into(),
            speaker_id: String::new(),
            name: name.into(),
            ttl_seconds,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The conference's status stream, its first message (the snapshot) read.
async fn watch_status(client: &Client) -> tonic::Streaming<pb::WatchStatusResponse> {
    let mut status = client
        .stage()
        .watch_status(pb::WatchStatusRequest {
            conference_id: CONFERENCE.into(),
            room_id: String::new(),
            from_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    status.next().await.unwrap().unwrap();
    status
}

async fn refused(client: &Client) -> Status {
    client
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("a revoked token should be refused")
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_its_streams_end_and_a_restart_keeps_it_revoked() {
    let mut show = Show::start().attendees(1).await.unwrap();
    show.other_conference().await.unwrap();
    let poll = show
        .add_poll(NewPoll::single_choice(&["Yes", "No"]))
        .await
        .unwrap();
    let server = &show.server;

    // An organiser issues a moderator's token; the moderator opens a live stream.
    let organiser_token = show
        .token(pb::Role::Organiser, None, "Sophea")
        .await
        .unwrap();
    let organiser = server.client(Some(organiser_token.clone())).await.unwrap();
    let moderator_token = issue(
        &organiser,
        pb::Role::Moderator,
        CONFERENCE,
        "Dara, hall A",
        0,
    )
    .await;
    let moderator_id = moderator_token.principal.as_ref().unwrap().token_id.clone();
    assert!(moderator_id.starts_with("tok-"), "{moderator_id}");
    let moderator = server
        .client(Some(moderator_token.token.clone()))
        .await
        .unwrap();
    let mut status = watch_status(&moderator).await;

    // The list shows who holds it, who issued it, and that it was just used; a token never
    // used was never seen.
    issue(
        &organiser,
        pb::Role::Integration,
        CONFERENCE,
        "never used",
        0,
    )
    .await;
    let listed = organiser
        .access()
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let entry = listed
        .iter()
        .find(|t| t.token_id == moderator_id)
        .expect("the moderator's token is listed");
    assert_eq!(entry.holder_name, "Dara, hall A");
    assert_eq!(entry.role(), pb::Role::Moderator);
    assert_eq!(entry.issued_by, who_am_i(&organiser).await.id);
    assert!(entry.last_seen.is_some());
    assert!(entry.revoked_at.is_none());
    let unused = listed
        .iter()
        .find(|t| t.holder_name == "never used")
        .expect("the unused token is listed");
    assert!(unused.last_seen.is_none(), "{unused:?}");

    // An organiser of another conference cannot revoke it, even by its id.
    let stranger = server
        .client(Some(
            issue(
                &show.admin,
                pb::Role::Organiser,
                OTHER_CONFERENCE,
                "other organiser",
                0,
            )
            .await
            .token,
        ))
        .await
        .unwrap();
    let error = stranger
        .access()
        .revoke_token(pb::RevokeTokenRequest {
            token_id: moderator_id.clone(),
            conference_id: CONFERENCE.into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = moderator
        .access()
        .revoke_token(pb::RevokeTokenRequest {
            token_id: moderator_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    // Revoked: the open stream ends with UNAUTHENTICATED, and every new call is refused.
    let revoked = revoke(&organiser, &moderator_id).await.unwrap();
    assert!(!revoked.already_revoked);
    assert!(revoked.revoked_at.is_some());
    let ended = end_of(&mut status).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(ended.message(), "token has been revoked");
    let error = refused(&moderator).await;
    assert_eq!(error.code(), Code::Unauthenticated);
    assert_eq!(error.message(), "token has been revoked");
    // A second revocation answers as the first did, and writes nothing.
    let again = revoke(&organiser, &moderator_id).await.unwrap();
    assert!(again.already_revoked);
    assert_eq!(again.revoked_at, revoked.revoked_at);

    // An attendee's token is revoked by their attendee id, which is their token's id.
    let attendee = &show.attendees[0];
    let attendee_id = token_id(&attendee.client).await;
    assert!(attendee_id.starts_with("att-"), "{attendee_id}");
    let mut results = attendee
        .client
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    results.next().await.unwrap().unwrap();
    revoke(&organiser, &attendee_id).await.unwrap();
    assert_eq!(end_of(&mut results).await.code(), Code::Unauthenticated);
    assert_eq!(
        refused(&attendee.client).await.code(),
        Code::Unauthenticated
    );

    // The list says who revoked it and when.
    let listed = organiser
        .access()
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let entry = listed.iter().find(|t| t.token_id == moderator_id).unwrap();
    assert_eq!(entry.revoked_at, revoked.revoked_at);
    assert!(!entry.revoked_by.is_empty());

    // After a restart, both are still refused; the organiser's token still works.
    show.server.restart().await.unwrap();
    let server = &show.server;
    for token in [moderator_token.token.clone(), attendee.token.clone()] {
        let client = server.client(Some(token)).await.unwrap();
        assert_eq!(refused(&client).await.message(), "token has been revoked");
    }
    let organiser = server.client(Some(organiser_token)).await.unwrap();
    assert!(!token_id(&organiser).await.is_empty());
}

#[tokio::test]
async fn attendee_tokens_end_a_margin_after_the_conference_and_joining_closes_with_them() {
    let show = Show::start()
        .args(&["--attendee-token-margin-hours", "2"])
        .session(Talk::new("On now", &from_now(-30), &from_now(60)))
        .await
        .unwrap();
    let joined = show
        .admin
        .access()
        .join(pb::JoinRequest {
            join_code: show.odc.join_code().into(),
            display_name: "Dara".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The last session ends in an hour: the token ends two hours after that, not in 30 days.
    let expires = joined.principal.unwrap().expires_at.unwrap().seconds;
    let end = show.sessions[0].end.as_ref().unwrap().utc.unwrap().seconds;
    let expected = end + 2 * 3600;
    assert!(
        (expected - 60..=expected).contains(&expires),
        "expires at {expires}, expected about {expected}"
    );

    // A conference whose last session ended three hours ago is over: no one joins it.
    let other = show.other_conference().await.unwrap();
    show.admin
        .agenda()
        .add_session(other.session(
            "Yesterday's keynote",
            &from_now(-5 * 60),
            &from_now(-3 * 60),
            vec![other.sokha.id.clone()],
        ))
        .await
        .unwrap();
    let refused = show
        .admin
        .access()
        .join(pb::JoinRequest {
            join_code: other.join_code().into(),
            display_name: "Dara".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("is over"), "{refused:?}");
}

#[tokio::test]
async fn a_revocation_ends_request_streams_and_the_pages_live_updates_too() {
    let show = Show::start().await.unwrap();
    let server = &show.server;
    let moderator = show
        .token(pb::Role::Moderator, None, "console on the laptop")
        .await
        .unwrap();
    let bridge = show
        .token(pb::Role::Integration, None, "hall playout")
        .await
        .unwrap();
    let id_of =
        |token: String| async move { token_id(&server.client(Some(token)).await.unwrap()).await };

    // The console's live board, a Server-Sent Events stream on the session cookie: the
    // request completes only when podiumd closes the stream.
    let addr = server.addr.clone();
    let session_name = server.session_cookie();
    let cookie = format!("{session_name}={moderator}");
    let board = tokio::spawn(async move {
        podium_e2e::http::request(&addr, "GET", "/live/board", &[("cookie", &cookie)], "").await
    });
    // A bridge's report, a request stream that stays open all day; nothing sent yet.
    let (keep_open, reports) = tokio::sync::mpsc::channel::<pb::PlayoutReportRequest>(1);
    let client = server.client(Some(bridge.clone())).await.unwrap();
    let report = tokio::spawn(async move {
        client
            .playout()
            .report(tokio_stream::wrappers::ReceiverStream::new(reports))
            .await
    });
    // Both are open before the revocations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!board.is_finished() && !report.is_finished());

    let organiser = &show.admin;
    revoke(organiser, &id_of(bridge).await).await.unwrap();
    let ended = tokio::time::timeout(PATIENCE, report)
        .await
        .expect("the report stream did not end after its token was revoked")
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(ended.message(), "token has been revoked");
    drop(keep_open);

    revoke(organiser, &id_of(moderator).await).await.unwrap();
    let page = tokio::time::timeout(PATIENCE, board)
        .await
        .expect("the board's event stream did not close after its token was revoked")
        .unwrap()
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/event-stream"));
}

/// Behind a `--public-url` with a port, the pages' cookie is named by that port, not by the one
/// podiumd is reached on, and the revocation watch reads the same name as the pages.
#[tokio::test]
async fn behind_a_public_url_a_revocation_ends_the_pages_live_updates() {
    let show = Show::start()
        .args(&["--public-url", "http://podium.example:8443"])
        .await
        .unwrap();
    let moderator = show
        .token(pb::Role::Moderator, None, "console behind a proxy")
        .await
        .unwrap();
    let id = token_id(&show.server.client(Some(moderator.clone())).await.unwrap()).await;
    let addr = show.server.addr.clone();
    let cookie = format!("podium_session_8443={moderator}");
    let board = tokio::spawn(async move {
        podium_e2e::http::request(&addr, "GET", "/live/board", &[("cookie", &cookie)], "").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!board.is_finished(), "the board was not served: {board:?}");
    revoke(&show.admin, &id).await.unwrap();
    let page = tokio::time::timeout(PATIENCE, board)
        .await
        .expect("the board's event stream did not close after its token was revoked")
        .unwrap()
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/event-stream"));
}

#[tokio::test]
async fn an_open_stream_ends_when_its_token_expires() {
    let show = Show::start().await.unwrap();
    let short = issue(
        &show.admin,
        pb::Role::Moderator,
        CONFERENCE,
        // Long enough for a loaded machine to open the stream before it runs out (it is the
        // open stream's end this checks), short of PATIENCE, the wait for that end.
        "eight seconds",
        8,
    )
    .await
    .token;
    let moderator = show.server.client(Some(short)).await.unwrap();
    let mut status = watch_status(&moderator).await;
    let ended = end_of(&mut status).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(ended.message(), "token has expired");
}

#[tokio::test]
async fn a_moderator_revokes_an_abusive_question_author_without_learning_who_they_are() {
    let show = Show::start()
        .session(Talk::new(
            "Open budgets",
            "2024-11-14T02:00:00Z",
            "2024-11-14T03:00:00Z",
        ))
        .attendees(2)
        .await
        .unwrap();
    let (troll, other) = (&show.attendees[0], &show.attendees[1]);
    let asked = troll
        .client
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            text: "Spam spam spam".into(),
            anonymous: false,
        })
        .await
        .unwrap()
        .into_inner()
        .question
        .unwrap();
    let moderator = show
        .server
        .client(Some(
            issue(&show.admin, pb::Role::Moderator, CONFERENCE, "Q&A desk", 0)
                .await
                .token,
        ))
        .await
        .unwrap();
    let revoke_author = |question_id: String| {
        let moderator = moderator.clone();
        async move {
            moderator
                .questions()
                .revoke_author(pb::RevokeAuthorRequest {
                    conference_id: CONFERENCE.into(),
                    question_id,
                    reason: "spam".into(),
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut troll_watch = troll
        .client
        .questions()
        .watch_questions(pb::WatchQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
        })
        .await
        .unwrap()
        .into_inner();
    troll_watch.next().await.unwrap().unwrap();

    // A moderator of another conference finds no such question, whichever conference they
    // name.
    show.other_conference().await.unwrap();
    let stranger = show
        .server
        .client(Some(
            issue(
                &show.admin,
                pb::Role::Moderator,
                OTHER_CONFERENCE,
                "elsewhere",
                0,
            )
            .await
            .token,
        ))
        .await
        .unwrap();
    for conference in [OTHER_CONFERENCE, CONFERENCE] {
        let error = stranger
            .questions()
            .revoke_author(pb::RevokeAuthorRequest {
                conference_id: conference.into(),
                question_id: asked.id.clone(),
                reason: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{conference}: {error:?}");
    }
    let author_id = token_id(&troll.client).await;
    assert!(!author_id.is_empty(), "still in");

    let revoked = revoke_author(asked.id.clone()).await.unwrap();
    // The answer names no one; the author's token is refused and their open stream ends; the
    // other attendee's is not touched.
    assert!(!format!("{revoked:?}").contains(&author_id));
    assert!(revoked.revoked_at.is_some());
    let ended = end_of(&mut troll_watch).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(
        refused(&troll.client).await.message(),
        "token has been revoked"
    );
    assert!(!token_id(&other.client).await.is_empty());
    // Asked again, the answer looks the same: it does not tell that this author was revoked.
    let again = revoke_author(asked.id.clone()).await.unwrap();
    assert!(again.revoked_at.is_some());
    // The question stays, as moderated.
    let listed = moderator
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.questions.iter().any(|q| q.id == asked.id));
    // An unknown question is NOT_FOUND.
    let missing = revoke_author("q-nobody".into()).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
