//! Seeds of the stage and recordings targets.

use podium_proto::v1 as pb;

use crate::{Caller, encode_input, encode_stream_input, sha256_hex, stack::Stack};

pub(super) fn stage_and_recordings(s: &Stack, seeds: &mut Vec<(&'static str, Vec<u8>)>) {
    let ids = &s.ids;
    let c = || ids.conference.clone();
    let mut add = |target, data| seeds.push((target, data));
    use Caller::*;

    let session = || pb::StartSessionRequest {
        request_id: String::new(),
        conference_id: c(),
        session_id: ids.session.clone(),
    };
    add("stage", encode_input(0, Moderator, &session()));
    add(
        "stage",
        encode_input(
            2,
            Moderator,
            &pb::SwitchSourceRequest {
                request_id: String::new(),
                conference_id: c(),
                session_id: ids.session.clone(),
                kind: pb::SourceKind::Recording as i32,
                speaker_id: String::new(),
                recording_id: ids.recording.clone(),
            },
        ),
    );
    add(
        "stage",
        encode_input(
            2,
            Moderator,
            &pb::SwitchSourceRequest {
                request_id: String::new(),
                conference_id: c(),
                session_id: ids.session.clone(),
                kind: pb::SourceKind::Speaker as i32,
                speaker_id: ids.backup_speaker.clone(),
                recording_id: String::new(),
            },
        ),
    );
    add(
        "stage",
        encode_input(
            3,
            Moderator,
            &pb::PinRequest {
                request_id: String::new(),
                conference_id: c(),
                session_id: ids.session.clone(),
                pinned: true,
            },
        ),
    );
    add(
        "stage",
        encode_input(
            4,
            Moderator,
            &pb::WatchStatusRequest {
                conference_id: c(),
                room_id: ids.room.clone(),
                from_position: 0,
            },
        ),
    );
    add(
        "stage",
        encode_input(
            5,
            Organiser,
            &pb::PreflightRequest {
                conference_id: c(),
                within_hours: 48,
                all: true,
            },
        ),
    );
    let hello = |test| pb::LinkRequest {
        message: Some(pb::link_request::Message::Hello(pb::AgentHello {
            session_id: ids.session.clone(),
            test_connection: test,
            agent: "podium-agent/0.1".into(),
        })),
    };
    let heartbeat = |seq| pb::LinkRequest {
        message: Some(pb::link_request::Message::Heartbeat(pb::Heartbeat {
            seq,
            figures: Some(pb::LinkFigures {
                round_trip_ms: 40,
                packet_loss_percent: 1.0,
                ..Default::default()
            }),
        })),
    };
    add(
        "stage",
        encode_stream_input(6, Speaker, &[hello(false), heartbeat(1), heartbeat(2)]),
    );
    let mut test = vec![hello(true)];
    test.extend((1..=5).map(heartbeat));
    add("stage", encode_stream_input(6, Speaker, &test));
    // Last: a session that has ended refuses most of the rest.
    add(
        "stage",
        encode_input(
            1,
            Moderator,
            &pb::EndSessionRequest {
                request_id: String::new(),
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );

    let bytes = podium_client::placeholder_mp4(30_000);
    let header = pb::RecordingHeader {
        request_id: "8e3c2f8c-7a1c-4e3c-9c81-4f5a6b7c8d9e".into(),
        conference_id: c(),
        session_id: ids.session.clone(),
        sha256: sha256_hex(&bytes),
        size_bytes: bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: 30_000,
        language: "km".into(),
        ..Default::default()
    };
    let (first, second) = bytes.split_at(7);
    add(
        "recordings",
        encode_stream_input(
            0,
            Organiser,
            &[
                pb::UploadRecordingRequest {
                    part: Some(pb::upload_recording_request::Part::Header(header)),
                },
                pb::UploadRecordingRequest {
                    part: Some(pb::upload_recording_request::Part::Chunk(first.to_vec())),
                },
                pb::UploadRecordingRequest {
                    part: Some(pb::upload_recording_request::Part::Chunk(second.to_vec())),
                },
            ],
        ),
    );
    add(
        "recordings",
        encode_input(
            1,
            Speaker,
            &pb::FetchRecordingRequest {
                conference_id: c(),
                recording_id: ids.recording.clone(),
                offset: 5,
            },
        ),
    );
    add(
        "recordings",
        encode_input(
            2,
            Moderator,
            &pb::ListRecordingsRequest {
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );
}
