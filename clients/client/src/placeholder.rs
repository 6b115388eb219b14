//! A stand-in recording for rehearsing the control plane: [`placeholder_mp4`] builds an MP4
//! whose index says H.264 video and AAC sound of any length, around one empty sample of each.
//! podiumd probes uploads and accepts it like a real talk (its length, codecs and picture size
//! come from that index), so a rehearsal or a load test (`podium-loadgen`) can register
//! 45-minute recordings without moving 45 minutes of video. A player shows nothing: it is
//! never a talk.

use mp4_atom::{
    Audio, Avc1, Avcc, Codec, Dinf, Encode, FixedPoint, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Minf, Moov,
    Mp4a, Mvhd, Smhd, Stbl, Stco, Stsc, StscEntry, Stsd, Stsz, StszSamples, Stts, SttsEntry, Tkhd,
    Trak, Visual, Vmhd,
};

/// Width and height of the placeholder's picture, in pixels.
pub const PLACEHOLDER_SIDE: u16 = 16;

/// The bytes of an MP4 that plays for `duration_ms` milliseconds (at least 1).
pub fn placeholder_mp4(duration_ms: u64) -> Vec<u8> {
    let duration = duration_ms.max(1);
    let ftyp = Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: vec![b"isom".into(), b"avc1".into(), b"mp41".into()],
    };
    let video = Codec::Avc1(Avc1 {
        visual: Visual {
            width: PLACEHOLDER_SIDE,
            height: PLACEHOLDER_SIDE,
            ..Default::default()
        },
        avcc: Avcc {
            configuration_version: 1,
            avc_profile_indication: 66,
            avc_level_indication: 10,
            length_size: 4,
            ..Default::default()
        },
        ..Default::default()
    });
    let sound = Codec::Mp4a(Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: 1,
            sample_size: 16,
            sample_rate: FixedPoint::new(48_000, 0),
        },
        esds: Default::default(),
        btrt: None,
        taic: None,
    });
    // The one sample of each track sits in `mdat`, after `ftyp` and `moov`: the offsets in
    // `stco` need the size of everything before it, so `moov` is encoded twice.
    let moov = |mdat_data_at: u32| Moov {
        mvhd: Mvhd {
            timescale: 1000,
            duration,
            next_track_id: 3,
            ..Default::default()
        },
        trak: vec![
            track(1, duration, video.clone(), mdat_data_at),
            track(2, duration, sound.clone(), mdat_data_at + 1),
        ],
        ..Default::default()
    };
    let head = encoded(&ftyp).len() + encoded(&moov(0)).len();
    // `mdat`'s 8-byte header, then the samples.
    let data_at = u32::try_from(head + 8).expect("a placeholder's index is small");
    let mut bytes = encoded(&ftyp);
    bytes.extend(encoded(&moov(data_at)));
    bytes.extend(encoded(&Mdat { data: vec![0, 0] }));
    bytes
}

/// A track of one sample, `duration_ms` long, at byte `sample_at` of the file.
fn track(id: u32, duration_ms: u64, codec: Codec, sample_at: u32) -> Trak {
    let video = matches!(codec, Codec::Avc1(_));
    let side = FixedPoint::new(if video { PLACEHOLDER_SIDE } else { 0 }, 0);
    Trak {
        tkhd: Tkhd {
            track_id: id,
            duration: duration_ms,
            enabled: true,
            in_movie: true,
            width: side,
            height: side,
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: 1000,
                duration: duration_ms,
                language: "und".to_owned(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: if video { b"vide" } else { b"soun" }.into(),
                name: if video { "Video" } else { "Sound" }.to_owned(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf::default(),
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![codec],
                    },
                    stts: Stts {
                        entries: vec![SttsEntry {
                            sample_count: 1,
                            sample_delta: u32::try_from(duration_ms).unwrap_or(u32::MAX),
                        }],
                    },
                    stsc: Stsc {
                        entries: vec![StscEntry {
                            first_chunk: 1,
                            samples_per_chunk: 1,
                            sample_description_index: 1,
                        }],
                    },
                    stsz: Stsz {
                        samples: StszSamples::Identical { count: 1, size: 1 },
                    },
                    stco: Some(Stco {
                        entries: vec![sample_at],
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn encoded(atom: &impl Encode) -> Vec<u8> {
    let mut bytes = Vec::new();
    atom.encode(&mut bytes)
        .expect("encoding a placeholder's boxes into memory");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// podium-status's tests probe this placeholder from a file (a service does not depend on
    /// the client): it must stay exactly what this builds.
    #[test]
    fn the_status_tests_file_is_this_placeholder() {
        let kept = include_bytes!("../../../services/status/testdata/placeholder-45min.mp4");
        assert_eq!(placeholder_mp4(45 * 60 * 1000), kept.as_slice());
    }
}
