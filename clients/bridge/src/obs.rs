//! What the bridge asks of OBS Studio, over obs-websocket 5 (the `obws` client): switch the
//! program scene, play a local file in the media input from an offset, and read back what is on
//! the program output and how healthy the output is.

use std::{path::Path, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use futures::{Stream, StreamExt};
use obws::{
    Client, common::MediaAction, events::Event, requests::inputs::SetSettings,
    responses::media_inputs::MediaState,
};
use podium_proto::v1 as pb;

/// OBS refused, or is gone.
#[derive(Debug, thiserror::Error)]
pub enum ObsError {
    #[error("{}", describe(.0))]
    Obs(Box<obws::Error>),
    #[error("no answer within {} s", ANSWER_WITHIN.as_secs())]
    Timeout,
    #[error("{0:?} is not host:port")]
    BadAddress(String),
    #[error("the media input did not start playing (it is {0})")]
    NotPlaying(&'static str),
    #[error(
        "the media input is at {got} ms after seeking to {wanted} ms: OBS seeks to the keyframe \
         before the target, so encode recordings with a keyframe every second (ffmpeg -g <fps>)"
    )]
    SeekDidNotHold { wanted: u64, got: u64 },
    #[error("OBS sent a screenshot that is not base64: {0}")]
    Screenshot(base64::DecodeError),
}

impl From<obws::Error> for ObsError {
    fn from(error: obws::Error) -> Self {
        Self::Obs(Box::new(error))
    }
}

impl ObsError {
    /// OBS is gone (or silent), as opposed to OBS answering and refusing.
    pub fn is_transport(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Obs(error) => matches!(
                **error,
                obws::Error::Disconnected
                    | obws::Error::Connect(_)
                    | obws::Error::Send(_)
                    | obws::Error::ReceiveMessage(_)
                    | obws::Error::Handshake(_)
            ),
            _ => false,
        }
    }
}

/// How long OBS has to answer a request: obws waits for ever, and a stalled OBS must not
/// hold the bridge.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// A request to OBS, or [`ObsError::Timeout`].
async fn within<T>(request: impl Future<Output = Result<T, obws::Error>>) -> Result<T, ObsError> {
    Ok(tokio::time::timeout(ANSWER_WITHIN, request)
        .await
        .map_err(|_| ObsError::Timeout)??)
}

/// `host:port` of obs-websocket.
pub fn parse_address(address: &str) -> Result<(&str, u16), ObsError> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| ObsError::BadAddress(address.to_owned()))
}

/// obws's own messages leave out what OBS said.
fn describe(error: &obws::Error) -> String {
    match error {
        obws::Error::Api { code, message } => {
            format!(
                "OBS refused ({code:?}): {}",
                message.as_deref().unwrap_or("")
            )
        }
        obws::Error::Connect(e) => format!("cannot connect: {e}"),
        other => other.to_string(),
    }
}

/// A seek that lands this close to its target held.
const SEEK_TOLERANCE_MS: u64 = 1_000;

/// One connection to obs-websocket.
pub struct Obs {
    client: Client,
}

/// The media input as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// "playing", "paused", "ended", ...
    pub state: &'static str,
    pub playing: bool,
    pub cursor_ms: u64,
}

impl Obs {
    /// Connects and identifies with `password` (none when OBS asks for none).
    pub async fn connect(address: &str, password: Option<&str>) -> Result<Self, ObsError> {
        let (host, port) = parse_address(address)?;
        let client = within(Client::connect(host, port, password)).await?;
        Ok(Self { client })
    }

    /// OBS's events; the stream ends when OBS goes away.
    pub fn events(&self) -> Result<impl Stream<Item = Event> + Send + use<>, ObsError> {
        Ok(self.client.events()?)
    }

    pub async fn program_scene(&self) -> Result<String, ObsError> {
        within(self.client.scenes().current_program_scene()).await
    }

    pub async fn switch(&self, scene: &str) -> Result<(), ObsError> {
        within(self.client.scenes().set_current_program_scene(scene)).await
    }

    /// Points `input` at `file`, plays it, and once it plays seeks to `position()` (where the
    /// talk is at that moment), in that order: OBS ignores or refuses a seek before the file is
    /// open. The seek is read back and made again if it did not hold.
    pub async fn play_from(
        &self,
        input: &str,
        file: &Path,
        position: impl Fn() -> u64,
    ) -> Result<(), ObsError> {
        // The file already playing (OBS kept it, the bridge reconnected): only seek, so that
        // a recording on air does not jump back to its start.
        if self.file(input).await? != file.display().to_string()
            || !self.media(input).await?.playing
        {
            self.start(input, file).await?;
        }
        self.seek(input, position).await
    }

    /// The media input's file.
    async fn file(&self, input: &str) -> Result<String, ObsError> {
        let settings = within(self.client.inputs().settings::<serde_json::Value>(input)).await?;
        Ok(settings.settings["local_file"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Loads `file` and waits until it plays with its first frames decoded.
    async fn start(&self, input: &str, file: &Path) -> Result<(), ObsError> {
        // Right after a new file is set OBS still reports the old one playing, and a seek
        // would be lost on it: wait for OBS to say the new playback started.
        let mut events = Box::pin(self.client.events()?);
        self.load(input, file).await?;
        let media_inputs = self.client.media_inputs();
        let started = async {
            while let Some(event) = events.next().await {
                if matches!(&event, Event::MediaInputPlaybackStarted { name } if name == input) {
                    return true;
                }
            }
            false
        };
        tokio::pin!(started);
        // The same file again does not reload: restart it.
        let started = match tokio::time::timeout(Duration::from_millis(500), &mut started).await {
            Ok(started) => started,
            Err(_) => {
                within(media_inputs.trigger_action(input, MediaAction::Restart)).await?;
                tokio::time::timeout(Duration::from_secs(5), &mut started)
                    .await
                    .unwrap_or(false)
            }
        };
        if !started {
            return Err(ObsError::NotPlaying(self.media(input).await?.state));
        }
        // A seek made before the first frames are decoded is lost: wait for the cursor to move.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let media = self.media(input).await?;
            if media.playing && media.cursor_ms > 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ObsError::NotPlaying(media.state));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Seeks to `position()` and waits until the cursor shows it.
    async fn seek(&self, input: &str, position: impl Fn() -> u64) -> Result<(), ObsError> {
        let media_inputs = self.client.media_inputs();
        // OBS seeks in its media thread: the cursor shows the seek a little later.
        for _ in 0..2 {
            within(media_inputs.set_cursor(input, time::Duration::milliseconds(position() as i64)))
                .await?;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let media = self.media(input).await?;
                if media.cursor_ms.abs_diff(position()) <= SEEK_TOLERANCE_MS {
                    return Ok(());
                }
            }
        }
        let media = self.media(input).await?;
        Err(ObsError::SeekDidNotHold {
            wanted: position(),
            got: media.cursor_ms,
        })
    }

    /// Sets the media input's file (none: `""`); a file starts playing at once.
    async fn load(&self, input: &str, file: &Path) -> Result<(), ObsError> {
        within(self.client.inputs().set_settings(SetSettings {
            input,
            settings: &media_settings(file),
            overlay: Some(true),
        }))
        .await
    }

    pub async fn media(&self, input: &str) -> Result<Media, ObsError> {
        let status = within(self.client.media_inputs().status(input)).await?;
        let state = match status.state {
            MediaState::Playing => "playing",
            MediaState::Opening => "opening",
            MediaState::Buffering => "buffering",
            MediaState::Paused => "paused",
            MediaState::Stopped => "stopped",
            MediaState::Ended => "ended",
            MediaState::Error => "error",
            _ => "none",
        };
        Ok(Media {
            state,
            playing: status.state == MediaState::Playing,
            cursor_ms: status
                .cursor
                .map_or(0, |c| c.whole_milliseconds().max(0) as u64),
        })
    }

    /// OBS's own figures of the program output.
    pub async fn health(&self) -> Result<pb::OutputHealth, ObsError> {
        let stream = within(self.client.streaming().status()).await?;
        let stats = within(self.client.general().stats()).await?;
        let record = within(self.client.recording().status()).await?;
        Ok(pb::OutputHealth {
            streaming: stream.active,
            reconnecting: stream.reconnecting,
            congestion: f64::from(stream.congestion),
            skipped_frames: u64::from(stream.skipped_frames),
            total_frames: u64::from(stream.total_frames),
            render_skipped_frames: u64::from(stats.render_skipped_frames),
            recording: record.active,
        })
    }

    /// The program scene's picture as a PNG, `width` pixels wide.
    pub async fn screenshot(&self, scene: &str, width: u32) -> Result<Vec<u8>, ObsError> {
        let data = within(self.client.sources().take_screenshot(
            obws::requests::sources::TakeScreenshot {
                source: scene,
                format: "png",
                width: Some(width),
                height: None,
                compression_quality: None,
            },
        ))
        .await?;
        let encoded = data.split_once(',').map_or(data.as_str(), |(_, b)| b);
        BASE64.decode(encoded).map_err(ObsError::Screenshot)
    }
}

/// The media source's settings for a local file, played once, kept open off air so a switch
/// shows a running picture at once.
fn media_settings(file: &Path) -> MediaSettings {
    MediaSettings {
        is_local_file: true,
        local_file: file.display().to_string(),
        looping: false,
        restart_on_activate: false,
        close_when_inactive: false,
    }
}

#[derive(Debug, serde::Serialize)]
struct MediaSettings {
    is_local_file: bool,
    local_file: String,
    looping: bool,
    restart_on_activate: bool,
    close_when_inactive: bool,
}
