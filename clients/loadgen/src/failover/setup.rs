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

pub(crate) fn text(en: &str) -> Option<pb::LocalizedText> {
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
    Ok(conference(admin, "podium-loadgen failover").await?.id)
}

/// A conference of its own (so that runs against one podiumd never collide), in UTC.
pub(crate) async fn conference(admin: &Client, title: &str) -> anyhow::Result<pb::Conference> {
    admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: crate::fresh_name("loadgen"),
            title: text(title),
            default_language: "en".into(),
            time_zone: "UTC".into(),
            join_code: String::new(),
        })
        .await
        .context("cannot create the conference")?
        .into_inner()
        .conference
        .context("no conference in the answer")
}

/// A room and a speaker of it (in UTC, with the default hours), and the speaker's token for
/// an agent: (room id, speaker id, token).
pub(crate) async fn room_with_speaker(
    admin: &Client,
    conference_id: &str,
    room: &str,
    speaker: &str,
) -> anyhow::Result<(String, String, String)> {
    let room = admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.to_owned(),
            name: room.into(),
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
            conference_id: conference_id.to_owned(),
            name: speaker.into(),
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
    let token = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Speaker as i32,
            conference_id: conference_id.to_owned(),
            speaker_id: speaker.id.clone(),
            name: "podium-loadgen agent".into(),
            ttl_seconds: 0,
        })
        .await
        .context("cannot issue the speaker token")?
        .into_inner()
        .token;
    Ok((room.id, speaker.id, token))
}

/// Midnight UTC tomorrow, in seconds since the epoch: sessions after it are in the future.
pub(crate) fn tomorrow() -> anyhow::Result<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs() as i64;
    Ok(now - now % 86_400 + 86_400)
}

/// A session in `room_id` with `speaker_id`, from `start` (seconds since the epoch) for
/// `minutes`, with the failover policy (sticky failback) and its recording uploaded: the show
/// an agent with `token` plays.
pub(crate) async fn session(
    admin: &Client,
    conference_id: &str,
    (room_id, speaker_id, token): &(String, String, String),
    title: &str,
    (start, minutes): (i64, i64),
    failover_after: Duration,
) -> anyhow::Result<Show> {
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let session_id = admin
        .agenda()
        .add_session(pb::AddSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.to_owned(),
            title: text(title),
            kind: pb::SessionKind::Talk as i32,
            start: at(start),
            end: at(start + minutes * 60),
            room_id: room_id.clone(),
            speaker_ids: vec![speaker_id.clone()],
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
    upload_recording(admin, conference_id, &session_id).await?;
    Ok(Show {
        conference_id: conference_id.to_owned(),
        session_id,
        speaker_id: speaker_id.clone(),
        speaker_token: token.clone(),
    })
}

/// Room number `n` of the conference with a speaker, a session tomorrow at 10:00 UTC (inside
/// the speaker's default hours) with the failover policy, its recording and the speaker's token.
async fn add_show(
    admin: &Client,
    conference_id: &str,
    n: usize,
    failover_after: Duration,
) -> anyhow::Result<Show> {
    let room = if n == 0 {
        "Main hall".to_owned()
    } else {
        format!("Room {n}")
    };
    let staff = room_with_speaker(admin, conference_id, &room, "Sokha Chan").await?;
    let start = tomorrow()? + 10 * 3_600;
    session(
        admin,
        conference_id,
        &staff,
        "Failover, measured",
        (start, 45),
        failover_after,
    )
    .await
}

/// A stand-in primary recording: the failover engine needs one registered, not 45 minutes of
/// video. podiumd probes it like any upload.
pub(crate) async fn upload_recording(
    admin: &Client,
    conference_id: &str,
    session_id: &str,
) -> anyhow::Result<()> {
    let bytes = podium_client::placeholder_mp4(45 * 60 * 1000);
    let sha256 = hex::encode(Sha256::digest(&bytes));
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
            request_id: podium_client::Client::request_id(),
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

/// Ends the session: tidy on a podiumd that outlives the run; the measurement is already taken.
pub(super) async fn end_show(admin: &Client, show: &Show) {
    let _ = admin
        .stage()
        .end_session(pb::EndSessionRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: show.conference_id.clone(),
            session_id: show.session_id.clone(),
        })
        .await;
}
