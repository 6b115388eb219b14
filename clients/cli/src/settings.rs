//! Where the CLI finds podiumd and its token: flags, then `PODIUM_ADDR` / `PODIUM_TOKEN` /
//! `PODIUM_CONFERENCE`, then the config file (`podium config path` prints where it is).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Save --addr, --token and --conference (those given) to the config file.
    Save,
    /// Print the config file's path.
    Path,
}

/// The config file's contents; every field optional.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conference: Option<String>,
}

/// `podium config`: needs no server, so it runs before the CLI connects. `given` holds only
/// what the flags and environment said, never the file's own values.
pub fn run(cmd: &ConfigCmd, given: FileSettings) -> anyhow::Result<()> {
    let path = config_path().context("no config directory for this user; set PODIUM_CONFIG")?;
    match cmd {
        ConfigCmd::Path => println!("{}", path.display()),
        ConfigCmd::Save => {
            let path = save(&given)?;
            println!("saved to {}", path.display());
        }
    }
    Ok(())
}

/// `$PODIUM_CONFIG`, else `<user config dir>/podium/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PODIUM_CONFIG") {
        return Some(PathBuf::from(path));
    }
    directories::ProjectDirs::from("", "", "podium").map(|d| d.config_dir().join("config.toml"))
}

pub fn load() -> anyhow::Result<FileSettings> {
    let Some(path) = config_path() else {
        return Ok(FileSettings::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("cannot read config file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileSettings::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// Merges `update` into the config file, which only its owner can read (it holds a token).
pub fn save(update: &FileSettings) -> anyhow::Result<PathBuf> {
    let path = config_path().context("no config directory for this user; set PODIUM_CONFIG")?;
    let mut settings = load()?;
    if update.addr.is_some() {
        settings.addr.clone_from(&update.addr);
    }
    if update.token.is_some() {
        settings.token.clone_from(&update.token);
    }
    if update.conference.is_some() {
        settings.conference.clone_from(&update.conference);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(&settings)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(path)
}
