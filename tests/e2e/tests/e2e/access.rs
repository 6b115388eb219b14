//! Who may do what, against a real podiumd: roles, conference scope, and bad tokens.

use std::time::{Duration, SystemTime};

use podium_access::{Principal, Role, TokenKeys};
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, OTHER_CONFERENCE, Show, text};
use tonic::Code;

/// A token of the conference for `role`, issued by `issuer`.
async fn issue(issuer: &Client, role: pb::Role, speaker: &str) -> String {
    issuer
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: role as i32,
            conference_id: CONFERENCE.into(),
            speaker_id: speaker.into(),
            name: format!("{role:?} for tests"),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("should be refused").code()
}

#[tokio::test]
async fn roles_and_scopes_are_enforced() {
    let show = Show::start().await.unwrap();
    show.other_conference().await.unwrap();
    let (server, admin, a) = (&show.server, &show.admin, &show.odc);

    // An attendee joins with the code, reads the agenda, and cannot change it.
    let code_a = a.conference.join_code.clone();
    assert!(!code_a.is_empty());
    let joined = admin
        .access()
        .join(pb::JoinRequest {
            join_code: code_a.to_lowercase(),
            display_name: "Dara".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        joined.principal.as_ref().unwrap().role(),
        pb::Role::Attendee
    );
    let attendee = server.client(Some(joined.token)).await.unwrap();
    let seen = attendee
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen.conference.unwrap().join_code,
        "",
        "attendees do not see the join code"
    );
    let denied = attendee
        .agenda()
        .add_session(a.session(
            "Sneaky",
            "2024-11-14T05:00:00Z",
            "2024-11-14T06:00:00Z",
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(denied.message(), "an attendee token may not add sessions");
    assert_eq!(
        code(
            attendee
                .feed()
                .subscribe(pb::SubscribeRequest {
                    conference_id: CONFERENCE.into(),
                    from_position: 0,
                    types: vec![]
                })
                .await
        ),
        Code::PermissionDenied
    );

    // An organiser of conference A finds nothing of conference B: NOT_FOUND, as if it did not
    // exist.
    let organiser = server
        .client(Some(issue(admin, pb::Role::Organiser, "").await))
        .await
        .unwrap();
    let missing = organiser
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: OTHER_CONFERENCE.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.message(),
        format!("conference {OTHER_CONFERENCE} not found")
    );
    let nonexistent = organiser
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: "no-such-conf".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        nonexistent.message(),
        "conference no-such-conf not found",
        "existence does not leak"
    );
    assert_eq!(
        code(
            organiser
                .agenda()
                .list_sessions(pb::ListSessionsRequest {
                    conference_id: OTHER_CONFERENCE.into(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            organiser
                .feed()
                .subscribe(pb::SubscribeRequest {
                    conference_id: OTHER_CONFERENCE.into(),
                    from_position: 0,
                    types: vec![]
                })
                .await
        ),
        Code::NotFound
    );
    let listed = organiser
        .agenda()
        .list_conferences(pb::ListConferencesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .conferences
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        [CONFERENCE]
    );
    // ... but sets up their own.
    organiser
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            name: "Hackathon corner".into(),
            capacity: 30,
        })
        .await
        .unwrap();

    // Organisers issue staff tokens for their own conference only, and never admin tokens.
    let moderator = issue(&organiser, pb::Role::Moderator, "").await;
    assert_eq!(
        code(
            organiser
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: pb::Role::Admin as i32,
                    name: "x".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            organiser
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: pb::Role::Moderator as i32,
                    conference_id: OTHER_CONFERENCE.into(),
                    name: "x".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    let moderator = server.client(Some(moderator)).await.unwrap();
    assert_eq!(
        code(
            moderator
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: pb::Role::Moderator as i32,
                    conference_id: CONFERENCE.into(),
                    name: "x".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            moderator
                .agenda()
                .create_conference(pb::CreateConferenceRequest {
                    conference_id: "mine".into(),
                    time_zone: "UTC".into(),
                    title: text("Mine"),
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied
    );

    // Speaker tokens name a speaker of the conference.
    let speaker_token = issue(admin, pb::Role::Speaker, &a.sarah.id).await;
    let speaker = server.client(Some(speaker_token)).await.unwrap();
    let me = speaker
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(me.speaker_id, a.sarah.id);
    assert_eq!(
        code(
            admin
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: pb::Role::Speaker as i32,
                    conference_id: CONFERENCE.into(),
                    speaker_id: "spk-nobody".into(),
                    name: "x".into(),
                    ttl_seconds: 0
                })
                .await
        ),
        Code::NotFound
    );

    // An integration token reads the feed and nothing else.
    let integration = server
        .client(Some(issue(admin, pb::Role::Integration, "").await))
        .await
        .unwrap();
    integration
        .feed()
        .subscribe(pb::SubscribeRequest {
            conference_id: CONFERENCE.into(),
            from_position: 0,
            types: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        code(
            integration
                .agenda()
                .add_room(pb::AddRoomRequest {
                    request_id: Client::request_id(),
                    conference_id: CONFERENCE.into(),
                    name: "x".into(),
                    capacity: 0
                })
                .await
        ),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn missing_malformed_tampered_and_expired_tokens_are_unauthenticated() {
    let show = Show::start().await.unwrap();
    let (server, admin) = (&show.server, &show.admin);
    let get = pb::GetConferenceRequest {
        conference_id: CONFERENCE.into(),
    };

    let anonymous = server.client(None).await.unwrap();
    let status = anonymous
        .agenda()
        .get_conference(get.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("missing bearer token"),
        "{}",
        status.message()
    );

    let garbage = server.client(Some("not-a-token".into())).await.unwrap();
    let status = garbage
        .agenda()
        .get_conference(get.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token is malformed")
    );

    let organiser = issue(admin, pb::Role::Organiser, "").await;
    // Change one character of the claims: the signature no longer matches.
    let mut parts: Vec<String> = organiser.split('.').map(str::to_owned).collect();
    let claims = parts[1].clone().into_bytes();
    let mut flipped = claims.clone();
    flipped[10] = if claims[10] == b'a' { b'b' } else { b'a' };
    parts[1] = String::from_utf8(flipped).unwrap();
    let tampered = server.client(Some(parts.join("."))).await.unwrap();
    assert_eq!(
        code(tampered.agenda().get_conference(get.clone()).await),
        Code::Unauthenticated
    );

    // A token podiumd itself signed, an hour ago, for a minute.
    let secret = std::fs::read(server.data_dir.join("token-signing.key")).unwrap();
    let keys = TokenKeys::from_secret(&secret, None);
    let principal = Principal {
        id: "org-1".into(),
        name: "Sophea".into(),
        role: Role::Organiser,
        conference_id: Some(CONFERENCE.into()),
        speaker_id: None,
        expires_at: None,
        token_id: None,
    };
    let expired = keys
        .issue_at(
            &principal,
            SystemTime::now() - Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .unwrap();
    let expired = server.client(Some(expired)).await.unwrap();
    let status = expired
        .agenda()
        .get_conference(get.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token has expired")
    );
    // The same claims, still valid, work: the refusal above was the expiry.
    let fresh = keys.issue(&principal, Duration::from_secs(60)).unwrap();
    server
        .client(Some(fresh))
        .await
        .unwrap()
        .agenda()
        .get_conference(get)
        .await
        .unwrap();
}

/// A token issued for a conference created a moment ago, used at once on every service: the
/// access, agenda, status and feedback read models all catch up through the one follower, so
/// no service answers NOT_FOUND or PERMISSION_DENIED for what another has just written.
#[tokio::test]
async fn tokens_for_a_conference_made_a_moment_ago_work_at_once_on_every_service() {
    use podium_client::FeedItem;
    use podium_e2e::{Odc, ballot};

    let show = Show::start().await.unwrap();
    let admin = &show.admin;
    let fresh = Odc::create(admin, "fresh2026").await.unwrap();
    let conference = fresh.conference.id.clone();
    let token_for = |role: pb::Role, speaker: &str| pb::IssueTokenRequest {
        role: role as i32,
        conference_id: conference.clone(),
        speaker_id: speaker.into(),
        name: format!("{role:?}, just issued"),
        ttl_seconds: 0,
    };
    let client_for = async |role: pb::Role, speaker: &str| {
        let issued = admin.access().issue_token(token_for(role, speaker)).await;
        let token = issued.unwrap().into_inner().token;
        show.server.client(Some(token)).await.unwrap()
    };

    let organiser = client_for(pb::Role::Organiser, "").await;
    let talk = fresh.session(
        "Open data, just scheduled",
        "2030-01-10T02:00:00Z",
        "2030-01-10T03:00:00Z",
        vec![fresh.sokha.id.clone()],
    );
    let session = organiser.agenda().add_session(talk).await.unwrap();
    let session = session.into_inner().session.unwrap().id;

    let moderator = client_for(pb::Role::Moderator, "").await;
    let started = moderator
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference.clone(),
            session_id: session.clone(),
        })
        .await;
    assert!(started.is_ok(), "{started:?}");
    let speaker = client_for(pb::Role::Speaker, &fresh.sokha.id).await;
    let preflight = speaker
        .stage()
        .preflight(pb::PreflightRequest {
            conference_id: conference.clone(),
            within_hours: 0,
            all: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preflight.sessions.len(), 1, "{preflight:?}");

    let attendee = show
        .server
        .client(None)
        .await
        .unwrap()
        .access()
        .join(pb::JoinRequest {
            join_code: fresh.join_code().into(),
            display_name: "Sreyneang".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let attendee = show.server.client(Some(attendee)).await.unwrap();
    let asked = attendee
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: conference.clone(),
            session_id: session.clone(),
            text: "Is this session already open for questions?".into(),
            anonymous: false,
        })
        .await;
    assert!(asked.is_ok(), "{asked:?}");
    let rated = attendee
        .ratings()
        .rate_session(pb::RateSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference.clone(),
            session_id: session.clone(),
            rating: 5,
            comment: String::new(),
        })
        .await;
    assert!(rated.is_ok(), "{rated:?}");

    let poll = pb::CreatePollRequest {
        request_id: Client::request_id(),
        conference_id: conference.clone(),
        session_id: session.clone(),
        question: text("Ready?"),
        kind: pb::PollKind::SingleChoice as i32,
        options: vec![text("Yes").unwrap(), text("No").unwrap()],
        visibility: pb::ResultVisibility::Live as i32,
        ..Default::default()
    };
    let poll = moderator.polls().create_poll(poll).await.unwrap();
    let poll = poll.into_inner().poll.unwrap();
    moderator
        .polls()
        .open_poll(pb::OpenPollRequest {
            conference_id: conference.clone(),
            poll_id: poll.id.clone(),
        })
        .await
        .unwrap();
    let mut vote = ballot(&poll, vec![poll.options[0].id.clone()]);
    vote.conference_id = conference.clone();
    let cast = attendee.polls().cast_ballot(vote).await;
    assert!(cast.is_ok(), "{cast:?}");

    let integration = client_for(pb::Role::Integration, "").await;
    let feed = integration.follow_feed(&conference, 0, vec![]);
    futures::pin_mut!(feed);
    let first = futures::StreamExt::next(&mut feed).await.unwrap();
    assert!(matches!(first, Ok(FeedItem::Event(_))), "{first:?}");
}
