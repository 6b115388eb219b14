//! What a recording's file is. An upload is probed once its SHA-256 has been checked and before
//! it is kept: the container (MP4 and QuickTime MOV, or WebM and Matroska), how long it plays,
//! and the codecs and picture size of its first video and audio tracks. Only the containers'
//! indexes are read (an MP4's `moov` box, a Matroska file's header elements), never the media,
//! so a 4 GiB talk is probed in milliseconds. A file that is none of those, or has no video,
//! is [`NotPlayable`].
//!
//! [`playout_concerns`] turns the facts into what pre-flight warns of: a talk shorter than its
//! slot, no sound, a codec OBS Studio's FFmpeg may not decode.

use std::{
    fs,
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::Path,
};

use matroska_demuxer::{MatroskaFile, TrackType};
use mp4_atom::{Atom, Codec, Ftyp, Header, Moov, ReadAtom};
use podium_proto::v1 as pb;

/// The largest `moov` box read: a four-hour talk at 60 frames a second indexes in 4 MiB.
const MAX_MOOV_BYTES: u64 = 16 << 20;
/// The largest `ftyp` box read: a brand and a few compatible ones.
const MAX_FTYP_BYTES: u64 = 4 << 10;
/// Top-level boxes walked: a fragmented talk has two per fragment.
const MAX_BOXES: u32 = 1_000_000;

/// Why a file cannot be a recording, for the uploader.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    NotPlayable(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn refuse<T>(why: impl Into<String>) -> Result<T, ProbeError> {
    Err(ProbeError::NotPlayable(why.into()))
}

/// Reads the facts of the file at `path`. Blocking: run it on the blocking pool.
pub fn probe(path: &Path) -> Result<pb::MediaFacts, ProbeError> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut file = BufReader::new(file);
    let mut magic = [0u8; 8];
    let read = file.read(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    let facts = if read >= 4 && magic[..4] == [0x1a, 0x45, 0xdf, 0xa3] {
        matroska(file)?
    } else if read == 8 && is_mp4_box(&magic[4..]) {
        mp4(&mut file, len)?
    } else {
        return refuse(
            "the file is not MP4, MOV, WebM or Matroska video; export the talk as MP4 (H.264 and AAC) and upload that",
        );
    };
    if facts.video_codec.is_empty() {
        let container = match facts.container.as_str() {
            "mov" => "MOV",
            "webm" => "WebM",
            "matroska" => "Matroska",
            _ => "MP4",
        };
        return refuse(format!(
            "the {container} file has no video track; a recording is shown on the program output"
        ));
    }
    Ok(facts)
}

/// Top-level boxes an MP4 or QuickTime file may start with.
fn is_mp4_box(kind: &[u8]) -> bool {
    [
        b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
    ]
    .iter()
    .any(|k| kind == *k)
}

/// Walks the top-level boxes, skipping the media, and reads `moov`.
fn mp4(file: &mut BufReader<fs::File>, len: u64) -> Result<pb::MediaFacts, ProbeError> {
    let mut moov = None;
    // Old QuickTime files have no `ftyp`: MOV unless an `ftyp` says otherwise.
    let mut quicktime = true;
    let mut pos = 0u64;
    let mut boxes = 0u32;
    // A few stray bytes after the last box are not a box.
    while len - pos >= 8 {
        boxes += 1;
        if boxes > MAX_BOXES {
            return refuse(format!(
                "the MP4 file has more than {MAX_BOXES} top-level boxes"
            ));
        }
        let mut head = [0u8; 8];
        file.read_exact(&mut head)?;
        let kind = mp4_atom::FourCC::new(&[head[4], head[5], head[6], head[7]]);
        let (head_len, body) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            // To the end of the file.
            0 => (8, len - pos - 8),
            // A 64-bit size follows.
            1 if len - pos >= 16 => {
                let mut large = [0u8; 8];
                file.read_exact(&mut large)?;
                (16, u64::from_be_bytes(large).saturating_sub(16))
            }
            size if size >= 8 => (8, u64::from(size) - 8),
            size => {
                return refuse(format!(
                    "the MP4 box {kind} at byte {pos} has an impossible size ({size})"
                ));
            }
        };
        let end = (pos + head_len).checked_add(body).filter(|end| *end <= len);
        let Some(end) = end else {
            return refuse(format!(
                "the MP4 box {kind} at byte {pos} runs past the end of the file; was the upload cut short?"
            ));
        };
        let header = Header {
            kind,
            size: Some(body as usize),
        };
        if kind == Moov::KIND {
            if body > MAX_MOOV_BYTES {
                return refuse(format!(
                    "the MP4 index (moov) is {body} bytes, more than podium reads ({MAX_MOOV_BYTES})"
                ));
            }
            moov = Some(
                Moov::read_atom(&header, file)
                    .or_else(|e| refuse(format!("the MP4 index (moov) is broken ({e})")))?,
            );
        } else if kind == Ftyp::KIND {
            if body > MAX_FTYP_BYTES {
                return refuse(format!(
                    "the MP4 file type box is {body} bytes; a real one is a few dozen"
                ));
            }
            let ftyp = Ftyp::read_atom(&header, file)
                .or_else(|e| refuse(format!("the MP4 file type box is broken ({e})")))?;
            quicktime = ftyp.major_brand == b"qt  ".into();
        } else {
            // Within the buffer when boxes are small, a seek of the file when they are media.
            file.seek_relative(body as i64)?;
        }
        pos = end;
    }
    let Some(moov) = moov else {
        return refuse(
            "the MP4 file has no index (moov box): the recorder may have stopped before finishing it",
        );
    };
    let mut facts = pb::MediaFacts {
        container: if quicktime { "mov" } else { "mp4" }.to_owned(),
        // A fragmented MP4 gives its length in `mehd`, if anywhere.
        duration_ms: scaled_ms(
            match (moov.mvhd.duration, &moov.mvex) {
                (0, Some(mvex)) => mvex.mehd.as_ref().map_or(0, |m| m.fragment_duration),
                (duration, _) => duration,
            },
            moov.mvhd.timescale,
        ),
        ..Default::default()
    };
    for trak in &moov.trak {
        let Some(codec) = trak.mdia.minf.stbl.stsd.codecs.first() else {
            continue;
        };
        match &<[u8; 4]>::from(trak.mdia.hdlr.handler) {
            b"vide" if facts.video_codec.is_empty() => {
                facts.video_codec = mp4_video(codec);
                (facts.width, facts.height) = codec.visual().map_or(
                    (
                        u32::from(trak.tkhd.width.integer()),
                        u32::from(trak.tkhd.height.integer()),
                    ),
                    |v| (u32::from(v.width), u32::from(v.height)),
                );
            }
            b"soun" if facts.audio_codec.is_empty() => facts.audio_codec = mp4_audio(codec),
            _ => {}
        }
    }
    Ok(facts)
}

fn mp4_video(codec: &Codec) -> String {
    match codec {
        Codec::Avc1(_) | Codec::Avc3(_) => "h264",
        Codec::Hev1(_) | Codec::Hvc1(_) => "hevc",
        Codec::Vp08(_) => "vp8",
        Codec::Vp09(_) => "vp9",
        Codec::Av01(_) => "av1",
        Codec::Jpeg(_) => "mjpeg",
        Codec::Uncv(_) => "uncompressed",
        Codec::Unknown(kind, _) => return fourcc_codec(&(*kind).into()),
        _ => "unknown",
    }
    .to_owned()
}

/// Names the sample entries a QuickTime editor writes that mp4-atom keeps as four letters.
fn fourcc_codec(kind: &[u8; 4]) -> String {
    match kind {
        b"mp4v" => "mpeg4".to_owned(),
        b"apch" | b"apcn" | b"apcs" | b"apco" | b"ap4h" | b"ap4x" => "prores".to_owned(),
        b"mjpa" | b"mjpb" => "mjpeg".to_owned(),
        other => String::from_utf8_lossy(other).trim().to_owned(),
    }
}

fn mp4_audio(codec: &Codec) -> String {
    match codec {
        Codec::Mp4a(_) => "aac",
        Codec::Mp3(_) => "mp3",
        Codec::Opus(_) => "opus",
        Codec::Flac(_) => "flac",
        Codec::Ac3(_) => "ac3",
        Codec::Eac3(_) => "eac3",
        Codec::Ipcm(_)
        | Codec::Fpcm(_)
        | Codec::Sowt(_)
        | Codec::Twos(_)
        | Codec::Lpcm(_)
        | Codec::In24(_)
        | Codec::In32(_)
        | Codec::Fl32(_)
        | Codec::Fl64(_)
        | Codec::S16l(_) => "pcm",
        Codec::Samr(_) => "amr",
        Codec::Unknown(kind, _) => return fourcc_codec(&(*kind).into()),
        _ => "unknown",
    }
    .to_owned()
}

/// Bytes the Matroska demuxer may read: its header elements (tracks, cues, tags, chapters),
/// which for a long talk are well under a MiB. Each element it keeps costs a few dozen bytes of
/// memory, so this also bounds what a hostile file can make it hold.
const MATROSKA_READ_BUDGET: u64 = 8 << 20;

/// A reader that fails with `QuotaExceeded` once `left` bytes are read.
struct Budget<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::QuotaExceeded.into());
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..want])?;
        self.left -= read as u64;
        Ok(read)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// Reads a Matroska or WebM file's header elements.
fn matroska<R: Read + Seek>(file: R) -> Result<pb::MediaFacts, ProbeError> {
    let budget = Budget {
        inner: file,
        left: MATROSKA_READ_BUDGET,
    };
    let mkv = match MatroskaFile::open(budget) {
        Ok(mkv) => mkv,
        Err(matroska_demuxer::DemuxError::IoError(e))
            if e.kind() == io::ErrorKind::QuotaExceeded =>
        {
            return refuse(format!(
                "the Matroska file's header elements are larger than podium reads ({MATROSKA_READ_BUDGET} bytes)"
            ));
        }
        // Reading past the end, or seeking to where an element's size points beyond any
        // file, is a broken file; other I/O errors are the disk's.
        Err(matroska_demuxer::DemuxError::IoError(e))
            if !matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput
            ) =>
        {
            return Err(e.into());
        }
        Err(e) => return refuse(format!("the Matroska file is broken ({e})")),
    };
    let container = match mkv.ebml_header().doc_type() {
        "webm" => "webm",
        _ => "matroska",
    };
    // Ticks of `timestamp_scale` nanoseconds.
    let duration_ms = mkv.info().duration().map_or(0, |ticks| {
        (ticks * mkv.info().timestamp_scale().get() as f64 / 1e6).round() as u64
    });
    let mut facts = pb::MediaFacts {
        container: container.to_owned(),
        duration_ms,
        ..Default::default()
    };
    for track in mkv.tracks() {
        match track.track_type() {
            TrackType::Video if facts.video_codec.is_empty() => {
                facts.video_codec = matroska_codec(track.codec_id());
                if let Some(video) = track.video() {
                    facts.width = u32::try_from(video.pixel_width().get()).unwrap_or(u32::MAX);
                    facts.height = u32::try_from(video.pixel_height().get()).unwrap_or(u32::MAX);
                }
            }
            TrackType::Audio if facts.audio_codec.is_empty() => {
                facts.audio_codec = matroska_codec(track.codec_id());
            }
            _ => {}
        }
    }
    Ok(facts)
}

/// Matroska codec ids ("V_MPEG4/ISO/AVC", "A_OPUS") by the names MP4's use.
fn matroska_codec(id: &str) -> String {
    let name = match id {
        "V_MPEG4/ISO/AVC" => "h264",
        "V_MPEGH/ISO/HEVC" => "hevc",
        "V_VP8" => "vp8",
        "V_VP9" => "vp9",
        "V_AV1" => "av1",
        "V_MJPEG" => "mjpeg",
        "V_PRORES" => "prores",
        "V_UNCOMPRESSED" => "uncompressed",
        id if id.starts_with("V_MPEG4/ISO/") => "mpeg4",
        id if id.starts_with("A_AAC") => "aac",
        "A_OPUS" => "opus",
        "A_VORBIS" => "vorbis",
        "A_MPEG/L3" => "mp3",
        "A_FLAC" => "flac",
        "A_AC3" => "ac3",
        "A_EAC3" => "eac3",
        id if id.starts_with("A_PCM/") => "pcm",
        other => return other.chars().take(64).collect(),
    };
    name.to_owned()
}

fn scaled_ms(duration: u64, timescale: u32) -> u64 {
    if timescale == 0 {
        return 0;
    }
    u64::try_from(u128::from(duration) * 1000 / u128::from(timescale)).unwrap_or(u64::MAX)
}

/// Video codecs the FFmpeg inside OBS Studio's media source decodes on every platform OBS
/// ships for.
const OBS_VIDEO: &[&str] = &[
    "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores", "mjpeg",
];
/// The same for sound.
const OBS_AUDIO: &[&str] = &[
    "aac", "mp3", "opus", "vorbis", "flac", "pcm", "ac3", "eac3", "alac",
];

/// What pre-flight should warn of in a session's primary recording, `duration_ms` long (its
/// registered length) with `media` probed from its file (none for uploads older than probing),
/// whose slot lasts `slot_ms`. Empty when the recording is fit to go on air.
pub fn playout_concerns(
    duration_ms: u64,
    media: Option<&pb::MediaFacts>,
    slot_ms: u64,
) -> Vec<(pb::ReadinessConcern, String)> {
    use pb::ReadinessConcernKind as Kind;
    let concern = |kind: Kind, codec: &str| pb::ReadinessConcern {
        kind: kind as i32,
        codec: codec.to_owned(),
        ..Default::default()
    };
    let mut concerns = Vec::new();
    if duration_ms + 60_000 <= slot_ms {
        concerns.push((
            pb::ReadinessConcern {
                recording_ms: duration_ms,
                slot_ms,
                ..concern(Kind::ShortRecording, "")
            },
            format!(
                "recording plays {} of a {} slot",
                minutes(duration_ms),
                minutes(slot_ms)
            ),
        ));
    }
    let Some(media) = media else {
        return concerns;
    };
    if !OBS_VIDEO.contains(&media.video_codec.as_str()) {
        concerns.push((
            concern(Kind::VideoCodec, &media.video_codec),
            format!(
                "recording's video is {}, which OBS may not play; export it as H.264",
                media.video_codec
            ),
        ));
    }
    if media.audio_codec.is_empty() {
        concerns.push((
            concern(Kind::NoSound, ""),
            "recording has no sound".to_owned(),
        ));
    } else if !OBS_AUDIO.contains(&media.audio_codec.as_str()) {
        concerns.push((
            concern(Kind::AudioCodec, &media.audio_codec),
            format!(
                "recording's sound is {}, which OBS may not play; export it as AAC",
                media.audio_codec
            ),
        ));
    }
    concerns
}

/// "44 min", rounded down.
fn minutes(ms: u64) -> String {
    format!("{} min", ms / 60_000)
}

#[cfg(test)]
pub(super) mod tests;
