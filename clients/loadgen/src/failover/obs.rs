//! `podium-loadgen failover --obs ADDR --obs-media FILE`: the same drops, carried all the way to
//! a real OBS Studio by a playout bridge (`podium_bridge`, run in this process with an
//! integration token). For each drop it measures, from the last heartbeat:
//!
//! - `seen`: a watcher sees the recording on air (as the plain scenario);
//! - `confirmed`: the watcher sees the bridge's report that OBS shows the recording scene with
//!   the media playing from the talk's position, read back from OBS;
//!
//! both minus `failover_after`, and where OBS's media cursor was when the bridge confirmed,
//! against where the talk was. The target: `confirmed` p99 within `failover_after` + 300 ms.
//!
//! OBS must run already, with the scenes and media input named by the flags (the README's
//! "Driving OBS" shows a scene collection and how to start OBS headless), and `FILE` must be a
//! real video at least ten minutes long, encoded with a keyframe every second or more often.

use std::{fmt, path::PathBuf, time::Duration};

use anyhow::Context;
use podium_client::{Client, pb};

use super::{
    Config, PATIENCE, back_to_speaker, connect, go_live, keep_alive,
    setup::{end_show, on_air, set_up},
};
use crate::{Podium, stats::Distribution};

/// Target: p99 from the link dropping to OBS confirming within failover_after + this.
pub const TARGET_MARGIN: Duration = Duration::from_millis(300);

/// The OBS to drive, and the talk it plays.
#[derive(Debug, Clone)]
pub struct ObsTarget {
    pub address: String,
    pub password: Option<String>,
    /// A real video, uploaded as the session's primary recording.
    pub media: PathBuf,
    pub media_input: String,
    pub speaker_scene: String,
    pub recording_scene: String,
    pub slate_scene: String,
}

#[derive(Debug, Clone)]
pub struct ObsReport {
    pub config: Config,
    /// Link drop to the watcher seeing the recording on air, minus failover_after (µs).
    pub seen: Distribution,
    /// Link drop to the watcher seeing OBS's confirmation, minus failover_after (µs).
    pub confirmed: Distribution,
    /// OBS's media cursor when confirmed, minus where the talk was then (µs).
    pub cursor: Distribution,
}

impl ObsReport {
    pub fn meets_target(&self) -> bool {
        self.confirmed
            .percentile(99.0)
            .is_some_and(|p99| p99 < TARGET_MARGIN.as_micros() as i64)
    }
}

impl fmt::Display for ObsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "drops           {} ({}), through a playout bridge to OBS Studio",
            self.confirmed.len(),
            self.config.mode
        )?;
        writeln!(
            f,
            "failover_after  {} ms",
            self.config.failover_after.as_millis()
        )?;
        writeln!(f, "link drop, minus failover_after (ms), until:")?;
        writeln!(f, "  the watcher sees the recording on air  {}", self.seen)?;
        writeln!(
            f,
            "  OBS confirms it (scene, media, cursor) {}",
            self.confirmed
        )?;
        writeln!(
            f,
            "OBS's cursor minus the talk's position at confirmation (ms): {}",
            self.cursor
        )?;
        write!(
            f,
            "target          p99 confirmed within failover_after + {} ms: {}",
            TARGET_MARGIN.as_millis(),
            if self.meets_target() { "met" } else { "MISSED" }
        )
    }
}

fn confirmed(s: &pb::SessionStatus, kind: pb::SourceKind) -> bool {
    s.output.as_ref().is_some_and(|o| {
        o.confirmed && o.decided.as_ref().map(|d| d.kind()) == Some(kind) && o.decided == s.source
    })
}

fn millis(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// Runs the drops through OBS; `progress` hears each drop's confirmation sample (µs).
pub async fn run(
    podium: &Podium,
    config: &Config,
    target: &ObsTarget,
    mut progress: impl FnMut(usize, i64),
) -> anyhow::Result<ObsReport> {
    let admin = connect(podium, &podium.admin_token).await?;
    let show = set_up(&admin, config.failover_after).await?;
    admin
        .upload_recording_file(
            &target.media,
            pb::RecordingHeader {
                request_id: Client::request_id(),
                conference_id: show.conference_id.clone(),
                session_id: show.session_id.clone(),
                media_type: "video/mp4".into(),
                language: "en".into(),
                file_name: "talk.mp4".into(),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .with_context(|| format!("cannot upload {}", target.media.display()))?;
    let integration = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Integration as i32,
            conference_id: show.conference_id.clone(),
            name: "podium-loadgen playout bridge".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .token;
    let (mut watcher, mut agent, live) = go_live(podium, &admin, &show).await?;

    let directory = tempfile::tempdir()?;
    let bridge_config = podium_bridge::Config {
        room: live.room_id.clone(),
        recordings_dir: directory.path().to_path_buf(),
        name: Some("podium-loadgen".into()),
        obs: podium_bridge::config::ObsConfig {
            address: target.address.clone(),
            media_input: target.media_input.clone(),
            password: None,
        },
        scenes: podium_bridge::config::Scenes {
            speaker: target.speaker_scene.clone(),
            backup: None,
            recording: target.recording_scene.clone(),
            slate: target.slate_scene.clone(),
            speakers: Default::default(),
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bridge = tokio::spawn(podium_bridge::run(
        connect(podium, &integration).await?,
        show.conference_id.clone(),
        bridge_config,
        target.password.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // The first fetch of the talk may take a while.
    watcher
        .until("OBS showing the speaker", PATIENCE * 6, |s| {
            confirmed(s, pb::SourceKind::Speaker)
                && s.output
                    .as_ref()
                    .is_some_and(|o| !o.recordings_held.is_empty())
        })
        .await?;

    let failover_us = config.failover_after.as_micros() as i64;
    let (mut seen, mut confirms, mut cursor) = (Vec::new(), Vec::new(), Vec::new());
    for drop in 1..=config.drops {
        back_to_speaker(
            &mut watcher,
            &admin,
            &show,
            "OBS showing the speaker, healthy",
            |s| confirmed(s, pb::SourceKind::Speaker),
        )
        .await?;
        tokio::time::sleep(keep_alive(drop)).await;
        let t_drop = agent.stop().await?;
        let (t_seen, fallen) = watcher
            .until(
                "the recording on air",
                config.failover_after + PATIENCE,
                |s| on_air(s) == pb::SourceKind::Recording,
            )
            .await?;
        let confirmation = watcher
            .until("OBS confirming the recording", PATIENCE, |s| {
                confirmed(s, pb::SourceKind::Recording)
            })
            .await;
        let (t_confirmed, done) = confirmation.with_context(|| {
            let output = watcher.latest.as_ref().and_then(|(_, s)| s.output.clone());
            format!("drop {drop}: the bridge last reported {output:?}")
        })?;
        seen.push((t_seen.at - t_drop.at).as_micros() as i64 - failover_us);
        let sample = (t_confirmed.at - t_drop.at).as_micros() as i64 - failover_us;
        confirms.push(sample);
        let output = done.output.unwrap_or_default();
        let source = fallen.source.unwrap_or_default();
        let talk_at =
            source.offset_ms as i64 + millis(&output.confirmed_at) - millis(&source.since);
        cursor.push((output.media_cursor_ms as i64 - talk_at) * 1000);
        progress(drop, sample);
        agent.resume().await?;
    }

    agent.close().await;
    let _ = stop.send(());
    let _ = bridge.await;
    end_show(&admin, &show).await;
    Ok(ObsReport {
        config: config.clone(),
        seen: Distribution::new(seen),
        confirmed: Distribution::new(confirms),
        cursor: Distribution::new(cursor),
    })
}
