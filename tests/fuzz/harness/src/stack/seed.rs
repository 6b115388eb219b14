//! The seeding: as the admin, through the services themselves, everything the fuzz targets
//! name (a conference, a room, speakers, a live session, an open poll, a question, a recording).

use std::time::SystemTime;

use podium_access::{Principal, Role};
use podium_proto::v1 as pb;
use prost::Message;
use tonic::Request;

use super::{Ids, Services, request_stream};
use crate::sha256_hex;

/// Fixed request ids, so that every process derives the same ids from them.
fn request_id(n: u128) -> String {
    uuid::Uuid::from_u128(0x0f0f_0000_0000_4000_8000_0000_0000_0000 | n).to_string()
}

/// As the admin: a conference with a room, two speakers and a session that is live, a poll
/// that is open, Q&A settings with a question, and a recording.
pub(super) async fn seed(s: &Services) -> anyhow::Result<Ids> {
    use podium_proto::v1::{
        agenda_server::Agenda, polls_server::Polls, questions_server::Questions,
        recordings_server::Recordings, stage_server::Stage,
    };
    fn admin<M>(message: M) -> Request<M> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Principal::admin());
        request
    }
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let conference = "fuzzconf".to_owned();
    let join_code = "FUZZ-2024".to_owned();
    s.agenda
        .create_conference(admin(pb::CreateConferenceRequest {
            request_id: request_id(1),
            conference_id: conference.clone(),
            title: text("Fuzz Conference"),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            join_code: join_code.clone(),
        }))
        .await?;
    let room = s
        .agenda
        .add_room(admin(pb::AddRoomRequest {
            request_id: request_id(2),
            conference_id: conference.clone(),
            name: "Main hall".into(),
            capacity: 300,
        }))
        .await?
        .into_inner()
        .room
        .map(|r| r.id)
        .unwrap_or_default();
    let mut speakers = Vec::new();
    for (n, name) in [(3, "Sok Dara"), (4, "Chan Vanna")] {
        let speaker = s
            .agenda
            .add_speaker(admin(pb::AddSpeakerRequest {
                request_id: request_id(n),
                conference_id: conference.clone(),
                name: name.into(),
                organisation: "Open Data".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                available_from: "08:00".into(),
                available_until: "18:00".into(),
            }))
            .await?
            .into_inner()
            .speaker
            .map(|s| s.id)
            .unwrap_or_default();
        speakers.push(speaker);
    }
    let at = |rfc3339: &str| -> anyhow::Result<_> {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339)?;
        Ok(Some(prost_types::Timestamp::from(SystemTime::from(at))))
    };
    let session = s
        .agenda
        .add_session(admin(pb::AddSessionRequest {
            request_id: request_id(5),
            conference_id: conference.clone(),
            title: text("Open data in the Mekong"),
            kind: pb::SessionKind::Talk as i32,
            start: at("2030-06-04T03:00:00Z")?,
            end: at("2030-06-04T04:00:00Z")?,
            room_id: room.clone(),
            speaker_ids: vec![speakers[0].clone()],
            backup_speaker_ids: vec![speakers[1].clone()],
            failover: None,
        }))
        .await?
        .into_inner()
        .session
        .map(|s| s.id)
        .unwrap_or_default();
    let recording_bytes = podium_client::placeholder_mp4(60_000);
    let header = pb::RecordingHeader {
        request_id: request_id(6),
        conference_id: conference.clone(),
        session_id: session.clone(),
        sha256: sha256_hex(&recording_bytes),
        size_bytes: recording_bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: 60_000,
        language: "en".into(),
        ..Default::default()
    };
    let parts = [
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Header(header)),
        },
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Chunk(recording_bytes)),
        },
    ];
    let mut body = Vec::new();
    for part in &parts {
        part.encode_length_delimited(&mut body)?;
    }
    let recording = s
        .recordings
        .upload_recording(admin(request_stream(&body)))
        .await?
        .into_inner()
        .recording
        .map(|r| r.id)
        .unwrap_or_default();
    s.stage
        .start_session(admin(pb::StartSessionRequest {
            request_id: String::new(),
            conference_id: conference.clone(),
            session_id: session.clone(),
        }))
        .await?;
    let poll = s
        .polls
        .create_poll(admin(pb::CreatePollRequest {
            request_id: request_id(7),
            conference_id: conference.clone(),
            session_id: session.clone(),
            question: text("Which data do you open first?"),
            kind: pb::PollKind::SingleChoice as i32,
            options: vec![text("Budgets").unwrap(), text("Rivers").unwrap()],
            max_choices: 1,
            visibility: pb::ResultVisibility::Live as i32,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .poll
        .map(|p| p.id)
        .unwrap_or_default();
    s.polls
        .open_poll(admin(pb::OpenPollRequest {
            conference_id: conference.clone(),
            poll_id: poll.clone(),
        }))
        .await?;
    s.questions
        .set_qa_settings(admin(pb::SetQaSettingsRequest {
            request_id: request_id(8),
            conference_id: conference.clone(),
            session_id: session.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: false,
            }),
        }))
        .await?;
    let attendee = |message| {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Principal {
            id: "att-seed".into(),
            name: "Seed Attendee".into(),
            role: Role::Attendee,
            conference_id: Some(conference.clone()),
            speaker_id: None,
            expires_at: None,
            token_id: None,
        });
        request
    };
    let question = s
        .questions
        .ask_question(attendee(pb::AskQuestionRequest {
            request_id: request_id(9),
            conference_id: conference.clone(),
            session_id: session.clone(),
            text: "How often is the river data updated?".into(),
            anonymous: false,
        }))
        .await?
        .into_inner()
        .question
        .map(|q| q.id)
        .unwrap_or_default();
    Ok(Ids {
        conference,
        join_code,
        room,
        speaker: speakers[0].clone(),
        backup_speaker: speakers[1].clone(),
        session,
        poll,
        question,
        recording,
    })
}
