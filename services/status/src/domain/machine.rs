//! The failover rules: one [`Machine`] per session, fed heartbeats, connects and closes, timer
//! ticks and moderator commands, each with the time it happened, answering with the events
//! that follow. What is not persisted (heartbeat times, stretches of poor or healthy links, the
//! reconnect grace) is the [`Monitor`], rebuilt from live heartbeats.
//!
//! **While a source is pinned no rule moves it**; unpinning applies the rules at once.

use std::collections::BTreeMap;

use podium_core::{Failback, FailoverPolicy};

use super::{
    live::SessionLive,
    types::{
        Alert, AlertKind, Cause, Context, Figures, Lifecycle, LinkState, Millis, Refusal, Source,
        SourceKind, StatusEvent, Target,
    },
};

/// While a link's state holds, its figures are logged at most this often (and only when they
/// moved, see [`moved`]): a `LinkChanged` with an unchanged state.
pub const FIGURES_EVERY_MS: Millis = 5_000;

/// Whether figures moved enough to be logged again: the round trip by 10 ms and a tenth, the
/// loss by half a point, the bitrate by a tenth. Jitter of a millisecond is not news.
pub fn moved(before: &Figures, now: &Figures) -> bool {
    let by_tenth = |a: u32, b: u32| a.abs_diff(b) * 10 >= a.max(b).max(1);
    let rtt = before.round_trip_ms.abs_diff(now.round_trip_ms) >= 10
        && by_tenth(before.round_trip_ms, now.round_trip_ms);
    let loss = (before.loss_percent - now.loss_percent).abs() >= 0.5;
    rtt || loss || by_tenth(before.upstream_kbps, now.upstream_kbps)
}

/// Transient knowledge of one speaker's link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    /// The agent connection that counts (a newer one replaces it).
    pub connection: Option<u64>,
    pub last_heartbeat: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub poor_since: Option<Millis>,
    pub healthy_since: Option<Millis>,
    pub figures: Figures,
}

/// Transient knowledge of a session: heartbeat times per speaker and the reconnect grace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Monitor {
    pub tracks: BTreeMap<String, Track>,
    /// No rule fires before this time (set after a podiumd restart).
    pub grace_until: Option<Millis>,
    /// When the rules were last applied: deadlines up to then have been handled.
    pub evaluated_at: Option<Millis>,
}

/// One session's machine: its persistent status, its monitor, and the rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    pub live: SessionLive,
    pub monitor: Monitor,
}

fn is_poor(policy: &FailoverPolicy, figures: &Figures) -> bool {
    f64::from(figures.loss_percent) > f64::from(policy.max_loss_percent)
        || figures.round_trip_ms > policy.max_round_trip_ms
}

impl Machine {
    /// Applies events this machine decided (or that were read back from the log).
    pub fn apply_all(&mut self, events: &[StatusEvent]) {
        for event in events {
            self.live.apply(event);
        }
    }

    /// A restart: sessions on air keep their source until `now + grace`.
    pub fn restarted(&mut self, now: Millis, grace: Millis) {
        if self.live.lifecycle == Lifecycle::Live {
            self.monitor.grace_until = Some(now + grace);
        }
    }

    /// An agent connected for `speaker_id`; a newer connection replaces an older one, which
    /// is returned.
    pub fn connected(&mut self, speaker_id: &str, connection: u64, now: Millis) -> Option<u64> {
        let track = self
            .monitor
            .tracks
            .entry(speaker_id.to_owned())
            .or_default();
        let older = track.connection.replace(connection);
        track.closed_at = None;
        tracing::debug!(speaker_id, connection, now, "agent connected");
        older.filter(|older| *older != connection)
    }

    /// A heartbeat from the current connection of `speaker_id`.
    pub fn heartbeat(
        &mut self,
        ctx: &Context,
        speaker_id: &str,
        connection: u64,
        figures: Figures,
        now: Millis,
    ) -> Vec<StatusEvent> {
        let track = self
            .monitor
            .tracks
            .entry(speaker_id.to_owned())
            .or_default();
        if track.connection.is_none() {
            // The engine moved to this node after the agent connected (to whichever node), or
            // the connect was lost on its way: its heartbeats tell of its connection. (A
            // connection's heartbeats and its close come from one node, in order: none comes
            // after its close.)
            track.connection = Some(connection);
        }
        if track.connection != Some(connection) {
            // A replaced agent's last heartbeats count for nothing.
            return Vec::new();
        }
        if track
            .last_heartbeat
            .is_some_and(|h| now >= h + Millis::from(ctx.policy.failover_after_ms))
        {
            // Back after a silence: stability counts from now.
            track.healthy_since = None;
            track.poor_since = None;
        }
        track.last_heartbeat = Some(now);
        track.figures = figures;
        let poor = is_poor(&ctx.policy, &figures);
        if poor {
            track.poor_since.get_or_insert(now);
            track.healthy_since = None;
        } else {
            track.poor_since = None;
            track.healthy_since.get_or_insert(now);
        }
        let state = if poor {
            LinkState::Poor
        } else {
            LinkState::Healthy
        };
        let mut events = Vec::new();
        // A state that holds still has its figures sampled, so that boards show the link as it
        // is, not as it was when its state last changed.
        // (No view is Offline, never the state a heartbeat makes.)
        let log = match self.live.links.get(speaker_id) {
            Some(view) if view.state == state => {
                moved(&view.figures, &figures) && now >= view.figures_at + FIGURES_EVERY_MS
            }
            _ => true,
        };
        if log {
            events.push(StatusEvent::Link {
                speaker_id: speaker_id.to_owned(),
                state,
                figures,
                at: now,
            });
        }
        self.apply_all(&events);
        let mut more = self.evaluate(ctx, now);
        events.append(&mut more);
        events
    }

    /// The stream of `speaker_id`'s connection closed.
    pub fn closed(
        &mut self,
        ctx: &Context,
        speaker_id: &str,
        connection: u64,
        now: Millis,
    ) -> Vec<StatusEvent> {
        let Some(track) = self.monitor.tracks.get_mut(speaker_id) else {
            return Vec::new();
        };
        if track.connection != Some(connection) {
            return Vec::new();
        }
        track.connection = None;
        track.closed_at = Some(now);
        track.healthy_since = None;
        self.evaluate(ctx, now)
    }

    /// The timer: applies every rule whose time has come.
    pub fn tick(&mut self, ctx: &Context, now: Millis) -> Vec<StatusEvent> {
        self.evaluate(ctx, now)
    }

    fn silence_deadline(&self, ctx: &Context, speaker_id: &str) -> Millis {
        // Silence counts from the last heartbeat, but never from before the source went on air:
        // a speaker just switched to gets the full failover_after.
        let since = self.live.source.as_ref().map_or(0, |s| s.since);
        let last = self
            .monitor
            .tracks
            .get(speaker_id)
            .and_then(|t| t.last_heartbeat)
            .unwrap_or(since);
        let deadline = last.max(since) + Millis::from(ctx.policy.failover_after_ms);
        deadline.max(self.monitor.grace_until.unwrap_or(0))
    }

    fn evaluate(&mut self, ctx: &Context, now: Millis) -> Vec<StatusEvent> {
        self.monitor.evaluated_at = Some(self.monitor.evaluated_at.map_or(now, |e| e.max(now)));
        let mut events = Vec::new();
        // Links whose heartbeats stopped are lost, whatever is on air.
        for (speaker_id, track) in &mut self.monitor.tracks {
            if track
                .last_heartbeat
                .is_some_and(|last| now >= last + Millis::from(ctx.policy.failover_after_ms))
            {
                // Silence ends any stretch of stability or poor quality.
                track.healthy_since = None;
                track.poor_since = None;
                if matches!(
                    self.live.link_state(speaker_id),
                    LinkState::Healthy | LinkState::Poor
                ) {
                    events.push(StatusEvent::Link {
                        speaker_id: speaker_id.clone(),
                        state: LinkState::Lost,
                        figures: track.figures,
                        at: now,
                    });
                }
            }
        }
        self.apply_all(&events);
        if self.live.lifecycle != Lifecycle::Live
            || self.live.pinned
            || self.monitor.grace_until.is_some_and(|g| now < g)
        {
            return events;
        }
        let Some(source) = self.live.source.clone() else {
            return events;
        };
        let decided = match source.live_speaker() {
            Some(speaker_id) => {
                let track = self
                    .monitor
                    .tracks
                    .get(speaker_id)
                    .cloned()
                    .unwrap_or_default();
                if now >= self.silence_deadline(ctx, speaker_id) {
                    let cause = if track.connection.is_none() && track.closed_at.is_some() {
                        Cause::StreamClosed
                    } else {
                        Cause::HeartbeatTimeout
                    };
                    self.fall_back(ctx, &source, cause, track.figures, now)
                } else if track
                    .poor_since
                    .is_some_and(|p| now >= p + Millis::from(ctx.policy.poor_for_ms))
                {
                    self.fall_back(ctx, &source, Cause::PoorLink, track.figures, now)
                } else {
                    Vec::new()
                }
            }
            None => self.return_when_stable(ctx, &source, now),
        };
        self.apply_all(&decided);
        events.extend(decided);
        events
    }

    fn fall_back(
        &self,
        ctx: &Context,
        from: &Source,
        cause: Cause,
        figures: Figures,
        now: Millis,
    ) -> Vec<StatusEvent> {
        let lost = format!(
            "{} lost {} ({})",
            ctx.session_id,
            from.speaker_id,
            cause_words(cause)
        );
        let (to, kind, message) = match self.recording_source(ctx, "", now) {
            Some(to) => {
                let message = format!(
                    "{lost}: recording {} on air from {}",
                    to.recording_id,
                    clock(to.offset_ms)
                );
                (to, AlertKind::Failover, message)
            }
            None => (
                Source::slate(now),
                AlertKind::NoRecording,
                format!("{lost} and has no recording: slate on air"),
            ),
        };
        let alert = Alert {
            kind,
            message,
            at: now,
            speaker_id: from.speaker_id.clone(),
        };
        vec![
            StatusEvent::Switched {
                from: from.clone(),
                to,
                cause,
                figures,
                at: now,
                by: String::new(),
            },
            StatusEvent::Alert(alert),
        ]
    }

    fn return_when_stable(&self, ctx: &Context, source: &Source, now: Millis) -> Vec<StatusEvent> {
        if ctx.policy.failback != Failback::ReturnWhenStable {
            return Vec::new();
        }
        let Some(speaker_id) = &self.live.fell_back_from else {
            return Vec::new();
        };
        let Some(track) = self.monitor.tracks.get(speaker_id) else {
            return Vec::new();
        };
        let fresh = track
            .last_heartbeat
            .is_some_and(|h| now < h + Millis::from(ctx.policy.failover_after_ms));
        let stable = track
            .healthy_since
            .is_some_and(|h| now >= h + Millis::from(ctx.policy.clear_after_ms));
        if track.connection.is_none() || !fresh || !stable {
            return Vec::new();
        }
        let kind = if ctx.backups.contains(speaker_id) && !ctx.speakers.contains(speaker_id) {
            SourceKind::BackupSpeaker
        } else {
            SourceKind::Speaker
        };
        vec![StatusEvent::Switched {
            from: source.clone(),
            to: Source::speaker(kind, speaker_id, now),
            cause: Cause::LinkStable,
            figures: track.figures,
            at: now,
            by: String::new(),
        }]
    }

    /// The recording `id` (the first in fallback order if empty), starting where the live talk
    /// had got to, clamped to the recording's length.
    fn recording_source(&self, ctx: &Context, id: &str, now: Millis) -> Option<Source> {
        let recording = if id.is_empty() {
            ctx.recordings.first()
        } else {
            ctx.recordings.iter().find(|r| r.id == id)
        }?;
        let elapsed = now.saturating_sub(self.live.went_live_at.unwrap_or(now));
        Some(Source {
            kind: SourceKind::Recording,
            speaker_id: String::new(),
            recording_id: recording.id.clone(),
            offset_ms: elapsed.min(recording.duration_ms),
            sha256: recording.sha256.clone(),
            since: now,
        })
    }

    /// When the next rule could fire without new input, if any. Deadlines already passed at the
    /// last evaluation are not reported again: a rule that did not fire then waits for input.
    pub fn next_deadline(&self, ctx: &Context) -> Option<Millis> {
        let evaluated = self.monitor.evaluated_at;
        let mut deadlines: Vec<Millis> = self
            .monitor
            .tracks
            .iter()
            .filter(|(s, _)| {
                matches!(
                    self.live.link_state(s),
                    LinkState::Healthy | LinkState::Poor
                )
            })
            .filter_map(|(_, t)| {
                t.last_heartbeat
                    .map(|h| h + Millis::from(ctx.policy.failover_after_ms))
            })
            .collect();
        if self.live.lifecycle == Lifecycle::Live && !self.live.pinned {
            if let Some(grace) = self.monitor.grace_until {
                deadlines.push(grace);
            }
            match self.live.source.as_ref().and_then(Source::live_speaker) {
                Some(speaker_id) => {
                    deadlines.push(self.silence_deadline(ctx, speaker_id));
                    if let Some(p) = self
                        .monitor
                        .tracks
                        .get(speaker_id)
                        .and_then(|t| t.poor_since)
                    {
                        deadlines.push(p + Millis::from(ctx.policy.poor_for_ms));
                    }
                }
                None if ctx.policy.failback == Failback::ReturnWhenStable => {
                    if let Some(h) = self
                        .live
                        .fell_back_from
                        .as_ref()
                        .and_then(|s| self.monitor.tracks.get(s))
                        .and_then(|t| t.healthy_since)
                    {
                        deadlines.push(h + Millis::from(ctx.policy.clear_after_ms));
                    }
                }
                None => {}
            }
        }
        deadlines
            .into_iter()
            .filter(|d| evaluated.is_none_or(|e| *d > e))
            .min()
    }

    // ---- Moderator commands ----

    pub fn start(
        &mut self,
        ctx: &Context,
        now: Millis,
        by: &str,
    ) -> Result<Vec<StatusEvent>, Refusal> {
        match self.live.lifecycle {
            Lifecycle::Live => return Err(Refusal::AlreadyLive(ctx.session_id.clone())),
            Lifecycle::Ended => return Err(Refusal::Ended(ctx.session_id.clone())),
            Lifecycle::Scheduled => {}
        }
        let source = match (ctx.speakers.first(), ctx.recordings.first()) {
            (Some(speaker), _) => Source::speaker(SourceKind::Speaker, speaker, now),
            (None, Some(_)) => {
                let mut source = self
                    .recording_source(ctx, "", now)
                    .unwrap_or_else(|| Source::slate(now));
                source.offset_ms = 0;
                source
            }
            (None, None) => Source::slate(now),
        };
        let events = vec![StatusEvent::WentLive {
            source,
            at: now,
            by: by.to_owned(),
        }];
        self.apply_all(&events);
        Ok(events)
    }

    pub fn end(
        &mut self,
        ctx: &Context,
        now: Millis,
        by: &str,
    ) -> Result<Vec<StatusEvent>, Refusal> {
        match self.live.lifecycle {
            Lifecycle::Live => {}
            Lifecycle::Scheduled => return Err(Refusal::NotLive(ctx.session_id.clone())),
            Lifecycle::Ended => return Err(Refusal::Ended(ctx.session_id.clone())),
        }
        let events = vec![StatusEvent::Ended {
            at: now,
            by: by.to_owned(),
        }];
        self.apply_all(&events);
        Ok(events)
    }

    pub fn switch(
        &mut self,
        ctx: &Context,
        target: &Target,
        now: Millis,
        by: &str,
    ) -> Result<Vec<StatusEvent>, Refusal> {
        if self.live.lifecycle != Lifecycle::Live {
            return Err(match self.live.lifecycle {
                Lifecycle::Ended => Refusal::Ended(ctx.session_id.clone()),
                _ => Refusal::NotLive(ctx.session_id.clone()),
            });
        }
        let pick = |list: &[String], id: &str, what: &str| -> Result<String, Refusal> {
            if id.is_empty() {
                list.first().cloned().ok_or_else(|| {
                    Refusal::NoSpeaker(format!("session {} has no {what}", ctx.session_id))
                })
            } else if list.iter().any(|s| s == id) {
                Ok(id.to_owned())
            } else {
                Err(Refusal::UnknownSpeaker(format!(
                    "{id} is not a {what} of session {}",
                    ctx.session_id
                )))
            }
        };
        let to = match target {
            Target::Speaker(id) => Source::speaker(
                SourceKind::Speaker,
                &pick(&ctx.speakers, id, "speaker")?,
                now,
            ),
            Target::BackupSpeaker(id) => Source::speaker(
                SourceKind::BackupSpeaker,
                &pick(&ctx.backups, id, "backup speaker")?,
                now,
            ),
            Target::Recording(id) => self.recording_source(ctx, id, now).ok_or_else(|| {
                Refusal::UnknownRecording(if id.is_empty() {
                    format!("session {} has no recording", ctx.session_id)
                } else {
                    format!("recording {id} not found for session {}", ctx.session_id)
                })
            })?,
            Target::Slate => Source::slate(now),
        };
        let from = self
            .live
            .source
            .clone()
            .unwrap_or_else(|| Source::slate(now));
        let figures = self
            .monitor
            .tracks
            .get(&from.speaker_id)
            .map(|t| t.figures)
            .unwrap_or_default();
        let events = vec![StatusEvent::Switched {
            from,
            to,
            cause: Cause::Moderator,
            figures,
            at: now,
            by: by.to_owned(),
        }];
        self.apply_all(&events);
        Ok(events)
    }

    /// Pins or unpins. Unpinning applies the rules at once: a link that failed while pinned
    /// falls back now.
    pub fn pin(&mut self, ctx: &Context, pinned: bool, now: Millis, by: &str) -> Vec<StatusEvent> {
        if self.live.pinned == pinned {
            return Vec::new();
        }
        let mut events = vec![StatusEvent::Pinned {
            pinned,
            at: now,
            by: by.to_owned(),
        }];
        self.apply_all(&events);
        if !pinned {
            events.extend(self.evaluate(ctx, now));
        }
        events
    }
}

fn cause_words(cause: Cause) -> &'static str {
    match cause {
        Cause::HeartbeatTimeout => "heartbeats stopped",
        Cause::StreamClosed => "connection closed",
        Cause::PoorLink => "poor link",
        Cause::Moderator => "moderator",
        Cause::LinkStable => "link stable",
        Cause::SessionStarted => "session started",
    }
}

/// "12:34" (minutes:seconds) or "1:02:03".
fn clock(ms: Millis) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
