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
    ("podium.v1.Agenda/CreateConference", Roles(ADMIN), ""),
    ("podium.v1.Agenda/GetConference", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/ListConferences", Roles(ANY_TOKEN), ""),
    ("podium.v1.Agenda/AddRoom", Roles(SETUP), ""),
    ("podium.v1.Agenda/AddSpeaker", Roles(SETUP), ""),
    ("podium.v1.Agenda/AddSession", Roles(SETUP), ""),
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
    ("podium.v1.Stage/WatchStatus", Roles(STAFF), ""),
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
    }
}

// ---- Callers and what each must get ---------------------------------------------------------

/// What a call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A missing or bad token where one is needed: UNAUTHENTICATED.
    Unauthenticated,
    /// Past authentication and authorisation: anything but UNAUTHENTICATED or
    /// PERMISSION_DENIED (the request is minimal, so INVALID_ARGUMENT, NOT_FOUND,
    /// FAILED_PRECONDITION are fine), and never INTERNAL, UNKNOWN, UNIMPLEMENTED (described
    /// but not served) or no answer.
    Let,
    /// A role the table does not allow: PERMISSION_DENIED (or UNAUTHENTICATED).
    Refuse,
    /// A token of another conference, for a request that names this one: PERMISSION_DENIED or
    /// NOT_FOUND, exactly as for a conference that does not exist.
    Foreign,
    /// A token of another conference, for a request that names no conference (it asks about
    /// the caller): it may succeed, but nothing of this conference may be in the answer.
    ForeignOwnScope,
}

#[derive(Debug, Clone)]
struct Case {
    label: String,
    /// The `authorization` header, if any.
    authorization: Option<String>,
    expect: Expect,
}

struct Callers {
    /// Bad credentials: (label, authorization header).
    bad: Vec<(&'static str, Option<String>)>,
    /// Valid tokens of the conference: (label, role, token, speaks in the session).
    roles: Vec<(String, Role, String, bool)>,
    /// Valid tokens of the other conference: (label, token).
    foreign: Vec<(String, String)>,
}

impl Callers {
    fn new(server: &Podiumd, fixture: &Fixture) -> Self {
        let keys = keys(server);
        let hour = Duration::from_secs(3600);
        let issue = |p: Principal| keys.issue(&p, hour).unwrap();
        let bearer = |token: &str| Some(format!("Bearer {token}"));

        let expired = keys
            .issue_at(
                &Principal::admin(),
                SystemTime::now() - 2 * hour,
                Duration::from_secs(60),
            )
            .unwrap();
        let organiser = issue(principal(Organiser, Some(CONFERENCE), None));
        let mut parts: Vec<String> = organiser.split('.').map(str::to_owned).collect();
        let middle = parts[2].len() / 2;
        let flipped = if parts[2].as_bytes()[middle] == b'A' {
            "B"
        } else {
            "A"
        };
        parts[2].replace_range(middle..=middle, flipped);
        let bad_signature = parts.join(".");
        // An attendee who rewrites their token's role to admin, keeping the signature.
        let attendee = issue(principal(Attendee, Some(CONFERENCE), None));
        let mut parts: Vec<String> = attendee.split('.').map(str::to_owned).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        parts[1] = b64.encode(serde_json::to_vec(&claims).unwrap());
        let escalated = parts.join(".");
        let forged = TokenKeys::from_secret(&[0x5a; 32], None)
            .issue(&Principal::admin(), hour)
            .unwrap();

        let bad = vec![
            ("no-token", None),
            ("basic-scheme", Some("Basic YWRtaW46YWRtaW4=".to_owned())),
            ("malformed", bearer("not-a-token")),
            ("expired-admin", bearer(&expired)),
            ("bad-signature", bearer(&bad_signature)),
            ("role-rewritten", bearer(&escalated)),
            ("forged-admin", bearer(&forged)),
        ];

        let admin = server.admin_token().unwrap();
        let mut roles = vec![("admin".to_owned(), Admin, admin, true)];
        for role in [Organiser, Moderator, Integration, Attendee] {
            roles.push((
                role.to_string(),
                role,
                issue(principal(role, Some(CONFERENCE), None)),
                true,
            ));
        }
        roles.push((
            "speaker".into(),
            Speaker,
            issue(principal(
                Speaker,
                Some(CONFERENCE),
                Some(&fixture.odc.speaker),
            )),
            true,
        ));
        roles.push((
            "other-session-speaker".into(),
            Speaker,
            issue(principal(
                Speaker,
                Some(CONFERENCE),
                Some(&fixture.bystander),
            )),
            false,
        ));

        let mut foreign = Vec::new();
        for role in [Organiser, Moderator, Integration, Attendee] {
            foreign.push((
                format!("foreign-{role}"),
                issue(principal(role, Some(OTHER_CONFERENCE), None)),
            ));
        }
        foreign.push((
            "foreign-speaker".into(),
            issue(principal(
                Speaker,
                Some(OTHER_CONFERENCE),
                Some(&fixture.other_speaker),
            )),
        ));
        Self {
            bad,
            roles,
            foreign,
        }
    }

    /// Every case for `rpc`, with what it must get.
    fn cases(&self, rpc: &Rpc, allowed: Allowed) -> Vec<Case> {
        let mut cases = Vec::new();
        for (label, authorization) in &self.bad {
            let expect = match (authorization, allowed) {
                (None, Public) => Expect::Let,
                _ => Expect::Unauthenticated,
            };
            cases.push(Case {
                label: (*label).to_owned(),
                authorization: authorization.clone(),
                expect,
            });
        }
        for (label, role, token, in_session) in &self.roles {
            let expect = match allowed {
                Public => Expect::Let,
                Roles(roles)
                    if roles.contains(role)
                        && (*in_session || !OWN_SESSION_ONLY.contains(&rpc.name.as_str())) =>
                {
                    Expect::Let
                }
                Roles(_) => Expect::Refuse,
            };
            cases.push(Case {
                label: label.clone(),
                authorization: Some(format!("Bearer {token}")),
                expect,
            });
        }
        if let Roles(_) = allowed {
            for (label, token) in &self.foreign {
                cases.push(Case {
                    label: label.clone(),
                    authorization: Some(format!("Bearer {token}")),
                    expect: if rpc.names_conference {
                        Expect::Foreign
                    } else {
                        Expect::ForeignOwnScope
                    },
                });
            }
        }
        cases
    }
}

/// Calls `rpc` as `case` says and checks the answer; returns the answer for the matrix
/// print-out and what was wrong with it.
async fn run(
    channel: &Channel,
    fixture: &Fixture,
    rpc: &Rpc,
    template: &str,
    case: &Case,
) -> (String, Vec<String>) {
    let outcome = call(channel, rpc, template, &fixture.odc, case).await;
    let mut problems = Vec::new();
    let mut fail = |why: &str| {
        problems.push(format!(
            "{} as {}: {why}; got {:?} {:?}",
            rpc.name, case.label, outcome.code, outcome.message
        ))
    };
    match case.expect {
        Expect::Unauthenticated if outcome.code != Code::Unauthenticated => {
            fail("a missing or bad token must be UNAUTHENTICATED")
        }
        Expect::Let
            if matches!(
                outcome.code,
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Internal
                    | Code::Unknown
                    | Code::Unimplemented
                    | Code::DeadlineExceeded
            ) =>
        {
            fail("the table lets this caller in, but the call was refused or failed")
        }
        Expect::Refuse
            if !matches!(outcome.code, Code::PermissionDenied | Code::Unauthenticated) =>
        {
            fail("the table does not let this role in: PERMISSION_DENIED expected")
        }
        Expect::Foreign => {
            if !matches!(outcome.code, Code::PermissionDenied | Code::NotFound) {
                fail("a token of another conference must get PERMISSION_DENIED or NOT_FOUND");
            } else {
                let nowhere = call(channel, rpc, template, &fixture.nowhere, case).await;
                let message = nowhere
                    .message
                    .replace(&fixture.nowhere.conference, &fixture.odc.conference);
                if (nowhere.code, message.as_str()) != (outcome.code, outcome.message.as_str()) {
                    fail(&format!(
                        "the answer differs from the one for a conference that does not \
                         exist ({:?} {:?}), which tells the caller it exists",
                        nowhere.code, nowhere.message
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(bytes) = &outcome.first {
        if case.expect != Expect::Let
            && let Some(secret) = fixture
                .odc
                .secrets()
                .into_iter()
                .find(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        {
            fail(&format!("the answer carries {secret:?}"));
        }
        if let Err(error) = DynamicMessage::decode(rpc.output.clone(), bytes.as_slice()) {
            fail(&format!(
                "the answer is not a {}: {error}",
                rpc.output.full_name()
            ));
        }
    }
    (format!("{:?}", outcome.code), problems)
}

// ---- Discovery through reflection -----------------------------------------------------------

/// One RPC as reflection describes it.
#[derive(Debug)]
struct Rpc {
    /// "podium.v1.Access/IssueToken".
    name: String,
    /// "/podium.v1.Access/IssueToken".
    path: String,
    client_streaming: bool,
    server_streaming: bool,
    input: MessageDescriptor,
    output: MessageDescriptor,
    /// The request has a `conference_id`, at the top or in its first message (an upload's
    /// header), so the call is about one conference.
    names_conference: bool,
}

/// Every RPC of every service podiumd's reflection lists, but the infrastructure ones.
async fn discover(channel: &Channel) -> Vec<Rpc> {
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let services = match ask(&mut reflection, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(list) => list.service,
        other => panic!("reflection answered ListServices with {other:?}"),
    };
    let services: Vec<String> = services
        .into_iter()
        .map(|s| s.name)
        .filter(|name| !INFRASTRUCTURE.iter().any(|p| name.starts_with(p)))
        .collect();
    assert!(!services.is_empty(), "reflection lists no podium service");

    // Each service's file, then every file those import, by name, as grpcurl does.
    let mut files: BTreeMap<String, prost_types::FileDescriptorProto> = BTreeMap::new();
    let mut wanted: Vec<MessageRequest> = services
        .iter()
        .map(|s| MessageRequest::FileContainingSymbol(s.clone()))
        .collect();
    while let Some(request) = wanted.pop() {
        let MessageResponse::FileDescriptorResponse(found) = ask(&mut reflection, request).await
        else {
            panic!("reflection answered a file request with something else");
        };
        for bytes in found.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            for dependency in &file.dependency {
                if !files.contains_key(dependency) {
                    wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                }
            }
            files.insert(file.name().to_owned(), file);
        }
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files.into_values())
        .expect("reflection's descriptors build a pool");

    let mut rpcs = Vec::new();
    for name in services {
        let service = pool
            .get_service_by_name(&name)
            .unwrap_or_else(|| panic!("reflection lists {name} but describes no such service"));
        for method in service.methods() {
            rpcs.push(Rpc {
                name: format!("{}/{}", service.full_name(), method.name()),
                path: format!("/{}/{}", service.full_name(), method.name()),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
                names_conference: names_conference(&method.input(), 0),
                input: method.input(),
                output: method.output(),
            });
        }
    }
    rpcs
}

async fn ask(
    reflection: &mut ServerReflectionClient<Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    match answer.message_response {
        Some(MessageResponse::ErrorResponse(e)) => {
            panic!("reflection refused: {} {}", e.error_code, e.error_message)
        }
        Some(response) => response,
        None => panic!("an empty reflection answer"),
    }
}

fn names_conference(message: &MessageDescriptor, depth: usize) -> bool {
    depth < 4
        && message.fields().any(|field| {
            field.name() == "conference_id"
                || match field.kind() {
                    Kind::Message(m) if !field.is_list() && !field.is_map() => {
                        names_conference(&m, depth + 1)
                    }
                    _ => false,
                }
        })
}

// ---- Generic requests and calls -------------------------------------------------------------

/// Sets, where the template left them empty, every id field the matrix knows, every enum to
/// its first real value (so that validation passes), and descends into nested messages and
/// into the first message of a oneof (an upload's header, an agent's hello). Returns whether
/// it set anything.
fn fill(message: &mut DynamicMessage, ids: &Ids, depth: usize) -> bool {
    if depth > 4 {
        return false;
    }
    let mut changed = false;
    for field in message.descriptor().fields() {
        if field.is_list() || field.is_map() {
            continue;
        }
        let oneof = field.containing_oneof().filter(|o| !o.is_synthetic());
        if let Some(oneof) = &oneof {
            let chosen = oneof
                .fields()
                .find(|f| message.has_field(f))
                .or_else(|| oneof.fields().next());
            if chosen.map(|f| f.number()) != Some(field.number()) {
                continue;
            }
        }
        match field.kind() {
            Kind::String if !message.has_field(&field) => {
                if let Some(value) = ids.value(field.name()) {
                    message.set_field(&field, Value::String(value));
                    changed = true;
                }
            }
            Kind::Enum(kind) if !message.has_field(&field) => {
                if let Some(first) = kind.values().find(|v| v.number() != 0) {
                    message.set_field(&field, Value::EnumNumber(first.number()));
                    changed = true;
                }
            }
            Kind::Message(kind) => {
                let mut child = if message.has_field(&field) {
                    message
                        .get_field(&field)
                        .as_message()
                        .cloned()
                        .unwrap_or_else(|| DynamicMessage::new(kind.clone()))
                } else {
                    DynamicMessage::new(kind)
                };
                if fill(&mut child, ids, depth + 1) || oneof.is_some() {
                    message.set_field(&field, Value::Message(child));
                    changed = true;
                }
            }
            _ => {}
        }
    }
    changed
}

/// The encoded request for `rpc`: the template's fields, then [`fill`].
fn request(rpc: &Rpc, template: &str, ids: &Ids) -> Vec<u8> {
    let mut message = if template.is_empty() {
        DynamicMessage::new(rpc.input.clone())
    } else {
        let mut json = serde_json::Deserializer::from_str(template);
        let message = DynamicMessage::deserialize(rpc.input.clone(), &mut json)
            .unwrap_or_else(|e| panic!("the template of {} does not parse: {e}", rpc.name));
        json.end().unwrap();
        message
    };
    fill(&mut message, ids, 0);
    message.encode_to_vec()
}

/// How a call ended: its status code (OK on success), message, and the first message of the
/// answer.
#[derive(Debug)]
struct Outcome {
    code: Code,
    message: String,
    first: Option<Vec<u8>>,
}

async fn call(channel: &Channel, rpc: &Rpc, template: &str, ids: &Ids, case: &Case) -> Outcome {
    let body = request(rpc, template, ids);
    match tokio::time::timeout(
        ANSWER_WITHIN,
        exchange(channel, rpc, case.authorization.as_deref(), body),
    )
    .await
    {
        Ok(Ok(first)) => Outcome {
            code: Code::Ok,
            message: String::new(),
            first,
        },
        Ok(Err(status)) => Outcome {
            code: status.code(),
            message: status.message().to_owned(),
            first: None,
        },
        Err(_) => Outcome {
            code: Code::DeadlineExceeded,
            message: format!("no answer within {ANSWER_WITHIN:?}"),
            first: None,
        },
    }
}

/// One call of any shape: the request (one message; a bidirectional stream stays open after
/// it), then the response or a stream's first message.
async fn exchange(
    channel: &Channel,
    rpc: &Rpc,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, Status> {
    fn authorised<T>(message: T, authorization: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("an ASCII header"));
        }
        request
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let path = PathAndQuery::try_from(rpc.path.as_str()).expect("a gRPC path");
    let request = authorised((), authorization);
    match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => {
            let response = grpc.unary(request.map(|()| body), path, Raw).await?;
            Ok(Some(response.into_inner()))
        }
        (true, false) => {
            let parts = stream::iter([body]);
            let response = grpc
                .client_streaming(request.map(|()| parts), path, Raw)
                .await?;
            Ok(Some(response.into_inner()))
        }
        (false, true) => {
            let mut answers = grpc
                .server_streaming(request.map(|()| body), path, Raw)
                .await?
                .into_inner();
            answers.message().await
        }
        (true, true) => {
            let parts = stream::iter([body]).chain(stream::pending());
            let mut answers = grpc
                .streaming(request.map(|()| parts), path, Raw)
                .await?
                .into_inner();
            answers.message().await
        }
    }
}

/// A codec that sends and receives encoded messages as they are, for calls built from
/// descriptors.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
