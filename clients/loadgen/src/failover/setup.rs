//! The failover scenario's stage: a conference of its own with, per room, a speaker, a session
//! with the failover policy, a small recording and the speaker's token, and the moderator's
//! switch back to the speaker between drops.

use std::time::Duration;

use anyhow::Context;
use podium_client::{Client, pb};
use sha2::{Digest, Sha256};

/// What the scenario set up.
pub(crate) struct Show {
    pub(crate) conference_id: String,
    pub(crate) session_id: String,
    pub(crate) speaker_id: String,
    pub(crate) speaker_token: String,
}

fn text(en: &str) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: [("en".to_owned(), en.to_owned())].into(),
    })
}

/// A conference of its own (so that runs against one podiumd never collide) with one show.
pub(super) async fn set_up(admin: &Client, failover_after: Duration) -> anyhow::Result<Show> {
    let conference_id = create_conference(admin).await?;
    add_show(admin, &conference_id, 0, failover_after).await
}

/// A conference of its own with `rooms` shows, one per room, as at a venue.
pub(super) async fn set_up_venue(
    admin: &Client,
    failover_after: Duration,
    rooms: usize,
) -> anyhow::Result<Vec<Show>> {
    let conference_id = create_conference(admin).await?;
    let mut shows = Vec::with_capacity(rooms);
    for room in 0..rooms {
        shows.push(add_show(admin, &conference_id, room, failover_after).await?);
    }
    Ok(shows)
}

async fn create_conference(admin: &Client) -> anyhow::Result<String> {
    let conference_id = format!("loadgen-{}", &Client::request_id()[..8]);
    admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            title: text("podium-loadgen failover"),
            default_language: "en".into(),
            time_zone: "UTC".into(),
            join_code: String::new(),
        })
        .await
        .context("cannot create the conference")?;
    Ok(conference_id)
}

/// Room number `n` of the conference with a speaker, a session tomorrow with the failover
/// policy, its recording and the speaker's token.
async fn add_show(
    admin: &Client,
    conference_id: &str,
    n: usize,
    failover_after: Duration,
) -> anyhow::Result<Show> {
    let conference_id = conference_id.to_owned();
    let room = admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            name: if n == 0 {
                "Main hall".into()
            } else {
                format!("Room {n}")
            },
            capacity: 300,
        })
        .await
        .context("cannot add the room")?
        .into_inner()
        .room
        .context("no room in the answer")?;
    let speaker = admin
        .agenda()
        .add_speaker(pb::AddSpeakerRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            name: "Sokha Chan".into(),
            organisation: "Open Development Cambodia".into(),
            time_zone: "UTC".into(),
            available_from: String::new(),
            available_until: String::new(),
        })
        .await
        .context("cannot add the speaker")?
        .into_inner()
        .speaker
        .context("no speaker in the answer")?;
    // 10:00 UTC tomorrow, inside the speaker's default hours.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs() as i64;
    let start = now - now % 86_400 + 86_400 + 10 * 3_600;
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let session_id = admin
        .agenda()
        .add_session(pb::AddSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            title: text("Failover, measured"),
            kind: pb::SessionKind::Talk as i32,
            start: at(start),
            end: at(start + 45 * 60),
            room_id: room.id,
            speaker_ids: vec![speaker.id.clone()],
            backup_speaker_ids: vec![],
            failover: Some(pb::FailoverPolicy {
                failover_after_ms: u32::try_from(failover_after.as_millis())
                    .context("failover_after is too long")?,
                failback: pb::FailbackMode::Sticky as i32,
                ..Default::default()
            }),
        })
        .await
        .context("cannot add the session")?
        .into_inner()
        .session
        .context("no session in the answer")?
        .id;
    upload_recording(admin, &conference_id, &session_id).await?;
    let speaker_token = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Speaker as i32,
            conference_id: conference_id.clone(),
            speaker_id: speaker.id.clone(),
            name: "podium-loadgen agent".into(),
            ttl_seconds: 0,
        })
        .await
        .context("cannot issue the speaker token")?
        .into_inner()
        .token;
    Ok(Show {
        conference_id,
        session_id,
        speaker_id: speaker.id,
        speaker_token,
    })
}

/// A small primary recording: the failover engine needs one registered, not a real video.
pub(crate) async fn upload_recording(
    admin: &Client,
    conference_id: &str,
    session_id: &str,
) -> anyhow::Result<()> {
    let bytes = b"podium-loadgen stands in for a recorded talk. ".repeat(1_000);
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let header = pb::RecordingHeader {
        request_id: Client::request_id(),
        conference_id: conference_id.into(),
        session_id: session_id.into(),
        sha256,
        size_bytes: bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: 45 * 60 * 1000,
        language: "en".into(),
        captions: vec![],
        file_name: "talk.mp4".into(),
        backup: false,
    };
    let parts = [
        pb::upload_recording_request::Part::Header(header),
        pb::upload_recording_request::Part::Chunk(bytes),
    ]
    .map(|part| pb::UploadRecordingRequest { part: Some(part) });
    admin
        .recordings()
        .upload_recording(futures::stream::iter(parts))
        .await
        .context("cannot upload the recording")?;
    Ok(())
}

pub(super) async fn switch_to_speaker(admin: &Client, show: &Show) -> anyhow::Result<()> {
    admin
        .stage()
        .switch_source(pb::SwitchSourceRequest {
            conference_id: show.conference_id.clone(),
            session_id: show.session_id.clone(),
            kind: pb::SourceKind::Speaker as i32,
            speaker_id: String::new(),
            recording_id: String::new(),
        })
        .await
        .context("cannot switch back to the speaker")?;
    Ok(())
}

pub(super) fn on_air(s: &pb::SessionStatus) -> pb::SourceKind {
    s.source
        .as_ref()
        .map_or(pb::SourceKind::Unspecified, |s| s.kind())
}

pub(super) fn healthy(s: &pb::SessionStatus, speaker_id: &str) -> bool {
    s.links
        .iter()
        .any(|l| l.speaker_id == speaker_id && l.state() == pb::LinkState::Healthy)
}
