//! Deleting recordings: out of the fallback order, refused while on air, retried with the first
//! answer, and the file removed once no recording needs its content (disk space back).

use super::*;

impl Fixture {
    async fn delete(
        &self,
        who: &Principal,
        request_id: &str,
        recording_id: &str,
    ) -> Result<pb::DeleteRecordingResponse, Status> {
        let request = authed(
            who,
            pb::DeleteRecordingRequest {
                request_id: request_id.into(),
                conference_id: ODC.into(),
                recording_id: recording_id.into(),
            },
        );
        Ok(self.service.delete_recording(request).await?.into_inner())
    }

    fn stored_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path().join("recordings/sha256"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }
}

#[tokio::test]
async fn a_deleted_recording_leaves_the_order_and_its_file_leaves_the_disk() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let (old, new) = (bytes(60_000, 1), bytes(30_000, 2));
    let primary = f
        .upload(&admin, parts(header(&old, TALK), &old, 8192))
        .await
        .unwrap();
    let mut backup = header(&new, TALK);
    backup.backup = true;
    let backup = f.upload(&admin, parts(backup, &new, 8192)).await.unwrap();
    assert_eq!(f.stored_bytes(), 90_000);

    let request_id = Uuid::new_v4().to_string();
    let deleted = f.delete(&admin, &request_id, &primary.id).await.unwrap();
    assert_eq!(deleted.recording.as_ref(), Some(&primary));
    // The backup is the primary now, and the deleted file's bytes are back.
    let listed: Vec<(String, u32)> = f
        .list(&admin, TALK)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.order))
        .collect();
    assert_eq!(listed, vec![(backup.id.clone(), 0)]);
    assert_eq!(f.stored_bytes(), 30_000);
    let gone = f.fetch(&admin, &primary.id, 0).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // A retry gets the first answer; another deletion of it is told it is gone.
    assert_eq!(
        f.delete(&admin, &request_id, &primary.id).await.unwrap(),
        deleted
    );
    let again = f
        .delete(&admin, &Uuid::new_v4().to_string(), &primary.id)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    assert!(again.message().contains("already deleted"), "{again:?}");
    let unknown = f
        .delete(&admin, &Uuid::new_v4().to_string(), "rec-nobody")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn content_shared_by_two_recordings_stays_until_both_are_deleted() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(40_000, 3);
    let mine = f
        .upload(&admin, parts(header(&data, TALK), &data, 8192))
        .await
        .unwrap();
    let theirs = f
        .upload(&admin, parts(header(&data, OTHER_TALK), &data, 8192))
        .await
        .unwrap();
    assert_eq!((f.stored_files(), f.stored_bytes()), (1, 40_000));
    f.delete(&admin, &Uuid::new_v4().to_string(), &mine.id)
        .await
        .unwrap();
    assert_eq!(f.stored_files(), 1, "the other session still needs it");
    assert_eq!(joined(&f.fetch(&admin, &theirs.id, 0).await.unwrap()), data);
    f.delete(&admin, &Uuid::new_v4().to_string(), &theirs.id)
        .await
        .unwrap();
    assert_eq!((f.stored_files(), f.stored_bytes()), (0, 0));
}

#[tokio::test]
async fn a_recording_on_air_is_not_deleted_and_only_organisers_delete() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(40_000, 4);
    let recording = f
        .upload(&admin, parts(header(&data, TALK), &data, 8192))
        .await
        .unwrap();
    for role in [Role::Moderator, Role::Integration] {
        let refused = f
            .delete(
                &principal(role, ODC, None),
                &Uuid::new_v4().to_string(),
                &recording.id,
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{role}: {refused:?}"
        );
    }
    // The session goes live on its recording.
    append(
        &f.log,
        &format!("conference/{ODC}/session/{TALK}/status"),
        &pb::SessionWentLive {
            conference_id: ODC.into(),
            session_id: TALK.into(),
            source: Some(pb::Source {
                kind: pb::SourceKind::Recording as i32,
                recording_id: recording.id.clone(),
                recording_sha256: recording.sha256.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let organiser = principal(Role::Organiser, ODC, None);
    let refused = f
        .delete(&organiser, &Uuid::new_v4().to_string(), &recording.id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("on air in session ses-talk"),
        "{refused:?}"
    );
    assert_eq!(f.list(&admin, TALK).await.unwrap().len(), 1);
    assert_eq!(f.stored_files(), 1);
}

#[tokio::test]
async fn files_no_recording_needs_are_collected_and_the_others_kept() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(40_000, 5);
    f.upload(&admin, parts(header(&data, TALK), &data, 8192))
        .await
        .unwrap();
    // As a crash between a deletion and its collection (or a registration that never reached
    // the log) leaves it: content no recording names.
    let orphan = bytes(10_000, 6);
    std::fs::write(
        f.dir.path().join("recordings/sha256").join(sha256(&orphan)),
        &orphan,
    )
    .unwrap();
    assert_eq!(f.stored_files(), 2);
    let collected = f.service.collect().await.unwrap();
    assert_eq!((collected.files, collected.bytes), (1, 10_000));
    assert_eq!((f.stored_files(), f.stored_bytes()), (1, 40_000));
    assert_eq!(f.service.collect().await.unwrap().files, 0);

    // A fetch from the cluster in progress writes beside the content, under a temporary name:
    // spared while young, removed once old (a crash left it), never counted as content.
    let fetching = f
        .dir
        .path()
        .join("recordings/sha256")
        .join(format!("{}.fetch-0c0ffee", sha256(&orphan)));
    std::fs::write(&fetching, &orphan).unwrap();
    assert_eq!(f.service.collect().await.unwrap().files, 0);
    assert!(fetching.exists());
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&fetching)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let collected = f.service.collect().await.unwrap();
    assert_eq!((collected.files, collected.bytes), (1, 0));
    assert!(!fetching.exists());
    assert_eq!((f.stored_files(), f.stored_bytes()), (1, 40_000));
}

#[tokio::test]
async fn a_request_id_of_another_request_deletes_nothing_and_a_deleted_upload_is_not_revived() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(40_000, 7);
    let h = header(&data, TALK);
    let recording = f
        .upload(&admin, parts(h.clone(), &data, 8192))
        .await
        .unwrap();
    // The upload's own request id, sent again to delete: a different request, refused.
    let reused = f
        .delete(&admin, &h.request_id, &recording.id)
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert_eq!(f.list(&admin, TALK).await.unwrap().len(), 1);
    assert_eq!(f.stored_files(), 1);

    f.delete(&admin, &Uuid::new_v4().to_string(), &recording.id)
        .await
        .unwrap();
    // The upload retried after its recording was deleted does not bring it back.
    let retried = f.upload(&admin, parts(h, &data, 8192)).await.unwrap_err();
    assert_eq!(retried.code(), Code::FailedPrecondition, "{retried:?}");
    assert!(retried.message().contains("deleted"), "{retried:?}");
    assert_eq!(f.list(&admin, TALK).await.unwrap().len(), 0);
    assert_eq!(f.stored_files(), 0);
}
