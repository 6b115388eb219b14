//! Valid inputs for every target: each request type of each service, sent by a caller allowed
//! to make it and naming what the seeding created, and every event the seeding stored. They
//! make `fuzz/corpus/` (`cargo run -p podium-fuzz-harness --bin podium-fuzz-seeds`) and the starting
//! points the property tests mutate.

use podium_proto::v1 as pb;
use prost::Message;

use crate::{Caller, encode_input, encode_stream_input, stack};

/// `(target, input)` pairs.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let s = stack();
    let ids = &s.ids;
    let c = || ids.conference.clone();
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let mut seeds: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |target, data| seeds.push((target, data));
    use Caller::*;

    // The log as the seeding left it, each event re-encoded as if stored at position 0.
    let events = s
        .run(s.log.read_all(0, 1024))
        .expect("the seeded log reads back");
    for event in events {
        let mut stored = event.to_proto();
        stored.position = 0;
        add("stored_event", stored.encode_to_vec());
    }

    add(
        "access",
        encode_input(
            0,
            Organiser,
            &pb::IssueTokenRequest {
                role: pb::Role::Speaker as i32,
                conference_id: c(),
                speaker_id: ids.speaker.clone(),
                name: "Sok Dara".into(),
                ttl_seconds: 3600,
            },
        ),
    );
    add(
        "access",
        encode_input(
            0,
            Admin,
            &pb::IssueTokenRequest {
                role: pb::Role::Admin as i32,
                name: "ops".into(),
                ..Default::default()
            },
        ),
    );
    add(
        "access",
        encode_input(
            1,
            Anonymous,
            &pb::JoinRequest {
                join_code: ids.join_code.to_lowercase(),
                display_name: "Visitor".into(),
            },
        ),
    );
    add("access", encode_input(2, Speaker, &pb::WhoAmIRequest {}));

    add(
        "agenda",
        encode_input(
            0,
            Admin,
            &pb::CreateConferenceRequest {
                request_id: "1d6e8f0a-3c1b-4c55-9a51-2f7a9a1e0b11".into(),
                conference_id: "odc2031".into(),
                title: text("Open Data Day"),
                default_language: "en".into(),
                time_zone: "Europe/Berlin".into(),
                join_code: "ODC-2031".into(),
            },
        ),
    );
    add(
        "agenda",
        encode_input(
            1,
            Attendee,
            &pb::GetConferenceRequest { conference_id: c() },
        ),
    );
    add(
        "agenda",
        encode_input(2, Admin, &pb::ListConferencesRequest {}),
    );
    add(
        "agenda",
        encode_input(
            3,
            Organiser,
            &pb::AddRoomRequest {
                request_id: "5b0f9c59-4d8f-4b0f-8f5e-1c2d3e4f5a6b".into(),
                conference_id: c(),
                name: "Room B".into(),
                capacity: 40,
            },
        ),
    );
    add(
        "agenda",
        encode_input(
            4,
            Organiser,
            &pb::AddSpeakerRequest {
                request_id: "6c1a0d6a-5e9a-4c1a-9a6f-2d3e4f5a6b7c".into(),
                conference_id: c(),
                name: "Mai Linh".into(),
                organisation: "Hanoi Data".into(),
                time_zone: "Asia/Ho_Chi_Minh".into(),
                available_from: "09:30".into(),
                available_until: "17:00".into(),
            },
        ),
    );
    let start = |h: i64| {
        Some(prost_types::Timestamp {
            seconds: 1_906_761_600 + h * 3600,
            nanos: 0,
        })
    };
    add(
        "agenda",
        encode_input(
            5,
            Organiser,
            &pb::AddSessionRequest {
                request_id: "7d2b1e7b-6f0b-4d2b-8b70-3e4f5a6b7c8d".into(),
                conference_id: c(),
                title: text("Budgets in the open"),
                kind: pb::SessionKind::Panel as i32,
                start: start(5),
                end: start(6),
                room_id: ids.room.clone(),
                speaker_ids: vec![ids.backup_speaker.clone()],
                backup_speaker_ids: vec![],
                failover: Some(pb::FailoverPolicy {
                    failover_after_ms: 3000,
                    failback: pb::FailbackMode::ReturnWhenStable as i32,
                    clear_after_ms: 10_000,
                    max_loss_percent: 5,
                    max_round_trip_ms: 400,
                    poor_for_ms: 2000,
                }),
            },
        ),
    );
    add(
        "agenda",
        encode_input(
            6,
            Attendee,
            &pb::ListSessionsRequest {
                conference_id: c(),
                room_id: ids.room.clone(),
                speaker_id: String::new(),
            },
        ),
    );
    add(
        "agenda",
        encode_input(
            7,
            Speaker,
            &pb::GetSessionRequest {
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );
    add(
        "agenda",
        encode_input(
            8,
            Organiser,
            &pb::SuggestSlotsRequest {
                conference_id: c(),
                speaker_ids: vec![ids.speaker.clone(), ids.backup_speaker.clone()],
                duration_minutes: 45,
                from_date: "2030-06-04".into(),
                to_date: "2030-06-05".into(),
                room_id: ids.room.clone(),
                limit: 5,
                step_minutes: 15,
            },
        ),
    );

    let session = || pb::StartSessionRequest {
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
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );

    let bytes = b"another fuzz recording".to_vec();
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

    let poll = || (c(), ids.poll.clone());
    add(
        "polls",
        encode_input(
            0,
            Moderator,
            &pb::CreatePollRequest {
                request_id: "9f4d3a9d-8b2d-4f4d-8d92-5a6b7c8d9eaf".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                question: text("One word for today?"),
                kind: pb::PollKind::WordCloud as i32,
                visibility: pb::ResultVisibility::AfterClose as i32,
                anonymous: true,
                publishable: true,
                ..Default::default()
            },
        ),
    );
    add(
        "polls",
        encode_input(
            0,
            Moderator,
            &pb::CreatePollRequest {
                request_id: "0a5e4b0e-9c3e-4a5e-9ea3-6b7c8d9eafb0".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                question: text("How useful was it?"),
                kind: pb::PollKind::Rating as i32,
                scale_min: 1,
                scale_max: 5,
                survey: true,
                lock_ballots: true,
                ..Default::default()
            },
        ),
    );
    let (conference_id, poll_id) = poll();
    add(
        "polls",
        encode_input(
            1,
            Moderator,
            &pb::OpenPollRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
            },
        ),
    );
    add(
        "polls",
        encode_input(
            3,
            Attendee,
            &pb::GetPollRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                language: "km".into(),
            },
        ),
    );
    add(
        "polls",
        encode_input(
            4,
            Attendee,
            &pb::ListPollsRequest {
                conference_id: conference_id.clone(),
                session_id: ids.session.clone(),
                language: String::new(),
            },
        ),
    );
    add(
        "polls",
        encode_input(
            5,
            Attendee,
            &pb::CastBallotRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                ballot_id: "1b6f5c1f-0d4f-4b6f-8fb4-7c8d9eafb0c1".into(),
                option_ids: vec!["opt-1".into()],
                rating: 0,
                text: String::new(),
            },
        ),
    );
    add(
        "polls",
        encode_input(
            6,
            Attendee,
            &pb::WatchResultsRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                language: "en".into(),
            },
        ),
    );
    add(
        "polls",
        encode_input(
            7,
            Moderator,
            &pb::HideWordRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                word: "Rivers".into(),
                hidden: true,
            },
        ),
    );

    add(
        "polls",
        encode_input(
            2,
            Moderator,
            &pb::ClosePollRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
            },
        ),
    );
    add(
        "questions",
        encode_input(
            0,
            Moderator,
            &pb::SetQaSettingsRequest {
                request_id: "2c7a6d2a-1e5a-4c7a-9ac5-8d9eafb0c1d2".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                settings: Some(pb::QaSettings {
                    allow_anonymous: false,
                    require_approval: true,
                }),
            },
        ),
    );
    add(
        "questions",
        encode_input(
            1,
            Attendee,
            &pb::AskQuestionRequest {
                request_id: "3d8b7e3b-2f6b-4d8b-8bd6-9eafb0c1d2e3".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                text: "Will the slides be shared? ស្លាយ".into(),
                anonymous: false,
            },
        ),
    );
    add(
        "questions",
        encode_input(
            2,
            Attendee,
            &pb::UpvoteQuestionRequest {
                conference_id: c(),
                question_id: ids.question.clone(),
            },
        ),
    );
    add(
        "questions",
        encode_input(
            3,
            Moderator,
            &pb::ModerateQuestionRequest {
                request_id: "4e9c8f4c-3a7c-4e9c-9ce7-afb0c1d2e3f4".into(),
                conference_id: c(),
                question_id: ids.question.clone(),
                action: pb::ModerationAction::Answer as i32,
                reason: "answered on stage".into(),
            },
        ),
    );
    add(
        "questions",
        encode_input(
            4,
            Speaker,
            &pb::ListQuestionsRequest {
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );
    add(
        "questions",
        encode_input(
            5,
            Moderator,
            &pb::WatchQuestionsRequest {
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );

    add(
        "ratings",
        encode_input(
            0,
            Attendee,
            &pb::RateSessionRequest {
                request_id: "5fad9a5d-4b8d-4fad-8df8-b0c1d2e3f4a5".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                rating: 4,
                comment: "clear and useful".into(),
            },
        ),
    );
    add(
        "ratings",
        encode_input(
            1,
            Organiser,
            &pb::GetRatingsRequest {
                conference_id: c(),
                session_id: ids.session.clone(),
            },
        ),
    );

    add(
        "server",
        encode_input(0, Attendee, &pb::PingRequest { seq: 7 }),
    );
    add(
        "server",
        encode_input(
            1,
            Integration,
            &pb::SubscribeRequest {
                conference_id: c(),
                from_position: 0,
                types: vec!["podium.v1.SessionScheduled".into()],
            },
        ),
    );
    seeds
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
