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
