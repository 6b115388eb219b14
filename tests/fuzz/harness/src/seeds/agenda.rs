//! Seeds of the access and agenda targets.

use podium_proto::v1 as pb;

use crate::{Caller, encode_input, stack::Stack};

pub(super) fn access_and_agenda(s: &Stack, seeds: &mut Vec<(&'static str, Vec<u8>)>) {
    let ids = &s.ids;
    let c = || ids.conference.clone();
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let mut add = |target, data| seeds.push((target, data));
    use Caller::*;

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
        "access",
        encode_input(3, Organiser, &pb::ListTokensRequest::default()),
    );
    add(
        "access",
        encode_input(
            4,
            Organiser,
            &pb::RevokeTokenRequest {
                token_id: "att-0123456789ab".into(),
                conference_id: c(),
                reason: "fuzz".into(),
            },
        ),
    );

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
            9,
            Organiser,
            &pb::UpdateSessionRequest {
                request_id: "0b8e2f6a-3c1d-4e5f-9a7b-1c2d3e4f5a6b".into(),
                conference_id: c(),
                session_id: ids.session.clone(),
                title: text("Budgets in the open, moved"),
                kind: pb::SessionKind::Talk as i32,
                start: start(7),
                end: start(8),
                room_id: ids.room.clone(),
                speaker_ids: vec![ids.speaker.clone()],
                backup_speaker_ids: vec![],
                failover: None,
                expected_revision: Some(0),
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
}
