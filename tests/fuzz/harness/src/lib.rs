//! The fuzzing harness, one function per gRPC service and two for the decoders of stored events
//! (one event, and a chunk of them with its framing).
//! The cargo-fuzz targets in `fuzz/` and the property tests in `tests/fuzzing/` call the same
//! functions, so there is one harness: libFuzzer explores it on nightly flags, proptest runs it
//! on stable in CI.
//!
//! A service input is `[rpc, caller, body...]`: `rpc` picks the request type (modulo the
//! service's count), `caller` the bearer token sent with it (none, a garbled or expired one, or
//! one of each role), and `body` is the protobuf request. For the two client-streaming RPCs
//! (`UploadRecording`, `Presence/Link`) the body is a sequence of length-delimited messages,
//! framed as gRPC frames and decoded by tonic as on the wire. The request goes through the real
//! authenticating interceptor and the real service method, against a real sled log in a
//! temporary directory that the process opens once ([`Stack`]), seeded with a conference, a
//! session, a poll, a question and a recording so that valid ids lead deep into the handlers.
//!
//! What counts as a finding: a panic anywhere, an RPC that does not answer within
//! [`RPC_DEADLINE`], or a refusal that is not a clear gRPC status (`INTERNAL` or `UNKNOWN`, or
//! an empty message), because bad input must get an error that names the problem.

#![forbid(unsafe_code)]

mod seeds;
mod stack;
mod stored;

use std::time::Duration;

use tonic::{Code, Status};

pub use seeds::seeds;
pub use stack::{Ids, Stack, stack};
pub use stored::{stored_chunk, stored_event};

/// The longest any RPC may take before the harness calls it a hang.
pub const RPC_DEADLINE: Duration = Duration::from_secs(20);

/// A fuzz target's name and its harness function.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets; `fuzz/fuzz_targets/<name>.rs` calls the function of `<name>`.
pub const TARGETS: [Target; 10] = [
    ("stored_event", stored_event),
    ("stored_chunk", stored_chunk),
    ("access", access),
    ("agenda", agenda),
    ("stage", stage),
    ("recordings", recordings),
    ("polls", polls),
    ("questions", questions),
    ("ratings", ratings),
    ("server", server),
];

/// One service input: which RPC, which caller, and the request bytes.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub rpc: u8,
    pub caller: u8,
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let [rpc, caller, body @ ..] = data else {
            return None;
        };
        Some(Self {
            rpc: *rpc,
            caller: *caller,
            body,
        })
    }
}

/// Encodes a service input: the inverse of [`Input::parse`] for a unary request.
pub fn encode_input(rpc: u8, caller: Caller, message: &impl prost::Message) -> Vec<u8> {
    let mut data = vec![rpc, caller as u8];
    message.encode(&mut data).expect("a Vec grows as needed");
    data
}

/// Encodes a client-streaming input: each message length-delimited, one after another.
pub fn encode_stream_input<M: prost::Message>(rpc: u8, caller: Caller, messages: &[M]) -> Vec<u8> {
    let mut data = vec![rpc, caller as u8];
    for message in messages {
        message
            .encode_length_delimited(&mut data)
            .expect("a Vec grows as needed");
    }
    data
}

/// Who sends a request, by the value of the input's caller byte (modulo the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Caller {
    Anonymous = 0,
    Admin = 1,
    Organiser = 2,
    Moderator = 3,
    Speaker = 4,
    Attendee = 5,
    Integration = 6,
    /// An organiser of another conference.
    Stranger = 7,
    Expired = 8,
    Garbled = 9,
}

impl Caller {
    pub const COUNT: u8 = 10;
}

/// Fails the run unless `status` is a refusal a client can act on.
pub fn assert_clear_refusal(status: &Status) {
    assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "bad input must be refused with a status that names the problem, got {status:?}"
    );
    assert!(
        !status.message().trim().is_empty(),
        "a refusal without a message: {status:?}"
    );
}

/// `podium.v1.Access`: IssueToken, Join, WhoAmI, ListTokens, RevokeToken. (Not
/// RotateSigningKey: the admin's rotation would end the harness's own tokens.)
pub fn access(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::access_server::Access;
        let svc = &s.access;
        match input.rpc % 5 {
            0 => s.unary(input, |r| svc.issue_token(r)).await,
            1 => s.unary(input, |r| svc.join(r)).await,
            2 => s.unary(input, |r| svc.who_am_i(r)).await,
            3 => s.unary(input, |r| svc.list_tokens(r)).await,
            _ => s.unary(input, |r| svc.revoke_token(r)).await,
        }
    });
}

/// `podium.v1.Agenda`: every request of the agenda.
pub fn agenda(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::agenda_server::Agenda;
        let svc = &s.agenda;
        match input.rpc % 10 {
            0 => s.unary(input, |r| svc.create_conference(r)).await,
            1 => s.unary(input, |r| svc.get_conference(r)).await,
            2 => s.unary(input, |r| svc.list_conferences(r)).await,
            3 => s.unary(input, |r| svc.add_room(r)).await,
            4 => s.unary(input, |r| svc.add_speaker(r)).await,
            5 => s.unary(input, |r| svc.add_session(r)).await,
            6 => s.unary(input, |r| svc.list_sessions(r)).await,
            7 => s.unary(input, |r| svc.get_session(r)).await,
            8 => s.unary(input, |r| svc.suggest_slots(r)).await,
            _ => s.unary(input, |r| svc.update_session(r)).await,
        }
    });
}

/// The live status: `podium.v1.Stage` (start, end, switch, pin, watch, pre-flight) and
/// `podium.v1.Presence/Link` (the speaker agent's stream).
pub fn stage(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::{presence_server::Presence, stage_server::Stage};
        let svc = &s.stage;
        match input.rpc % 7 {
            0 => s.unary(input, |r| svc.start_session(r)).await,
            1 => s.unary(input, |r| svc.end_session(r)).await,
            2 => s.unary(input, |r| svc.switch_source(r)).await,
            3 => s.unary(input, |r| svc.pin(r)).await,
            4 => s.server_streaming(input, |r| svc.watch_status(r)).await,
            5 => s.unary(input, |r| svc.preflight(r)).await,
            _ => s.bidi_streaming(input, |r| s.presence.link(r)).await,
        }
    });
}

/// `podium.v1.Recordings`: upload (header and chunks), fetch, list.
pub fn recordings(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::recordings_server::Recordings;
        let svc = &s.recordings;
        match input.rpc % 3 {
            0 => s.client_streaming(input, |r| svc.upload_recording(r)).await,
            1 => s.server_streaming(input, |r| svc.fetch_recording(r)).await,
            _ => s.unary(input, |r| svc.list_recordings(r)).await,
        }
    });
}

/// `podium.v1.Polls`: every request of the live polls.
pub fn polls(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::polls_server::Polls;
        let svc = &s.polls;
        match input.rpc % 8 {
            0 => s.unary(input, |r| svc.create_poll(r)).await,
            1 => s.unary(input, |r| svc.open_poll(r)).await,
            2 => s.unary(input, |r| svc.close_poll(r)).await,
            3 => s.unary(input, |r| svc.get_poll(r)).await,
            4 => s.unary(input, |r| svc.list_polls(r)).await,
            5 => s.unary(input, |r| svc.cast_ballot(r)).await,
            6 => s.server_streaming(input, |r| svc.watch_results(r)).await,
            _ => s.unary(input, |r| svc.hide_word(r)).await,
        }
    });
}

/// `podium.v1.Questions`: every request of the Q&A.
pub fn questions(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::questions_server::Questions;
        let svc = &s.questions;
        match input.rpc % 7 {
            0 => s.unary(input, |r| svc.set_qa_settings(r)).await,
            1 => s.unary(input, |r| svc.ask_question(r)).await,
            2 => s.unary(input, |r| svc.upvote_question(r)).await,
            3 => s.unary(input, |r| svc.moderate_question(r)).await,
            4 => s.unary(input, |r| svc.list_questions(r)).await,
            5 => s.server_streaming(input, |r| svc.watch_questions(r)).await,
            _ => s.unary(input, |r| svc.revoke_author(r)).await,
        }
    });
}

/// `podium.v1.Ratings`: rate a session, read its ratings.
pub fn ratings(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::ratings_server::Ratings;
        let svc = &s.ratings;
        match input.rpc % 2 {
            0 => s.unary(input, |r| svc.rate_session(r)).await,
            _ => s.unary(input, |r| svc.get_ratings(r)).await,
        }
    });
}

/// podiumd's own services: `podium.v1.Diagnostics/Ping`, `podium.v1.EventFeed/Subscribe` and
/// `podium.v1.Privacy`'s `Erase` and `ExportPerson`.
pub fn server(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let s = stack();
    s.run(async {
        use podium_proto::v1::{
            diagnostics_server::Diagnostics, event_feed_server::EventFeed, privacy_server::Privacy,
        };
        match input.rpc % 4 {
            0 => s.unary(input, |r| s.diagnostics.ping(r)).await,
            1 => s.server_streaming(input, |r| s.feed.subscribe(r)).await,
            2 => s.unary(input, |r| s.privacy.erase(r)).await,
            _ => s.unary(input, |r| s.privacy.export_person(r)).await,
        }
    });
}

/// Lower-case hex of the SHA-256 of `bytes`, as recordings declare it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
