//! The `podium.v1.Playout` service: a room's playout bridge (`podium bridge obs`) tells podium
//! what the program output really shows, so that the board can put "decided" beside
//! "confirmed".
//!
//! A bridge holds one report stream per room and sends the whole picture whenever it changes
//! and every couple of seconds. Only changes reach the log: a report is stored in the room's
//! stream when it differs from the last stored one in more than its counters (changed counters
//! alone at most every [`COUNTERS_EVERY_MS`]), and the end of the stream is stored as
//! `bridge_connected: false`, so the board shows a bridge that went away without any timer.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use podium_access::{MODERATORS, Role, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector};
use podium_proto::v1::{self as pb, playout_server::Playout};
use tokio::sync::{Mutex, watch};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    codec::{millis, timestamp},
    engine::EngineHandle,
    model::StatusModel,
};

/// Changed counters alone (frames, congestion, the media cursor) are stored at most this often.
pub const COUNTERS_EVERY_MS: u64 = 10_000;

const NAME: podium_text::Limit = podium_text::Limit::line(100).optional();
const STATE: podium_text::Limit = podium_text::Limit::line(40).optional();
const MESSAGE: podium_text::Limit = podium_text::Limit::line(500).optional();
/// Problems a report may carry, and recordings it may say it holds.
const MAX_PROBLEMS: usize = 16;
const MAX_HELD: usize = 1_000;

/// A report's free text cleaned like any text people type (it reaches the log and every
/// board), and its lists bounded; the fields podiumd sets itself are cleared.
fn checked(mut output: pb::ProgramOutput) -> Result<pb::ProgramOutput, Status> {
    let clean = |field: &'static str, text: &str, limit| {
        podium_text::clean(field, text, limit).map_err(|e| Status::invalid_argument(e.to_string()))
    };
    output.bridge = clean("output.bridge", &output.bridge, &NAME)?;
    output.scene = clean("output.scene", &output.scene, &NAME)?;
    output.media_state = clean("output.media_state", &output.media_state, &STATE)?;
    if output.problems.len() > MAX_PROBLEMS {
        return Err(Status::invalid_argument(format!(
            "output.problems: at most {MAX_PROBLEMS}, got {}",
            output.problems.len()
        )));
    }
    for problem in &mut output.problems {
        problem.message = clean("output.problems.message", &problem.message, &MESSAGE)?;
    }
    if output.recordings_held.len() > MAX_HELD {
        return Err(Status::invalid_argument(format!(
            "output.recordings_held: at most {MAX_HELD}, got {}",
            output.recordings_held.len()
        )));
    }
    for id in &output.recordings_held {
        clean("output.recordings_held", id, &NAME)?;
    }
    if let Some(decided) = &mut output.decided {
        decided.speaker_id = clean("output.decided.speaker_id", &decided.speaker_id, &NAME)?;
        decided.recording_id = clean("output.decided.recording_id", &decided.recording_id, &NAME)?;
        decided.recording_sha256 = clean(
            "output.decided.recording_sha256",
            &decided.recording_sha256,
            &NAME,
        )?;
    }
    output.delay_ms = 0;
    output.reported_at = None;
    Ok(output)
}

/// What podiumd knows of a room's reports. Its lock is held across the append, so a room's
/// reports are stored in order; other rooms do not wait.
#[derive(Debug, Default)]
struct Room {
    /// The last output stored and when (engine clock, ms); read from the model at first.
    stored: Option<(pb::ProgramOutput, u64)>,
    /// The stream that reports for the room: a newer one replaces it.
    generation: u64,
}

/// A room by conference and room id.
type RoomKey = (String, String);

/// Two stores of a room's output at least this far apart (but for a bridge going away).
const MIN_STORE_INTERVAL_MS: u64 = 50;

/// The stream of a room's program output reports.
pub fn output_stream(conference_id: &str, room_id: &str) -> String {
    format!("conference/{conference_id}/room/{room_id}/output")
}

pub struct PlayoutService {
    inner: Arc<Inner>,
    shutdown: watch::Receiver<bool>,
}

struct Inner {
    engine: EngineHandle,
    model: Projector<StatusModel>,
    log: Arc<dyn EventLog>,
    /// Per conference and room: the last output stored and which stream reports.
    rooms: std::sync::Mutex<HashMap<RoomKey, Arc<Mutex<Room>>>>,
}

impl PlayoutService {
    /// `grace`: how long after start-up a bridge has to report again before its room's output,
    /// stored as connected before podiumd stopped, is stored as disconnected.
    pub fn new(
        engine: EngineHandle,
        model: Projector<StatusModel>,
        log: Arc<dyn EventLog>,
        shutdown: watch::Receiver<bool>,
        grace: std::time::Duration,
    ) -> Self {
        let inner = Arc::new(Inner {
            engine,
            model,
            log,
            rooms: std::sync::Mutex::default(),
        });
        tokio::spawn(inner.clone().sweep(grace));
        Self { inner, shutdown }
    }
}

impl Inner {
    /// After `grace`, stores every room whose bridge was connected when podiumd last stopped
    /// and has not reported since as disconnected: a bridge that went away while podiumd was
    /// down must not show as connected for ever.
    async fn sweep(self: Arc<Self>, grace: std::time::Duration) {
        tokio::time::sleep(grace).await;
        let stale: Vec<RoomKey> = {
            let model = self.model.read();
            model
                .conferences
                .values()
                .flat_map(|c| {
                    c.outputs
                        .values()
                        .filter(|o| o.bridge_connected)
                        .map(|o| (c.id.clone(), o.room_id.clone()))
                })
                .collect()
        };
        for (conference_id, room_id) in stale {
            let room = self.room(&conference_id, &room_id);
            // Generation 0: no stream has reported for the room since start-up.
            if let Err(status) = self.report(&conference_id, &room, 0, None).await {
                tracing::warn!(conference = %conference_id, room = %room_id, %status, "cannot store a silent bridge as disconnected");
            }
        }
    }

    /// The conference and room of a report, once the caller may report for it and the room is
    /// one of the conference's (with sessions or not).
    async fn check(
        &self,
        principal: &podium_access::Principal,
        r: &pb::PlayoutReportRequest,
    ) -> Result<(String, String), Status> {
        let conference_id = r.conference_id.trim().to_owned();
        let allowed = [MODERATORS, &[Role::Integration]].concat();
        principal.require(&conference_id, &allowed, "report a room's program output")?;
        let room_id = r
            .output
            .as_ref()
            .map(|o| o.room_id.trim().to_owned())
            .unwrap_or_default();
        if room_id.is_empty() {
            return Err(Status::invalid_argument(
                "output.room_id: name the room the bridge produces",
            ));
        }
        self.model
            .catch_up_unless(|m| {
                m.conference(&conference_id)
                    .is_some_and(|c| c.has_room(&room_id))
            })
            .await?;
        let model = self.model.read();
        let conference = model
            .conference(&conference_id)
            .ok_or_else(|| Status::not_found(format!("conference {conference_id} not found")))?;
        // A room with no sessions yet, or none left, still has its bridge.
        if !conference.has_room(&room_id) {
            return Err(Status::not_found(format!(
                "room {room_id} not found in conference {conference_id}"
            )));
        }
        Ok((conference_id, room_id))
    }

    fn in_room(&self, conference_id: &str, room_id: &str, session_id: &str) -> bool {
        self.model
            .read()
            .session(conference_id, session_id)
            .is_some_and(|s| s.room_id == room_id)
    }

    /// The room's state, made on first use from the read model.
    fn room(&self, conference_id: &str, room_id: &str) -> Arc<Mutex<Room>> {
        let key = (conference_id.to_owned(), room_id.to_owned());
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .entry(key)
            .or_insert_with(|| {
                let stored = self
                    .model
                    .read()
                    .conference(conference_id)
                    .and_then(|c| c.outputs.get(room_id).cloned())
                    .map(|o| (o, 0));
                Arc::new(Mutex::new(Room {
                    stored,
                    generation: 0,
                }))
            })
            .clone()
    }

    /// Stores `output` for the room if it says something new, with podiumd's own fields set;
    /// refuses a stream a newer one has replaced. `None`: the bridge went away, stored as the
    /// last picture with `bridge_connected` false, unless a newer stream reports already.
    async fn report(
        &self,
        conference_id: &str,
        room: &Mutex<Room>,
        generation: u64,
        output: Option<pb::ProgramOutput>,
    ) -> Result<(), Status> {
        let mut room = room.lock().await;
        if room.generation != generation {
            return match output {
                Some(output) => Err(Status::aborted(format!(
                    "a newer bridge reports for room {}; this one stops",
                    output.room_id
                ))),
                None => Ok(()),
            };
        }
        let now = self.engine.clock().now();
        let output = match output {
            Some(mut output) => {
                output.bridge_connected = true;
                output
            }
            None => match &room.stored {
                Some((last, _)) => pb::ProgramOutput {
                    bridge_connected: false,
                    ..last.clone()
                },
                None => return Ok(()),
            },
        };
        let Some(output) = to_store(room.stored.as_ref(), output, now) else {
            return Ok(());
        };
        let event = pb::ProgramOutputReported {
            conference_id: conference_id.to_owned(),
            output: Some(output.clone()),
        };
        self.log
            .append(
                &output_stream(conference_id, &output.room_id),
                ExpectedVersion::Any,
                vec![NewEvent::new(Uuid::now_v7(), &event)],
            )
            .await?;
        tracing::info!(conference = %conference_id, room = %output.room_id, session = %output.session_id, scene = %output.scene, confirmed = output.confirmed, delay_ms = output.delay_ms, connected = output.bridge_connected, problems = output.problems.len(), "program output reported");
        room.stored = Some((output, now));
        Ok(())
    }
}

/// The report to store, with podiumd's stamps (`now` on the engine's clock), if it says
/// something `last` (the last stored, and when) did not.
fn to_store(
    last: Option<&(pb::ProgramOutput, u64)>,
    mut output: pb::ProgramOutput,
    now: u64,
) -> Option<pb::ProgramOutput> {
    output.delay_ms = match last {
        // The same decision confirmed before (an override or a lost OBS since, perhaps): its
        // delay was measured the first time.
        Some((before, _)) if before.delay_ms > 0 && same_decision(before, &output) => {
            before.delay_ms
        }
        _ if output.confirmed => {
            now.saturating_sub(millis(&output.decided.as_ref().and_then(|d| d.since)))
        }
        _ => 0,
    };
    let store = match last {
        None => true,
        // A bridge going away is stored at once.
        Some((before, _)) if before.bridge_connected && !output.bridge_connected => true,
        Some((_, at)) if now.saturating_sub(*at) < MIN_STORE_INTERVAL_MS => false,
        Some((before, at)) => {
            !same_picture(before, &output)
                || (before.health != output.health
                    || before.media_cursor_ms != output.media_cursor_ms)
                    && now.saturating_sub(*at) >= COUNTERS_EVERY_MS
        }
    };
    output.reported_at = Some(timestamp(now));
    store.then_some(output)
}

/// Both carry out the same decision.
fn same_decision(a: &pb::ProgramOutput, b: &pb::ProgramOutput) -> bool {
    a.session_id == b.session_id && a.decided == b.decided
}

/// Equal but for the counters and podiumd's own stamps.
fn same_picture(a: &pb::ProgramOutput, b: &pb::ProgramOutput) -> bool {
    let plain = |o: &pb::ProgramOutput| pb::ProgramOutput {
        media_cursor_ms: 0,
        confirmed_at: None,
        reported_at: None,
        delay_ms: 0,
        health: o.health.map(|h| pb::OutputHealth {
            congestion: 0.0,
            skipped_frames: 0,
            total_frames: 0,
            render_skipped_frames: 0,
            ..h
        }),
        ..o.clone()
    };
    plain(a) == plain(b)
}

#[tonic::async_trait]
impl Playout for PlayoutService {
    async fn report(
        &self,
        request: Request<Streaming<pb::PlayoutReportRequest>>,
    ) -> Result<Response<pb::PlayoutReportResponse>, Status> {
        let principal = caller(&request)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.next().await.transpose()? else {
            return Err(Status::invalid_argument(
                "the stream ended before its first report",
            ));
        };
        let (conference_id, room_id) = self.inner.check(&principal, &first).await?;
        tracing::info!(conference = %conference_id, room = %room_id, principal = %principal.id, "playout bridge connected");
        let room = self.inner.room(&conference_id, &room_id);
        let generation = {
            let mut room = room.lock().await;
            room.generation += 1;
            room.generation
        };
        let mut reported = false;
        let mut next = Some(first);
        let mut shutdown = self.shutdown.clone();
        let ended = loop {
            let Some(r) = next.take() else {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(Ok(r)) => next = Some(r),
                        Some(Err(status)) => break Err(status),
                        None => break Ok(()),
                    },
                    // podiumd is stopping: the bridge reconnects to it (or another node), so
                    // this is no disconnection to store.
                    _ = shutdown.wait_for(|stop| *stop) => {
                        return Err(Status::unavailable("podiumd is shutting down; report again"));
                    }
                }
                continue;
            };
            let output = r.output.unwrap_or_default();
            if r.conference_id.trim() != conference_id || output.room_id.trim() != room_id {
                break Err(Status::invalid_argument(format!(
                    "every report must name conference {conference_id} and room {room_id}"
                )));
            }
            let output = match checked(output) {
                Ok(output) => pb::ProgramOutput {
                    room_id: room_id.clone(),
                    ..output
                },
                Err(status) => break Err(status),
            };
            if !output.session_id.is_empty()
                && !self
                    .inner
                    .in_room(&conference_id, &room_id, &output.session_id)
            {
                break Err(Status::invalid_argument(format!(
                    "output.session_id: {} is not a session in room {room_id}",
                    output.session_id
                )));
            }
            if let Err(status) = self
                .inner
                .report(&conference_id, &room, generation, Some(output))
                .await
            {
                break Err(status);
            }
            reported = true;
        };
        if reported {
            tracing::info!(conference = %conference_id, room = %room_id, "playout bridge disconnected");
            self.inner
                .report(&conference_id, &room, generation, None)
                .await?;
        }
        ended.map(|()| Response::new(pb::PlayoutReportResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(since_ms: u64) -> pb::Source {
        pb::Source {
            kind: pb::SourceKind::Recording as i32,
            recording_id: "rec-1".into(),
            offset_ms: 12_000,
            since: Some(timestamp(since_ms)),
            ..Default::default()
        }
    }

    fn output(confirmed: bool, cursor: u64, skipped: u64) -> pb::ProgramOutput {
        pb::ProgramOutput {
            room_id: "room-1".into(),
            session_id: "ses-1".into(),
            decided: Some(recording(1_000_000)),
            scene: "Recording".into(),
            media_cursor_ms: cursor,
            media_state: "playing".into(),
            confirmed,
            health: Some(pb::OutputHealth {
                streaming: true,
                skipped_frames: skipped,
                ..Default::default()
            }),
            bridge_connected: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_confirmation_is_stored_with_its_delay_from_the_decision_and_keeps_it() {
        let first = to_store(None, output(false, 0, 0), 1_000_050).unwrap();
        assert_eq!(first.delay_ms, 0, "not confirmed yet");
        let confirmed = to_store(
            Some(&(first, 1_000_050)),
            output(true, 12_150, 0),
            1_000_180,
        )
        .expect("a confirmation is news");
        assert_eq!(confirmed.delay_ms, 180);
        assert_eq!(millis(&confirmed.reported_at), 1_000_180);
        // Later heartbeats of the same decision keep the delay measured when it was confirmed.
        let later = to_store(
            Some(&(confirmed, 1_000_180)),
            output(true, 40_000, 3),
            1_030_000,
        )
        .expect("counters after 10 s");
        assert_eq!(later.delay_ms, 180);
    }

    #[test]
    fn a_re_confirmation_keeps_the_first_delay_and_stores_are_spaced() {
        let confirmed = to_store(None, output(true, 12_100, 0), 1_000_100).unwrap();
        assert_eq!(confirmed.delay_ms, 100);
        // A person overrides; OBS shows the decision again a minute later.
        let mut overridden = output(false, 12_100, 0);
        overridden.manual_override = true;
        let overridden = to_store(Some(&(confirmed, 1_000_100)), overridden, 1_001_000).unwrap();
        let again = to_store(
            Some(&(overridden, 1_001_000)),
            output(true, 70_000, 0),
            1_060_000,
        )
        .unwrap();
        assert_eq!(again.delay_ms, 100, "not the minute since the decision");
        // News 10 ms after a store waits for the bridge's next report.
        let mut news = output(true, 70_000, 0);
        news.scene = "Slate".into();
        assert_eq!(
            to_store(Some(&(again.clone(), 1_060_000)), news, 1_060_010),
            None
        );
    }

    #[test]
    fn counters_alone_are_stored_at_most_every_ten_seconds_and_news_at_once() {
        let stored = to_store(None, output(true, 12_000, 0), 1_000_000).unwrap();
        let last = (stored, 1_000_000);
        // The cursor moves and frames are skipped: not news within 10 s...
        assert_eq!(
            to_store(Some(&last), output(true, 14_000, 5), 1_002_000),
            None
        );
        // ...but after.
        assert!(to_store(Some(&last), output(true, 22_000, 5), 1_010_000).is_some());
        // A manual override, a problem, the stream going down: at once.
        let mut overridden = output(false, 14_000, 0);
        overridden.manual_override = true;
        overridden.scene = "Slate".into();
        assert!(to_store(Some(&last), overridden, 1_001_000).is_some());
        let mut problem = output(true, 14_000, 0);
        problem.problems.push(pb::PlayoutProblem {
            kind: pb::PlayoutProblemKind::ObsUnreachable as i32,
            message: "OBS unreachable".into(),
        });
        assert!(to_store(Some(&last), problem, 1_001_000).is_some());
        let mut down = output(true, 14_000, 0);
        down.health.as_mut().unwrap().streaming = false;
        assert!(to_store(Some(&last), down, 1_001_000).is_some());
        // The bridge going away is news.
        let mut gone = output(true, 12_000, 0);
        gone.bridge_connected = false;
        assert!(to_store(Some(&last), gone, 1_000_500).is_some());
    }

    #[test]
    fn a_report_s_text_is_cleaned_its_lists_bounded_and_podiumd_s_stamps_cleared() {
        let mut report = output(true, 0, 0);
        report.scene = "  Recording ".into();
        report.delay_ms = 1;
        let clean = checked(report).unwrap();
        assert_eq!(clean.scene, "Recording");
        assert_eq!(clean.delay_ms, 0, "the delay is podiumd's to measure");

        let mut forged = output(true, 0, 0);
        forged.scene = "Recording\u{202e}".into();
        let refused = checked(forged).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("output.scene"),
            "{}",
            refused.message()
        );

        let mut noisy = output(true, 0, 0);
        noisy.problems = vec![pb::PlayoutProblem::default(); MAX_PROBLEMS + 1];
        assert!(
            checked(noisy)
                .unwrap_err()
                .message()
                .contains("output.problems")
        );
    }
}
