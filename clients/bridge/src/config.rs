//! The bridge's configuration file: the room it produces, where OBS listens, which OBS scene
//! means which source, which media input plays recordings, and where local copies live.
//! Secrets (podium's token, OBS's password) come from flags or the environment.

use std::{collections::BTreeMap, path::PathBuf};

use podium_proto::v1 as pb;
use serde::Deserialize;

/// `bridge.toml`, for example:
///
/// ```toml
/// room = "room-..."
/// recordings_dir = "/var/lib/podium-bridge"
///
/// [obs]
/// address = "127.0.0.1:4455"
/// media_input = "Talk"
///
/// [scenes]
/// speaker = "Speaker"
/// backup = "Backup"
/// recording = "Recording"
/// slate = "Slate"
///
/// [scenes.speakers]
/// "spk-..." = "Camera Mei"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The room whose program this OBS produces.
    pub room: String,
    /// Where checked copies of the room's recordings are kept.
    pub recordings_dir: PathBuf,
    /// The bridge's name on the board; the machine's host name when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub obs: ObsConfig,
    pub scenes: Scenes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsConfig {
    /// obs-websocket's `host:port`, `127.0.0.1:4455` by default.
    #[serde(default = "default_obs_address")]
    pub address: String,
    /// The media input (an OBS "Media Source") that plays recordings; it belongs in the
    /// recording scene.
    pub media_input: String,
    /// obs-websocket's password. Better given as `--obs-password` or `OBS_PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_obs_address() -> String {
    "127.0.0.1:4455".to_owned()
}

/// Which OBS scene shows which source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenes {
    /// A main speaker, live.
    pub speaker: String,
    /// A backup speaker, live; the speaker scene when absent.
    #[serde(default)]
    pub backup: Option<String>,
    /// The scene holding the media input.
    pub recording: String,
    /// "Please stand by".
    pub slate: String,
    /// A scene of its own for some speakers (their camera or call), by speaker id.
    #[serde(default)]
    pub speakers: BTreeMap<String, String>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (what, value) in [
            ("room", &config.room),
            ("obs.media_input", &config.obs.media_input),
            ("scenes.speaker", &config.scenes.speaker),
            ("scenes.recording", &config.scenes.recording),
            ("scenes.slate", &config.scenes.slate),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{what} must not be empty"));
            }
        }
        crate::obs::parse_address(&config.obs.address).map_err(|e| format!("obs.address: {e}"))?;
        Ok(config)
    }

    /// The OBS scene that shows `source`.
    pub fn scene_for(&self, source: &pb::Source) -> &str {
        let scenes = &self.scenes;
        match pb::SourceKind::try_from(source.kind) {
            Ok(pb::SourceKind::Recording) => &scenes.recording,
            Ok(pb::SourceKind::Speaker) => scenes
                .speakers
                .get(&source.speaker_id)
                .unwrap_or(&scenes.speaker),
            Ok(pb::SourceKind::BackupSpeaker) => scenes
                .speakers
                .get(&source.speaker_id)
                .or(scenes.backup.as_ref())
                .unwrap_or(&scenes.speaker),
            _ => &scenes.slate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        room = "room-1"
        recordings_dir = "/tmp/r"
        [obs]
        media_input = "Talk"
        [scenes]
        speaker = "Speaker"
        recording = "Recording"
        slate = "Slate"
        [scenes.speakers]
        "spk-mei" = "Camera Mei"
    "#;

    fn source(kind: pb::SourceKind, speaker: &str) -> pb::Source {
        pb::Source {
            kind: kind as i32,
            speaker_id: speaker.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn each_source_has_its_scene() {
        let config = Config::from_toml(FILE).unwrap();
        assert_eq!(config.obs.address, "127.0.0.1:4455");
        let scene = |kind, speaker| config.scene_for(&source(kind, speaker)).to_owned();
        assert_eq!(scene(pb::SourceKind::Speaker, "spk-x"), "Speaker");
        assert_eq!(scene(pb::SourceKind::Speaker, "spk-mei"), "Camera Mei");
        // No backup scene: a backup speaker shows in the speaker scene.
        assert_eq!(scene(pb::SourceKind::BackupSpeaker, "spk-y"), "Speaker");
        assert_eq!(scene(pb::SourceKind::Recording, ""), "Recording");
        assert_eq!(scene(pb::SourceKind::Slate, ""), "Slate");
    }

    #[test]
    fn a_mistyped_key_or_an_empty_scene_is_named() {
        let typo = FILE.replace("slate =", "slat =");
        assert!(Config::from_toml(&typo).unwrap_err().contains("slat"));
        let port = FILE.replace("[obs]", "[obs]\naddress = \"127.0.0.1:44555x\"");
        assert!(
            Config::from_toml(&port)
                .unwrap_err()
                .starts_with("obs.address")
        );
        let empty = FILE.replace("\"Recording\"", "\" \"");
        assert_eq!(
            Config::from_toml(&empty).unwrap_err(),
            "scenes.recording must not be empty"
        );
    }
}
