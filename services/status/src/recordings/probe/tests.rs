//! The probe against real files: each container, codecs, refusals, and what pre-flight warns of.

use super::*;

/// `podium_client::placeholder_mp4` of 45 minutes (16x16 H.264, AAC), kept as a file because
/// a service does not depend on the client; the client's tests check it is that output.
pub(in crate::recordings) const TALK: &[u8] =
    include_bytes!("../../../testdata/placeholder-45min.mp4");
pub(in crate::recordings) const TALK_MS: u64 = 45 * 60 * 1000;

fn probe_bytes(bytes: &[u8]) -> Result<pb::MediaFacts, ProbeError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.part");
    fs::write(&path, bytes).unwrap();
    probe(&path)
}

fn refusal(bytes: &[u8]) -> String {
    match probe_bytes(bytes) {
        Err(ProbeError::NotPlayable(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_mp4_index_gives_the_length_codecs_and_picture() {
    let facts = probe_bytes(TALK).unwrap();
    assert_eq!(
        facts,
        pb::MediaFacts {
            container: "mp4".into(),
            duration_ms: TALK_MS,
            video_codec: "h264".into(),
            width: 16,
            height: 16,
            audio_codec: "aac".into(),
        }
    );
    assert!(playout_concerns(TALK_MS, Some(&facts), TALK_MS).is_empty());
}

#[test]
fn what_is_not_video_or_is_cut_short_is_refused_by_name() {
    assert!(refusal(b"%PDF-1.7 slides, not a talk").contains("not MP4, MOV, WebM or Matroska"));
    assert!(refusal(b"").contains("not MP4"));
    let whole = TALK;
    // Cut inside `moov`: the index runs past the end.
    assert!(refusal(&whole[..100]).contains("runs past the end of the file"));
    // `ftyp` alone: no index at all.
    assert!(refusal(&whole[..32]).contains("no index (moov box)"));
    // A broken Matroska header.
    assert!(refusal(&[0x1a, 0x45, 0xdf, 0xa3, 0xff, 0xff]).contains("Matroska"));
}

#[test]
fn oversized_or_endless_boxes_are_refused_without_reading_them() {
    // An `ftyp` that claims the rest of a large file.
    let mut endless = vec![0, 0, 0, 0];
    endless.extend(b"ftyp");
    endless.resize(1 << 20, 0);
    assert!(refusal(&endless).contains("file type box is 1048568 bytes"));
    // 100,000 empty boxes, then no index: walked, not choked on.
    let flood: Vec<u8> = (0..100_000)
        .flat_map(|_| [0, 0, 0, 8, b'f', b'r', b'e', b'e'])
        .collect();
    assert!(refusal(&flood).contains("no index (moov box)"));
    // A box whose size is smaller than its own header.
    assert!(refusal(&[0, 0, 0, 3, b'f', b't', b'y', b'p', 0, 0]).contains("impossible size (3)"));
}

#[test]
fn a_file_that_does_not_say_its_length_needs_a_declared_one() {
    use super::super::grpc::settle_duration;
    let unknown = pb::MediaFacts::default();
    let refused = settle_duration(0, &unknown).unwrap_err().to_string();
    assert!(
        refused.starts_with("duration_ms: the file does not say"),
        "{refused}"
    );
    assert_eq!(settle_duration(90_000, &unknown).unwrap(), 90_000);
    let known = pb::MediaFacts {
        duration_ms: 90_000,
        ..Default::default()
    };
    assert_eq!(settle_duration(0, &known).unwrap(), 90_000);
    assert_eq!(settle_duration(90_999, &known).unwrap(), 90_000);
    assert!(settle_duration(91_001, &known).is_err());
}

#[test]
fn media_padded_after_the_index_is_read_without_reading_the_padding() {
    let mut bytes = TALK.to_vec();
    let padding = 1u32 << 20;
    bytes.extend((padding + 8).to_be_bytes());
    bytes.extend(b"free");
    bytes.resize(bytes.len() + padding as usize, 0xab);
    assert_eq!(probe_bytes(&bytes).unwrap().duration_ms, TALK_MS);
}

proptest::proptest! {
    /// Whatever an upload holds, probing answers (facts or a refusal) and never panics:
    /// a placeholder talk with bytes overwritten anywhere, or noise behind either magic.
    #[test]
    fn any_bytes_are_answered_never_a_panic(
        edits in proptest::collection::vec((0usize..1100, proptest::num::u8::ANY), 1..12),
        noise in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
    ) {
        let mut talk = TALK.to_vec();
        for (at, byte) in &edits {
            let at = at % talk.len();
            talk[at] = *byte;
        }
        let mkv: Vec<u8> = [0x1a, 0x45, 0xdf, 0xa3].into_iter().chain(noise.iter().copied()).collect();
        let mp4: Vec<u8> = [0, 0, 0, 24].into_iter().chain(*b"ftyp").chain(noise).collect();
        for bytes in [talk, mkv, mp4] {
            match probe_bytes(&bytes) {
                Ok(_) | Err(ProbeError::NotPlayable(_)) => {}
                Err(ProbeError::Io(e)) => panic!("a readable file gave an I/O error: {e}"),
            }
        }
    }
}

#[test]
fn preflight_concerns_name_a_short_talk_silence_and_codecs_obs_may_not_play() {
    let facts = pb::MediaFacts {
        container: "matroska".into(),
        duration_ms: 30 * 60 * 1000,
        video_codec: "V_THEORA".into(),
        width: 1280,
        height: 720,
        audio_codec: String::new(),
    };
    let found = playout_concerns(facts.duration_ms, Some(&facts), 45 * 60 * 1000);
    let kinds: Vec<_> = found
        .iter()
        .map(|(c, _)| (c.kind(), c.codec.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (pb::ReadinessConcernKind::ShortRecording, ""),
            (pb::ReadinessConcernKind::VideoCodec, "V_THEORA"),
            (pb::ReadinessConcernKind::NoSound, ""),
        ]
    );
    assert_eq!(
        (found[0].0.recording_ms, found[0].0.slot_ms),
        (30 * 60_000, 45 * 60_000)
    );
    assert_eq!(
        found.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        [
            "recording plays 30 min of a 45 min slot",
            "recording's video is V_THEORA, which OBS may not play; export it as H.264",
            "recording has no sound",
        ]
    );
    // Within a minute of the slot is not short.
    let full = pb::MediaFacts {
        duration_ms: 44 * 60 * 1000 + 30_000,
        video_codec: "vp9".into(),
        audio_codec: "opus".into(),
        ..facts
    };
    assert!(playout_concerns(full.duration_ms, Some(&full), 45 * 60 * 1000).is_empty());
    // A recording older than probing is still checked for its length.
    let found = playout_concerns(20 * 60 * 1000, None, 45 * 60 * 1000);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, "recording plays 20 min of a 45 min slot");
}
