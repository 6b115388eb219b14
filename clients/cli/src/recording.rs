//! `podium recording upload|fetch|list|delete`: pre-recorded talks, the fallback when a speaker's link
//! drops. Uploads hash the file first (one pass), then stream it; fetches write `FILE.part`,
//! check the SHA-256 and rename. On a terminal a progress bar shows bytes and rate; otherwise a
//! plain line every tenth of the way. The recording id (or the file written) goes to stdout,
//! details to stderr.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use podium_client::{Client, Progress, TransferError, hash_file, pb};

use crate::{Ctx, output::table};

#[derive(Debug, Subcommand)]
pub enum RecordingCmd {
    /// Upload a session's pre-recorded talk (organiser). Prints the recording id.
    Upload {
        /// The file, e.g. talk.mp4.
        file: PathBuf,
        /// The session it is the fallback for.
        #[arg(long)]
        session: String,
        /// Length of the talk (45m, 2700s, 1h30m or 00:45:00), checked against the file's
        /// to within a second. podiumd reads it from the file; give it only for a file that
        /// does not say (a Matroska recording that was cut off).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<u64>,
        /// Media type, e.g. video/mp4; guessed from the file's extension if omitted.
        #[arg(long)]
        media_type: Option<String>,
        /// Spoken language, e.g. km; the conference's default if omitted.
        #[arg(long)]
        language: Option<String>,
        /// A caption track, LANG or LANG:LABEL, e.g. km:"Khmer subtitles"; repeatable.
        #[arg(long = "caption", value_parser = parse_caption)]
        captions: Vec<pb::CaptionTrack>,
        /// Add it after the session's other recordings instead of making it the primary.
        #[arg(long)]
        backup: bool,
    },
    /// Download a recording and check its SHA-256 (staff, or the session's speakers).
    Fetch {
        /// The recording id, e.g. rec-3f9a0c21d4.
        recording: String,
        /// Where to write it; by default the uploaded file's name, else the recording id.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue an interrupted download (FILE.part) instead of starting again.
        #[arg(long)]
        resume: bool,
    },
    /// List the conference's recordings, each session's primary first (staff).
    List {
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
    },
    /// Delete a recording (organiser), not while it is on air. Its file leaves the disk once
    /// no other recording has the same content.
    Delete {
        /// The recording id, e.g. rec-3f9a0c21d4.
        recording: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: RecordingCmd) -> anyhow::Result<()> {
    match cmd {
        RecordingCmd::Upload {
            file,
            session,
            duration,
            media_type,
            language,
            captions,
            backup,
        } => {
            upload(
                ctx,
                &file,
                pb::RecordingHeader {
                    request_id: Client::request_id(),
                    conference_id: ctx.conference().await?,
                    session_id: session,
                    sha256: String::new(),
                    size_bytes: 0,
                    media_type: media_type.unwrap_or_else(|| guess_media_type(&file).to_owned()),
                    duration_ms: duration.unwrap_or(0),
                    language: language.unwrap_or_default(),
                    captions,
                    file_name: file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    backup,
                },
            )
            .await
        }
        RecordingCmd::Fetch {
            recording,
            out,
            resume,
        } => fetch(ctx, &recording, out, resume).await,
        RecordingCmd::List { session } => list(ctx, session).await,
        RecordingCmd::Delete { recording } => delete(ctx, &recording).await,
    }
}

async fn delete(ctx: &Ctx, recording_id: &str) -> anyhow::Result<()> {
    let deleted = ctx
        .client
        .recordings()
        .delete_recording(pb::DeleteRecordingRequest {
            request_id: Client::request_id(),
            conference_id: ctx.conference().await?,
            recording_id: recording_id.to_owned(),
        })
        .await?
        .into_inner();
    if ctx.out.json(&deleted) {
        return Ok(());
    }
    if let Some(r) = &deleted.recording {
        eprintln!(
            "deleted {} of session {} ({}, {}); its file goes once no other recording has the same content",
            r.id,
            r.session_id,
            r.file_name,
            human_bytes(r.size_bytes)
        );
    }
    println!("{recording_id}");
    Ok(())
}

async fn upload(ctx: &Ctx, file: &Path, mut header: pb::RecordingHeader) -> anyhow::Result<()> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("{}", file.display()))?
        .len();
    // An unknown session or conference is refused now, not after hashing a large file.
    ctx.client
        .recordings()
        .list_recordings(pb::ListRecordingsRequest {
            conference_id: header.conference_id.clone(),
            session_id: header.session_id.clone(),
        })
        .await?;
    let (progress, bar) = meter("hashing", size);
    let (sha256, size) = hash_file(file, progress).await.map_err(transfer_error)?;
    finish(bar);
    header.sha256 = sha256;
    header.size_bytes = size;
    let started = Instant::now();
    let (progress, bar) = meter("uploading", size);
    let uploaded = ctx
        .client
        .upload_recording_file(file, header, progress)
        .await;
    finish(bar);
    let recording = uploaded.map_err(transfer_error)?;
    if ctx.out.json(&pb::UploadRecordingResponse {
        recording: Some(recording.clone()),
    }) {
        return Ok(());
    }
    // The id alone on stdout, so that `REC=$(podium recording upload ...)` works.
    println!("{}", recording.id);
    eprintln!(
        "uploaded {} as {} for session {} ({}): {}, {}, {}, {}, sha256 {}{}",
        file.display(),
        recording.id,
        recording.session_id,
        order(recording.order),
        clock_length(recording.duration_ms),
        media(&recording),
        human_bytes(recording.size_bytes),
        rate(recording.size_bytes, started),
        recording.sha256,
        captions(&recording.captions)
            .map(|c| format!(", captions {c}"))
            .unwrap_or_default()
    );
    Ok(())
}

async fn fetch(
    ctx: &Ctx,
    recording_id: &str,
    out: Option<PathBuf>,
    resume: bool,
) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let out = match out {
        Some(out) => out,
        None => {
            let out = default_out(ctx, &conference_id, recording_id).await;
            if out.exists() {
                bail!(
                    "{} exists; name another file with --out (or --out {} to replace it)",
                    out.display(),
                    out.display()
                );
            }
            out
        }
    };
    let started = Instant::now();
    let (progress, bar) = meter("fetching", 0);
    let fetched = ctx
        .client
        .fetch_recording_file(&conference_id, recording_id, &out, resume, progress)
        .await;
    finish(bar);
    let fetched = fetched.map_err(transfer_error)?;
    if ctx.out.json {
        let json = serde_json::json!({
            "recordingId": recording_id,
            "path": fetched.path.display().to_string(),
            "sizeBytes": fetched.size_bytes.to_string(),
            "sha256": fetched.sha256,
            "resumedFrom": fetched.resumed_from.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("{}", fetched.path.display());
    let resumed = if fetched.resumed_from > 0 {
        format!(", resumed after {}", human_bytes(fetched.resumed_from))
    } else {
        String::new()
    };
    eprintln!(
        "fetched {recording_id} to {}: {}, {}, sha256 {} verified{resumed}",
        fetched.path.display(),
        human_bytes(fetched.size_bytes),
        rate(fetched.size_bytes - fetched.resumed_from, started),
        fetched.sha256,
    );
    Ok(())
}

/// The uploaded file's name (its last component only) if the token may list recordings,
/// else the recording id.
async fn default_out(ctx: &Ctx, conference_id: &str, recording_id: &str) -> PathBuf {
    let listed = ctx
        .client
        .recordings()
        .list_recordings(pb::ListRecordingsRequest {
            conference_id: conference_id.to_owned(),
            session_id: String::new(),
        })
        .await;
    listed
        .ok()
        .and_then(|list| {
            list.into_inner()
                .recordings
                .into_iter()
                .find(|r| r.id == recording_id)
        })
        .and_then(|r| {
            Path::new(&r.file_name)
                .file_name()
                .map(|name| PathBuf::from(name.to_owned()))
        })
        .unwrap_or_else(|| PathBuf::from(recording_id))
}

async fn list(ctx: &Ctx, session: Option<String>) -> anyhow::Result<()> {
    let list = ctx
        .client
        .recordings()
        .list_recordings(pb::ListRecordingsRequest {
            conference_id: ctx.conference().await?,
            session_id: session.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if ctx.out.json(&list) {
        return Ok(());
    }
    if list.recordings.is_empty() {
        println!("no recordings yet; add one with `podium recording upload FILE --session S`");
        return Ok(());
    }
    let mut t = table(&[
        "Recording",
        "Session",
        "Order",
        "Length",
        "Size",
        "Media",
        "Language",
        "Captions",
        "File",
        "SHA-256",
    ]);
    for r in &list.recordings {
        t.add_row(vec![
            r.id.clone(),
            r.session_id.clone(),
            order(r.order),
            clock_length(r.duration_ms),
            human_bytes(r.size_bytes),
            media(r),
            r.language.clone(),
            captions(&r.captions).unwrap_or_default(),
            r.file_name.clone(),
            r.sha256.chars().take(12).collect::<String>() + "…",
        ]);
    }
    println!("{t}");
    Ok(())
}

/// What the file is, as podiumd probed it: "mp4 h264 1920x1080 aac".
fn media(r: &pb::Recording) -> String {
    let Some(m) = &r.media else {
        return format!("{} (not probed)", r.media_type);
    };
    let sound = if m.audio_codec.is_empty() {
        "no sound"
    } else {
        &m.audio_codec
    };
    format!(
        "{} {} {}x{} {sound}",
        m.container, m.video_codec, m.width, m.height
    )
}

/// A progress callback: a bar with bytes and rate when stderr is a terminal, otherwise a plain
/// line at every tenth. The bar, if any, is returned to be cleared at the end.
fn meter(
    verb: &'static str,
    total: u64,
) -> (impl FnMut(Progress) + Send + 'static, Option<ProgressBar>) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>9} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(verb);
        bar
    });
    let shown = bar.clone();
    let started = Instant::now();
    let mut next_tenth = 1;
    let progress = move |p: Progress| {
        if let Some(bar) = &shown {
            bar.set_length(p.total);
            bar.set_position(p.done);
            return;
        }
        let tenth = p.done.saturating_mul(10).checked_div(p.total).unwrap_or(10);
        if tenth >= next_tenth {
            eprintln!(
                "{verb} {} of {} ({}%), {}",
                human_bytes(p.done),
                human_bytes(p.total),
                tenth * 10,
                rate(p.done, started)
            );
            next_tenth = tenth + 1;
        }
    };
    (progress, bar)
}

/// The server's refusals as `tonic::Status`, which `main` prints with their code.
pub(crate) fn transfer_error(error: TransferError) -> anyhow::Error {
    match error {
        TransferError::Rpc(status) => status.into(),
        other => other.into(),
    }
}

fn finish(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn rate(bytes: u64, since: Instant) -> String {
    let seconds = since.elapsed().as_secs_f64().max(0.001);
    format!("{}/s", human_bytes((bytes as f64 / seconds) as u64))
}

fn order(order: u32) -> String {
    if order == 0 {
        "primary".into()
    } else {
        format!("backup {order}")
    }
}

fn captions(tracks: &[pb::CaptionTrack]) -> Option<String> {
    (!tracks.is_empty()).then(|| {
        tracks
            .iter()
            .map(|c| {
                if c.label.is_empty() {
                    c.language.clone()
                } else {
                    format!("{} ({})", c.language, c.label)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// 1.5 GiB, 200.0 MiB, 512 B.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// 2700000 ms -> 00:45:00.
fn clock_length(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `45m`, `2700s`, `1h30m`, `90s`, `1500ms`, `00:45:00` or `45:00` (minutes:seconds), in
/// milliseconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a length; use 45m, 2700s, 1h30m or 00:45:00");
    let ms = if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let mut seconds = 0u64;
        for (i, part) in parts.iter().enumerate() {
            let n: u64 = part
                .parse()
                .ok()
                .filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(bad)?;
            if i > 0 && n >= 60 {
                return Err(bad());
            }
            seconds = seconds
                .checked_mul(60)
                .and_then(|s| s.checked_add(n))
                .ok_or_else(bad)?;
        }
        seconds.checked_mul(1000).ok_or_else(bad)?
    } else {
        let mut total = 0u64;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let (unit, len) = if rest.starts_with("ms") {
                (1, 2)
            } else if rest.starts_with('h') {
                (3_600_000, 1)
            } else if rest.starts_with('m') {
                (60_000, 1)
            } else if rest.starts_with('s') {
                (1000, 1)
            } else {
                return Err(bad());
            };
            rest = &rest[len..];
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        total
    };
    if ms == 0 {
        return Err(format!("{text:?}: the length must be more than 0"));
    }
    Ok(ms)
}

/// `km` or `km:Khmer subtitles`.
fn parse_caption(text: &str) -> Result<pb::CaptionTrack, String> {
    let (language, label) = text.split_once(':').unwrap_or((text, ""));
    let language = language.trim();
    if language.is_empty() {
        return Err(format!(
            "{text:?}: give a language, e.g. km or km:\"Khmer subtitles\""
        ));
    }
    Ok(pb::CaptionTrack {
        language: language.to_owned(),
        label: label.trim().to_owned(),
    })
}

/// The media type of common audio and video files; a byte stream otherwise.
fn guess_media_type(file: &Path) -> &'static str {
    let extension = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "ts" => "video/mp2t",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "flac" => "audio/flac",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_as_units_or_clock_times() {
        let ok = [
            ("45m", 2_700_000),
            ("2700s", 2_700_000),
            ("00:45:00", 2_700_000),
            ("45:00", 2_700_000),
            ("1h30m", 5_400_000),
            ("1h5m30s", 3_930_000),
            ("1500ms", 1500),
            (" 90s ", 90_000),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text), Ok(ms), "{text}");
        }
        for bad in [
            "", "45", "45 min", "m", "1:60", "1:2:3:4", "0s", "00:00:00", "-5m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn captions_take_an_optional_label() {
        let c = parse_caption("km:Khmer subtitles").unwrap();
        assert_eq!(
            (c.language.as_str(), c.label.as_str()),
            ("km", "Khmer subtitles")
        );
        let c = parse_caption("en").unwrap();
        assert_eq!((c.language.as_str(), c.label.as_str()), ("en", ""));
        assert!(parse_caption(":label").is_err());
    }

    #[test]
    fn media_types_are_guessed_from_the_extension() {
        assert_eq!(guess_media_type(Path::new("talk.MP4")), "video/mp4");
        assert_eq!(guess_media_type(Path::new("talk.webm")), "video/webm");
        assert_eq!(
            guess_media_type(Path::new("talk")),
            "application/octet-stream"
        );
    }

    #[test]
    fn sizes_and_lengths_read_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(200 << 20), "200.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(clock_length(2_700_000), "00:45:00");
        assert_eq!(order(0), "primary");
        assert_eq!(order(2), "backup 2");
    }
}
