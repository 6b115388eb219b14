//! The checks after a power cut. First the log itself, opened directly before podiumd starts:
//! positions dense from 0 to the head, every event decodable, and every acknowledged ballot and
//! question at the position podiumd returned for it. Then podiumd, through gRPC: every poll
//! whose creation was acknowledged, in the state its acknowledged opening or closing says, with
//! tallies between what was acknowledged and what was sent; anonymous polls' keys gone once
//! their close was acknowledged; every acknowledged room, speaker, question and recording there,
//! recordings with their SHA-256. Each problem found is a line in `violations`.
//!
//! What was sent without an answer may or may not have survived; whatever is found of it is
//! then entered in the ledger as settled, since it survived a power cut and must survive the
//! next ones.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::Context;
use futures::StreamExt;
use podium_client::{Client, pb};
use podium_eventlog::{EventLog, SledEventLog, SledOptions};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{
    ledger::{AckedAt, Ledger, tally_bounds},
    storm::{CONFERENCE, Cast, MAIN_HALL},
};

/// Longest a single check RPC may take.
const CALL: Duration = Duration::from_secs(20);

/// Reads the whole log in `data_dir/log` with podiumd stopped. Returns its head, or the error
/// that kept it from opening.
pub async fn log(
    data_dir: &Path,
    ledger: &Ledger,
    violations: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let options = SledOptions {
        reserve_bytes: 0,
        ..SledOptions::default()
    };
    let log = SledEventLog::open(data_dir.join("log"), options)?;
    let head = log.head();
    let wanted: HashMap<u64, &AckedAt> = ledger.positions.iter().map(|a| (a.position, a)).collect();
    let mut next = 0u64;
    'pages: while next < head {
        let events = match log.read_all(next, 4096).await {
            Ok(events) => events,
            Err(error) => {
                violations.push(format!(
                    "the log cannot be read from position {next}: {error}"
                ));
                break;
            }
        };
        if events.is_empty() {
            violations.push(format!(
                "the log has no event at {next}, below its head {head}"
            ));
            break;
        }
        for event in events {
            if event.position != next {
                violations.push(format!(
                    "the log jumps from position {next} to {}: positions are not dense",
                    event.position
                ));
                break 'pages;
            }
            if let Some(acked) = wanted.get(&next)
                && let Some(problem) = mismatch(acked, &event.event_type, &event.payload)
            {
                violations.push(problem);
            }
            next += 1;
        }
    }
    let mut lost: Vec<&AckedAt> = ledger
        .positions
        .iter()
        .filter(|a| a.position >= head)
        .collect();
    lost.sort_by_key(|a| a.position);
    if let Some(first) = lost.first() {
        violations.push(format!(
            "{} acknowledged events are beyond the log's head {head}, e.g. {} {} acknowledged at position {}",
            lost.len(),
            first.event_type,
            first.key,
            first.position
        ));
    }
    log.close()?;
    Ok(head)
}

/// Why the event at an acknowledged position is not the one acknowledged there, if it is not.
fn mismatch(acked: &AckedAt, event_type: &str, payload: &[u8]) -> Option<String> {
    let key = match acked.event_type {
        "podium.v1.BallotCast" => pb::BallotCast::decode(payload).ok().map(|b| b.ballot_id),
        "podium.v1.QuestionAsked" => pb::QuestionAsked::decode(payload)
            .ok()
            .map(|q| q.question_id),
        _ => None,
    };
    if event_type == acked.event_type && key.as_deref() == Some(acked.key.as_str()) {
        return None;
    }
    Some(format!(
        "position {} holds a {event_type}, not the {} {} acknowledged there",
        acked.position, acked.event_type, acked.key
    ))
}

/// Checks podiumd at `addr` against the ledger. `fetch_all` fetches every acknowledged
/// recording, not only those not fetched yet.
pub async fn server(
    addr: &str,
    data_dir: &Path,
    cast: &Cast,
    ledger: &mut Ledger,
    fetch_all: bool,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let client = Client::connect(addr, None).await?;
    let moderator = client.with_token(Some(cast.moderator.clone()))?;
    let organiser = client.with_token(Some(cast.organiser.clone()))?;
    polls(&moderator, data_dir, ledger, violations).await?;
    agenda(&organiser, ledger, violations).await?;
    questions(&moderator, cast, ledger, violations).await?;
    recordings(&organiser, ledger, fetch_all, violations).await
}

async fn polls(
    moderator: &Client,
    data_dir: &Path,
    ledger: &mut Ledger,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    use pb::PollState::{Closed, Draft, Open};
    let mut stub = moderator.polls();
    for (id, record) in ledger.polls.iter_mut() {
        let got = stub.get_poll(pb::GetPollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: id.clone(),
            language: String::new(),
        });
        let poll = match tokio::time::timeout(CALL, got).await? {
            Ok(response) => response.into_inner().poll.context("no poll")?,
            Err(status) => {
                violations.push(format!(
                    "poll {id}, created (acknowledged), is gone: {status}"
                ));
                continue;
            }
        };
        let state = poll.state();
        let allowed: &[pb::PollState] = match (record.open, record.close) {
            (_, Some(true)) => &[Closed],
            (Some(true), Some(false)) => &[Open, Closed],
            (Some(true), None) => &[Open],
            (Some(false), Some(false)) => &[Draft, Open, Closed],
            (Some(false), None) => &[Draft, Open],
            (None, _) => &[Draft],
        };
        if !allowed.contains(&state) {
            violations.push(format!(
                "poll {id} is {state:?}; after open {:?} and close {:?} (Some(true): acknowledged) it may only be {allowed:?}",
                record.open, record.close
            ));
            continue;
        }
        // What survived a power cut is durable, and what did not is not in the log: settle
        // both, so that the next cuts are checked against them.
        match state {
            Draft => record.open = None,
            Open => (record.open, record.close) = (Some(true), None),
            _ => (record.open, record.close) = (Some(true), Some(true)),
        }
        let request = pb::WatchResultsRequest {
            conference_id: CONFERENCE.into(),
            poll_id: id.clone(),
            language: String::new(),
        };
        let first = async {
            let mut stream = stub.watch_results(request).await?.into_inner();
            stream.next().await.transpose()
        };
        let results = match tokio::time::timeout(CALL, first).await? {
            Ok(Some(update)) => update.results.context("a moderator gets no results")?,
            Ok(None) => anyhow::bail!("poll {id}'s results stream ended at once"),
            Err(status) => anyhow::bail!("poll {id}'s results: {status}"),
        };
        let bounds = tally_bounds(record);
        let (low, high) = bounds.ballots;
        if !(low..=high).contains(&results.ballots) {
            violations.push(format!(
                "poll {id} counts {} ballots; acknowledged and sent allow {low} to {high}",
                results.ballots
            ));
        }
        for count in &results.options {
            let (low, high) = bounds
                .options
                .get(&count.option_id)
                .copied()
                .unwrap_or((0, 0));
            if !(low..=high).contains(&count.count) {
                violations.push(format!(
                    "poll {id} counts {} for {}; acknowledged and sent ballots allow {low} to {high}",
                    count.count, count.option_id
                ));
            }
        }
        let key = data_dir
            .join("poll-keys")
            .join(format!("{CONFERENCE}--{id}.key"));
        let voted = record.ballots.values().flatten().any(|b| b.acked);
        // A close podiumd answered destroyed the key first. One killed between its append and
        // the key's removal leaves the key behind (podium does not sweep those yet).
        if record.close_answered && key.exists() {
            violations.push(format!(
                "poll {id} was closed (acknowledged) but its anonymity key {} is still there",
                key.display()
            ));
        } else if record.anonymous && state == Open && voted && !key.exists() {
            violations.push(format!(
                "anonymous poll {id} is open with acknowledged ballots, but its key {} is gone",
                key.display()
            ));
        }
    }
    Ok(())
}

/// Acknowledged names must all be there, and nothing that was never sent.
fn names(
    what: &str,
    found: &[String],
    sent: &mut [crate::ledger::Write<String>],
    extra: &[&str],
    violations: &mut Vec<String>,
) {
    for write in sent.iter_mut() {
        let there = found.contains(&write.what);
        if write.acked && !there {
            violations.push(format!(
                "the {what} {:?} was acknowledged but is gone",
                write.what
            ));
        }
        write.acked |= there;
    }
    for name in found {
        if !extra.contains(&name.as_str()) && !sent.iter().any(|w| &w.what == name) {
            violations.push(format!("a {what} {name:?} is there that was never sent"));
        }
    }
}

async fn agenda(
    organiser: &Client,
    ledger: &mut Ledger,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut stub = organiser.agenda();
    let got = stub.get_conference(pb::GetConferenceRequest {
        conference_id: CONFERENCE.into(),
    });
    let conference = match tokio::time::timeout(CALL, got).await? {
        Ok(response) => response.into_inner().conference.context("no conference")?,
        Err(status) => {
            violations.push(format!("the conference is gone: {status}"));
            return Ok(());
        }
    };
    let rooms: Vec<String> = conference.rooms.into_iter().map(|r| r.name).collect();
    names("room", &rooms, &mut ledger.rooms, &[MAIN_HALL], violations);
    let speakers: Vec<String> = conference.speakers.into_iter().map(|s| s.name).collect();
    names("speaker", &speakers, &mut ledger.speakers, &[], violations);
    Ok(())
}

async fn questions(
    moderator: &Client,
    cast: &Cast,
    ledger: &mut Ledger,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut stub = moderator.questions();
    let listed = stub.list_questions(pb::ListQuestionsRequest {
        conference_id: CONFERENCE.into(),
        session_id: cast.session.clone(),
    });
    let found: HashMap<String, String> = tokio::time::timeout(CALL, listed)
        .await??
        .into_inner()
        .questions
        .into_iter()
        .map(|q| (q.text, q.id))
        .collect();
    for question in &mut ledger.questions {
        match (&question.id, found.get(&question.text)) {
            (Some(id), Some(there)) if id != there => violations.push(format!(
                "question {:?} was acknowledged as {id} but is there as {there}",
                question.text
            )),
            (Some(id), None) => violations.push(format!(
                "question {id} {:?} was acknowledged but is gone",
                question.text
            )),
            (None, Some(there)) => question.id = Some(there.clone()),
            _ => {}
        }
    }
    let sent = ledger.questions.len();
    if found.len() > sent {
        violations.push(format!(
            "{} questions are listed, {sent} were sent",
            found.len()
        ));
    }
    Ok(())
}

async fn recordings(
    organiser: &Client,
    ledger: &mut Ledger,
    fetch_all: bool,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut stub = organiser.recordings();
    let listed = stub.list_recordings(pb::ListRecordingsRequest {
        conference_id: CONFERENCE.into(),
        session_id: String::new(),
    });
    let found: HashMap<String, pb::Recording> = tokio::time::timeout(CALL, listed)
        .await??
        .into_inner()
        .recordings
        .into_iter()
        .map(|r| (r.sha256.clone(), r))
        .collect();
    for (sha256, recording) in &found {
        if !ledger.uploads.iter().any(|u| &u.sha256 == sha256) {
            violations.push(format!(
                "recording {} is there but was never sent",
                recording.id
            ));
        }
    }
    for upload in &mut ledger.uploads {
        let Some(recording) = found.get(&upload.sha256) else {
            if let Some(id) = &upload.id {
                violations.push(format!("recording {id} was acknowledged but is gone"));
            }
            continue;
        };
        if upload.id.as_ref().is_some_and(|id| id != &recording.id)
            || recording.size_bytes != upload.size
        {
            violations.push(format!(
                "recording {} ({} bytes) is not what was acknowledged ({:?}, {} bytes)",
                recording.id, recording.size_bytes, upload.id, upload.size
            ));
            continue;
        }
        upload.id = Some(recording.id.clone());
        if upload.fetched && !fetch_all {
            continue;
        }
        let fetched = fetch(organiser, &recording.id);
        match tokio::time::timeout(CALL, fetched).await? {
            Ok((size, sha256)) if size == upload.size && sha256 == upload.sha256 => {
                upload.fetched = true;
            }
            Ok((size, sha256)) => violations.push(format!(
                "recording {} fetches as {size} bytes with SHA-256 {sha256}, not {} bytes with {}",
                recording.id, upload.size, upload.sha256
            )),
            Err(status) => violations.push(format!(
                "recording {} is listed but cannot be fetched: {status}",
                recording.id
            )),
        }
    }
    Ok(())
}

/// Fetches a recording whole: its size and SHA-256.
async fn fetch(client: &Client, id: &str) -> Result<(u64, String), tonic::Status> {
    let mut stream = client
        .recordings()
        .fetch_recording(pb::FetchRecordingRequest {
            conference_id: CONFERENCE.into(),
            recording_id: id.into(),
            offset: 0,
        })
        .await?
        .into_inner();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?.chunk;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
