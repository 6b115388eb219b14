//! Rotating the signing key: a grace period for the old key's tokens, its end (also of open
//! streams), and a retried rotation answered as the first time.

use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, Show};
use tonic::Code;

use super::{end_of, issue, refused, token_id, watch_status};

/// A rotation with no request id (each one rotates).
fn rotate(grace_seconds: u64) -> pb::RotateSigningKeyRequest {
    pb::RotateSigningKeyRequest {
        grace_seconds,
        ..Default::default()
    }
}

/// A rotation that `request_id` names: its retries are answered as the first time.
fn rotate_as(request_id: &str, grace_seconds: u64) -> pb::RotateSigningKeyRequest {
    pb::RotateSigningKeyRequest {
        request_id: request_id.to_owned(),
        ..rotate(grace_seconds)
    }
}

/// `by`'s rotation, answered.
async fn rotated(
    by: &Client,
    request: pb::RotateSigningKeyRequest,
) -> pb::RotateSigningKeyResponse {
    by.access()
        .rotate_signing_key(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_rotated_key_keeps_its_tokens_through_the_grace_period_and_then_ends_them() {
    let show = Show::start().await.unwrap();
    let server = &show.server;
    let before = show
        .token(pb::Role::Organiser, None, "before the rotation")
        .await
        .unwrap();
    let old_admin = server.admin_token().unwrap();

    // Only an admin rotates the key.
    let organiser = server.client(Some(before.clone())).await.unwrap();
    let error = organiser
        .access()
        .rotate_signing_key(rotate(0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    // With a grace period, tokens signed by the old key go on working.
    let first = rotated(&show.admin, rotate(3600)).await;
    assert_ne!(first.key_id, first.retired_key_id);
    assert!(!token_id(&organiser).await.is_empty());
    // The generated admin token file was signed again, with the new key.
    let new_admin = server.admin_token().unwrap();
    assert_ne!(new_admin, old_admin);
    let admin = server.client(Some(new_admin)).await.unwrap();
    let after = issue(
        &admin,
        pb::Role::Organiser,
        CONFERENCE,
        "after the rotation",
        0,
    )
    .await
    .token;

    // Without one, they end at once, open streams too: a rotation with no grace also cuts
    // the grace of the keys rotated out before it, so `before` ends with `after`.
    let mut status = watch_status(&organiser).await;
    rotated(&admin, rotate(0)).await;
    let ended = end_of(&mut status).await;
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert!(ended.message().contains("rotated out"), "{ended:?}");
    for token in [before, after] {
        let client = server.client(Some(token)).await.unwrap();
        let error = refused(&client).await;
        assert_eq!(error.code(), Code::Unauthenticated);
        assert!(error.message().contains("rotated out"), "{error:?}");
    }
    let admin = server.admin().await.unwrap();
    assert!(!token_id(&admin).await.is_empty());
}

#[tokio::test]
async fn an_open_stream_ends_when_its_keys_grace_runs_out() {
    let show = Show::start().await.unwrap();
    let moderator = show
        .server
        .client(Some(
            issue(&show.admin, pb::Role::Moderator, CONFERENCE, "old key", 0)
                .await
                .token,
        ))
        .await
        .unwrap();
    let mut status = watch_status(&moderator).await;
    rotated(&show.admin, rotate(3)).await;
    // Nothing else happens: the stream's own timer ends it when the grace runs out.
    let ended = end_of(&mut status).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("rotated out"), "{ended:?}");
}

#[tokio::test]
async fn a_retried_rotation_gets_its_first_answer_and_rotates_nothing_again() {
    let mut show = Show::start().await.unwrap();
    let request_id = Client::request_id();
    let first = rotated(&show.admin, rotate_as(&request_id, 3600)).await;
    let admin = show.server.admin().await.unwrap();
    let after = issue(&admin, pb::Role::Organiser, CONFERENCE, "after", 0)
        .await
        .token;

    // The retry is answered as the first time, even with another grace, and nothing rotated:
    // a token signed by the new key still works, and so does the admin token file's.
    let again = rotated(&show.admin, rotate_as(&request_id, 0)).await;
    assert_eq!(again, first);
    let organiser = show.server.client(Some(after.clone())).await.unwrap();
    assert!(!token_id(&organiser).await.is_empty());
    assert!(
        !token_id(&show.server.admin().await.unwrap())
            .await
            .is_empty()
    );

    // After a restart too (the retired keys' file keeps the request id), and after another
    // rotation since.
    show.server.restart().await.unwrap();
    let admin = show.server.admin().await.unwrap();
    let second = rotated(&admin, rotate_as(&Client::request_id(), 600)).await;
    assert_ne!(second.key_id, first.key_id);
    assert_eq!(second.retired_key_id, first.key_id);
    let admin = show.server.admin().await.unwrap();
    let late = rotated(&admin, rotate_as(&request_id, 0)).await;
    assert_eq!(late, first);
    let organiser = show.server.client(Some(after)).await.unwrap();
    assert!(!token_id(&organiser).await.is_empty(), "nothing ended");

    // A request id that is not a UUID is refused, naming the field.
    let error = admin
        .access()
        .rotate_signing_key(rotate_as("not-a-uuid", 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("request_id"), "{error:?}");
}
