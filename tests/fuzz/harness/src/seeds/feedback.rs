//! Seeds of the polls, questions, ratings and server targets.

use podium_proto::v1 as pb;

use crate::{Caller, encode_input, stack::Stack};

pub(super) fn feedback_and_server(s: &Stack, seeds: &mut Vec<(&'static str, Vec<u8>)>) {
    let ids = &s.ids;
    let c = || ids.conference.clone();
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let mut add = |target, data| seeds.push((target, data));
    use Caller::*;

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
        "questions",
        encode_input(
            6,
            Moderator,
            &pb::RevokeAuthorRequest {
                conference_id: c(),
                question_id: ids.question.clone(),
                reason: "fuzz".into(),
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
    // Never the stack's own attendee: erasing them would revoke the token every later input
    // of theirs uses.
    let someone = |kind: pb::PersonKind, id: &str| {
        Some(pb::Person {
            conference_id: c(),
            kind: kind as i32,
            person_id: id.into(),
        })
    };
    add(
        "server",
        encode_input(
            2,
            Organiser,
            &pb::EraseRequest {
                person: someone(pb::PersonKind::Attendee, "att-fuzz-nobody"),
            },
        ),
    );
    add(
        "server",
        encode_input(
            3,
            Organiser,
            &pb::ExportPersonRequest {
                person: someone(pb::PersonKind::Speaker, &ids.speaker),
            },
        ),
    );
}
