//! The authorisation matrix. Every RPC podiumd serves is found at run time through its gRPC
//! server reflection (never from a list kept by hand), called generically with a request built
//! from its descriptor, and checked against one table that says who may call it: with no
//! token, with malformed, expired, tampered and forged tokens, with a token of every role, and
//! with tokens of another conference. An RPC that reflection shows and the table does not
//! classify fails the test, so a new RPC cannot slip in without a decision about who may call
//! it; so does a table entry whose RPC is gone.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use base64::Engine;
use futures::{StreamExt, stream};
use podium_access::{Principal, Role, TokenKeys};
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, OTHER_CONFERENCE, Podiumd, Show, Talk};
use prost::{
    Message,
    bytes::{Buf, BufMut},
};
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value,
};
use sha2::Digest;
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

mod callers;
mod wire;

use callers::*;
use wire::*;

// ---- The table ------------------------------------------------------------------------------

/// Who may call an RPC.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    /// Anyone, without a token. A token that is sent must still be valid.
    Public,
    /// A valid token with one of these roles, for the conference the request names.
    Roles(&'static [Role]),
}

use Allowed::{Public, Roles};
use Role::{Admin, Attendee, Integration, Moderator, Organiser, Speaker};

// Spelled out here rather than taken from podium-access, so that widening a role set there
// shows up as a failure here.
const ADMIN: &[Role] = &[Admin];
const SETUP: &[Role] = &[Admin, Organiser];
const RUN: &[Role] = &[Admin, Organiser, Moderator];
const STAFF: &[Role] = &[Admin, Organiser, Moderator, Integration];
const STAFF_AND_SPEAKERS: &[Role] = &[Admin, Organiser, Moderator, Integration, Speaker];
const SPEAKERS: &[Role] = &[Speaker];
const ATTENDEES: &[Role] = &[Attendee];
const ANY_TOKEN: &[Role] = &[Admin, Organiser, Moderator, Integration, Speaker, Attendee];

/// Every RPC, by "package.Service/Method": who may call it, and the request fields (proto
/// JSON) it needs beyond what [`fill`] sets, so that a call gets as far as the authorisation
/// check instead of stopping at validation.
const TABLE: &[(&str, Allowed, &str)] = &[
    (
        "podium.v1.Access/IssueToken",
        Roles(SETUP),
        r#"{"role": "ROLE_MODERATOR", "name": "matrix"}"#,
    ),
    ("podium.v1.Access/Join", Public, ""),
    ("podium.v1.Access/WhoAmI", Roles(ANY_TOKEN), ""),
    ("podium.v1.Access/ListTokens", Roles(SETUP), ""),
    (
        "podium.v1.Access/RevokeToken",
        Roles(SETUP),
        r#"{"tokenId": "att-nobody"}"#,
    ),
    (
        "podium.v1.Access/RotateSigningKey",
        Roles(ADMIN),
        r#"{"graceSeconds": 86400}"#,
    ),
    // An attendee may also erase and export themselves (tests/e2e/tests/e2e/privacy.rs); not
    // someone else, which is what this table's calls ask.
    (
        "podium.v1.Privacy/Erase",
        Roles(SETUP),
        r#"{"person": {"kind": "PERSON_KIND_ATTENDEE", "personId": "att-nobody"}}"#,
    ),
    (
        "podium.v1.Privacy/ExportPerson",
        Roles(SETUP),
        r#"{"person": {"kind": "PERSON_KIND_ATTENDEE", "personId": "att-nobody"}}"#,
    ),
    ("podium.v1.Agenda/CreateConference", Roles(ADMIN), ""),
    ("podium.v1.Agenda/GetConference", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/ListConferences", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/AddRoom", Roles(SETUP), ""),
    ("podium.v1.Agenda/AddSpeaker", Roles(SETUP), ""),
    ("podium.v1.Agenda/AddSession", Roles(SETUP), ""),
    ("podium.v1.Agenda/UpdateSession", Roles(SETUP), ""),
    ("podium.v1.Agenda/ListSessions", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/GetSession", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/SuggestSlots", Roles(SETUP), ""),
    ("podium.v1.Diagnostics/Ping", Roles(ANY_TOKEN), ""),
    ("podium.v1.Diagnostics/Process", Roles(ADMIN), ""),
    ("podium.v1.Diagnostics/Node", Roles(ADMIN), ""),
    ("podium.v1.Diagnostics/Backup", Roles(ADMIN), ""),
    ("podium.v1.EventFeed/Subscribe", Roles(STAFF), ""),
    ("podium.v1.Polls/CreatePoll", Roles(RUN), ""),
    ("podium.v1.Polls/OpenPoll", Roles(RUN), ""),
    ("podium.v1.Polls/ClosePoll", Roles(RUN), ""),
    ("podium.v1.Polls/GetPoll", Roles(ANY_TOKEN), ""),
    ("podium.v1.Polls/ListPolls", Roles(ANY_TOKEN), ""),
    ("podium.v1.Polls/CastBallot", Roles(ATTENDEES), ""),
    ("podium.v1.Polls/WatchResults", Roles(ANY_TOKEN), ""),
    ("podium.v1.Polls/HideWord", Roles(RUN), ""),
    ("podium.v1.Questions/SetQaSettings", Roles(RUN), ""),
    ("podium.v1.Questions/AskQuestion", Roles(ATTENDEES), ""),
    ("podium.v1.Questions/UpvoteQuestion", Roles(ATTENDEES), ""),
    ("podium.v1.Questions/ModerateQuestion", Roles(RUN), ""),
    ("podium.v1.Questions/ListQuestions", Roles(ANY_TOKEN), ""),
    ("podium.v1.Questions/WatchQuestions", Roles(ANY_TOKEN), ""),
    // Not the fixture's question: revoking its author would end the matrix's attendee.
    (
        "podium.v1.Questions/RevokeAuthor",
        Roles(RUN),
        r#"{"questionId": "q-nobody"}"#,
    ),
    ("podium.v1.Ratings/RateSession", Roles(ATTENDEES), ""),
    ("podium.v1.Ratings/GetRatings", Roles(RUN), ""),
    ("podium.v1.Recordings/UploadRecording", Roles(SETUP), ""),
    // The speaker of the recording's session only (see OWN_SESSION_ONLY).
    (
        "podium.v1.Recordings/FetchRecording",
        Roles(STAFF_AND_SPEAKERS),
        "",
    ),
    ("podium.v1.Recordings/ListRecordings", Roles(STAFF), ""),
    // Not the fixture's recording: the fetches above need it.
    (
        "podium.v1.Recordings/DeleteRecording",
        Roles(SETUP),
        r#"{"recordingId": "rec-nobody"}"#,
    ),
    // A green-room test connection, so that the matrix puts nothing on air.
    (
        "podium.v1.Presence/Link",
        Roles(SPEAKERS),
        r#"{"hello": {"testConnection": true, "agent": "authz matrix"}}"#,
    ),
    (
        "podium.v1.Presence/RecordTest",
        Roles(SPEAKERS),
        r#"{"samples": 5, "agent": "authz matrix"}"#,
    ),
    ("podium.v1.Stage/StartSession", Roles(RUN), ""),
    ("podium.v1.Stage/EndSession", Roles(RUN), ""),
    ("podium.v1.Stage/SwitchSource", Roles(RUN), ""),
    ("podium.v1.Stage/Pin", Roles(RUN), ""),
    ("podium.v1.Stage/WatchStatus", Roles(STAFF_AND_SPEAKERS), ""),
    // A speaker gets the report of their own sessions only.
    ("podium.v1.Stage/Preflight", Roles(STAFF_AND_SPEAKERS), ""),
    // A playout bridge's one report for the session's room.
    ("podium.v1.Playout/Report", Roles(STAFF), ""),
];

/// RPCs a speaker may call only for a session they speak in: the matrix's speaker speaks in
/// the session of its requests, and a speaker of another session must be refused.
const OWN_SESSION_ONLY: &[&str] = &[
    "podium.v1.Presence/Link",
    "podium.v1.Presence/RecordTest",
    "podium.v1.Recordings/FetchRecording",
];

/// Services reflection lists that are infrastructure, not podium's API.
const INFRASTRUCTURE: &[&str] = &["grpc.health.", "grpc.reflection."];

/// How long one call may take to answer (its first message, for a stream).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

// ---- The test -------------------------------------------------------------------------------

#[tokio::test]
async fn every_rpc_checks_token_role_and_conference() {
    let show = Show::start()
        .session(Talk::new(
            "Open data for climate resilience",
            "2024-11-14T02:00:00Z",
            "2024-11-14T03:00:00Z",
        ))
        .poll(
            NewPoll::single_choice(&["Budget", "Land use"])
                .question("Which dataset do you use most?")
                .for_session(),
        )
        .await
        .unwrap();
    let (server, fixture) = (&show.server, Fixture::create(&show).await);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let rpcs = discover(&channel).await;

    let mut failures = Vec::new();
    let table: BTreeMap<&str, (Allowed, &str)> = TABLE
        .iter()
        .map(|(name, allowed, template)| (*name, (*allowed, *template)))
        .collect();
    assert_eq!(table.len(), TABLE.len(), "an RPC is in the table twice");
    for rpc in &rpcs {
        if !table.contains_key(rpc.name.as_str()) {
            failures.push(format!(
                "{}: served but not in the authorisation table of tests/e2e/tests/e2e/authz.rs; decide \
                 who may call it and add it",
                rpc.name
            ));
        }
    }
    let served: BTreeSet<&str> = rpcs.iter().map(|r| r.name.as_str()).collect();
    for name in table.keys() {
        if !served.contains(name) {
            failures.push(format!(
                "{name}: in the authorisation table but podiumd no longer serves it"
            ));
        }
    }

    let callers = Callers::new(server, &fixture);
    let mut jobs = Vec::new();
    for rpc in rpcs.iter().filter(|r| table.contains_key(r.name.as_str())) {
        let (allowed, template) = table[rpc.name.as_str()];
        for case in callers.cases(rpc, allowed) {
            jobs.push((rpc, template, case));
        }
    }
    let total = jobs.len();
    let results: Vec<(String, String, String, Vec<String>)> = stream::iter(jobs)
        .map(|(rpc, template, case)| {
            let (channel, fixture) = (&channel, &fixture);
            async move {
                let (answer, problems) = run(channel, fixture, rpc, template, &case).await;
                (rpc.name.clone(), case.label.clone(), answer, problems)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // The whole matrix, for whoever reads a failure (or runs with --nocapture).
    let mut grid: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, label, answer, problems) in results {
        failures.extend(problems);
        grid.entry(name).or_default().push((label, answer));
    }
    for (name, mut answers) in grid {
        answers.sort();
        let answers: Vec<String> = answers
            .into_iter()
            .map(|(l, a)| format!("{l}={a}"))
            .collect();
        println!("{name}: {}", answers.join(" "));
    }
    println!("{} RPCs, {total} calls", rpcs.len());
    assert!(
        failures.is_empty(),
        "{} authorisation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- Fixtures -------------------------------------------------------------------------------

/// The ids a request is filled with: a conference with a session, a poll, a question and a
/// recording, so that an allowed caller's request is realistic.
#[derive(Debug, Clone)]
struct Ids {
    conference: String,
    room: String,
    session: String,
    speaker: String,
    poll: String,
    question: String,
    recording: String,
    join_code: String,
}

impl Ids {
    /// The value for a string field of that name, if the matrix sets it.
    fn value(&self, field: &str) -> Option<String> {
        Some(match field {
            "conference_id" => self.conference.clone(),
            "room_id" => self.room.clone(),
            "session_id" => self.session.clone(),
            "speaker_id" => self.speaker.clone(),
            "poll_id" => self.poll.clone(),
            "question_id" => self.question.clone(),
            "recording_id" => self.recording.clone(),
            "join_code" => self.join_code.clone(),
            "request_id" | "ballot_id" => Client::request_id(),
            _ => return None,
        })
    }

    /// What nobody outside the conference may learn.
    fn secrets(&self) -> [&str; 8] {
        [
            &self.conference,
            &self.room,
            &self.session,
            &self.speaker,
            &self.poll,
            &self.question,
            &self.recording,
            &self.join_code,
        ]
    }
}

struct Fixture {
    odc: Ids,
    /// The same ids with a conference that does not exist: what another conference's token
    /// gets must be exactly what it gets here, so that existence does not leak.
    nowhere: Ids,
    /// A speaker of the other conference.
    other_speaker: String,
    /// A speaker of the conference who does not speak in the session.
    bystander: String,
}

impl Fixture {
    /// Adds to the show what the matrix needs beyond it: another conference, a question and a
    /// recording.
    async fn create(show: &Show) -> Self {
        let (server, admin, odc) = (&show.server, &show.admin, &show.odc);
        let other = show.other_conference().await.unwrap();
        let (talk, poll) = (&show.sessions[0], &show.polls[0]);
        let keys = keys(server);
        let dara = keys
            .issue(
                &principal(Attendee, Some(CONFERENCE), None),
                Duration::from_secs(600),
            )
            .unwrap();
        let question = server
            .client(Some(dara))
            .await
            .unwrap()
            .questions()
            .ask_question(pb::AskQuestionRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                session_id: talk.id.clone(),
                text: "Where can we download the data?".into(),
                anonymous: false,
            })
            .await
            .unwrap()
            .into_inner()
            .question
            .unwrap();
        let bytes = podium_client::placeholder_mp4(60_000);
        let header = pb::RecordingHeader {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: talk.id.clone(),
            sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
            size_bytes: bytes.len() as u64,
            media_type: "video/mp4".into(),
            duration_ms: 60_000,
            file_name: "pitch.mp4".into(),
            ..Default::default()
        };
        use pb::upload_recording_request::Part;
        let recording = admin
            .recordings()
            .upload_recording(stream::iter([
                pb::UploadRecordingRequest {
                    part: Some(Part::Header(header)),
                },
                pb::UploadRecordingRequest {
                    part: Some(Part::Chunk(bytes)),
                },
            ]))
            .await
            .unwrap()
            .into_inner()
            .recording
            .unwrap();
        let ids = Ids {
            conference: odc.conference.id.clone(),
            room: odc.hall.id.clone(),
            session: talk.id.clone(),
            speaker: odc.sokha.id.clone(),
            poll: poll.id.clone(),
            question: question.id,
            recording: recording.id,
            join_code: odc.conference.join_code.clone(),
        };
        assert!(!ids.join_code.is_empty(), "the admin sees the join code");
        Self {
            nowhere: Ids {
                conference: "no-such-conf".into(),
                ..ids.clone()
            },
            odc: ids,
            other_speaker: other.sokha.id,
            bystander: odc.sarah.id.clone(),
        }
    }
}

/// The keys podiumd signs with, from its data directory.
fn keys(server: &Podiumd) -> TokenKeys {
    let secret = std::fs::read(server.data_dir.join("token-signing.key")).unwrap();
    TokenKeys::from_secret(&secret, None)
}

fn principal(role: Role, conference: Option<&str>, speaker: Option<&str>) -> Principal {
    Principal {
        id: speaker.map_or_else(|| format!("matrix-{role}"), str::to_owned),
        name: format!("matrix {role}"),
        role,
        conference_id: conference.map(str::to_owned),
        speaker_id: speaker.map(str::to_owned),
        expires_at: None,
        token_id: None,
    }
}

// ---- Undecodable requests -------------------------------------------------------------------

/// A request that does not decode is INVALID_ARGUMENT on every RPC, client streams and
/// bidirectional ones included, never INTERNAL; a string that is not UTF-8 as well.
#[tokio::test]
async fn every_rpc_answers_an_undecodable_request_with_invalid_argument() {
    let show = Show::start().await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", show.server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let rpcs = discover(&channel).await;
    let admin = format!("Bearer {}", show.server.admin_token().unwrap());
    // A speaker agent's link is a speaker's alone, checked before anything is read.
    let speaker = show
        .token(
            pb::Role::Speaker,
            Some(podium_e2e::Speaker::Sokha),
            "Sokha's laptop",
        )
        .await
        .unwrap();
    let speaker = format!("Bearer {speaker}");
    // Field 1, length-delimited, five bytes announced and one sent: no message decodes it.
    let truncated = vec![0x0a, 0x05, 0x01];
    let mut wrong = Vec::new();
    for rpc in &rpcs {
        let answer = tokio::time::timeout(
            ANSWER_WITHIN,
            exchange(
                &channel,
                rpc,
                Some(if rpc.name == "podium.v1.Presence/Link" {
                    &speaker
                } else {
                    &admin
                }),
                truncated.clone(),
            ),
        )
        .await;
        match answer {
            Ok(Err(status))
                if status.code() == Code::InvalidArgument
                    && status.message().contains("is not a valid") => {}
            other => wrong.push(format!("{}: {other:?}", rpc.name)),
        }
    }
    assert!(
        wrong.is_empty(),
        "not INVALID_ARGUMENT:\n{}",
        wrong.join("\n")
    );
    // `conference_id` (field 1 of GetConferenceRequest) holding bytes that are not UTF-8.
    let get_conference = rpcs
        .iter()
        .find(|r| r.name == "podium.v1.Agenda/GetConference")
        .expect("Agenda/GetConference");
    let status = exchange(
        &channel,
        get_conference,
        Some(&admin),
        vec![0x0a, 0x02, 0xff, 0xfe],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("GetConferenceRequest"),
        "{status:?}"
    );
}
