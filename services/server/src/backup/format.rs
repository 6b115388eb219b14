//! The backup file: `podium-backup\n`, then length-delimited `podium.v1.BackupRecord`
//! messages, the last of which (`end`) counts the others and holds the SHA-256 of every byte
//! before it. [`Encoder`] writes it in memory-sized pieces for a stream; [`Decoder`] reads it
//! back and refuses a file that is cut short, damaged or from an unknown format version.

use std::io::{self, BufRead};

use podium_proto::v1::{self as pb, backup_record::Record};
use prost::Message;
use sha2::{Digest, Sha256};

/// The first bytes of every backup file.
pub const MAGIC: &[u8] = b"podium-backup\n";
/// The format this podiumd writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest record a reader accepts.
pub const MAX_RECORD_BYTES: usize = 8 << 20;
/// The largest piece of a recording file in one record.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Why a backup could not be taken or restored. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a podium backup (it does not start with \"podium-backup\")")]
    NotABackup(String),
    #[error(
        "the backup is in format version {0}; this podiumd reads version {FORMAT_VERSION} only"
    )]
    UnknownVersion(u32),
    #[error(
        "the backup ends early, after {records} records: it is truncated (was it copied whole?)"
    )]
    Truncated { records: u64 },
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Target(String),
    #[error("the server is shutting down; take the backup again once it is back")]
    ShuttingDown,
    /// A registered recording's stored file cannot be copied as it was registered.
    #[error("{0}; upload it again, or back up without the recordings")]
    Recording(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the event log refused the backup's events: {0}")]
    Log(#[from] podium_eventlog::EventLogError),
}

impl BackupError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Writes records, handing out the file's bytes in pieces of at least a given size.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
    hasher: Sha256,
    records: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A file with its magic bytes and nothing else yet.
    pub fn new() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(MAGIC);
        Self {
            buf: MAGIC.to_vec(),
            hasher,
            records: 0,
        }
    }

    /// Adds a record.
    pub fn push(&mut self, record: Record) {
        let start = self.buf.len();
        let message = pb::BackupRecord {
            record: Some(record),
        };
        message
            .encode_length_delimited(&mut self.buf)
            .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        self.hasher.update(&self.buf[start..]);
        self.records += 1;
    }

    /// The bytes written so far, once there are at least `min` of them.
    pub fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        (self.buf.len() >= min.max(1)).then(|| std::mem::take(&mut self.buf))
    }

    /// Closes the file with its `end` record; returns the last bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let end = pb::BackupEnd {
            records: self.records,
            sha256: self.hasher.finalize()[..].to_vec(),
        };
        pb::BackupRecord {
            record: Some(Record::End(end)),
        }
        .encode_length_delimited(&mut self.buf)
        .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        self.buf
    }
}

/// Reads records back, checking the whole file as it goes.
#[derive(Debug)]
pub struct Decoder<R> {
    reader: R,
    hasher: Sha256,
    records: u64,
    ended: bool,
}

impl<R: BufRead> Decoder<R> {
    /// Checks the magic bytes and reads the header, which must come first and name a format
    /// this podiumd reads. `name` is the file's, for the error.
    pub fn open(mut reader: R, name: &str) -> Result<(Self, pb::BackupHeader), BackupError> {
        let mut magic = vec![0u8; MAGIC.len()];
        match reader.read_exact(&mut magic) {
            Ok(()) if magic == MAGIC => {}
            Ok(()) => return Err(BackupError::NotABackup(name.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(BackupError::NotABackup(name.to_owned()));
            }
            Err(e) => return Err(BackupError::io(format!("reading {name}"))(e)),
        }
        let mut hasher = Sha256::new();
        hasher.update(MAGIC);
        let mut decoder = Self {
            reader,
            hasher,
            records: 0,
            ended: false,
        };
        match decoder.next()? {
            Some(Record::Header(header)) if header.format_version == FORMAT_VERSION => {
                Ok((decoder, header))
            }
            Some(Record::Header(header)) => Err(BackupError::UnknownVersion(header.format_version)),
            _ => Err(BackupError::Corrupt(
                "it does not begin with a header".into(),
            )),
        }
    }

    /// The next record; `None` once the `end` record has been read and checked, and nothing
    /// follows it.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(16);
        let len = self.read_length(&mut bytes)?;
        if len > MAX_RECORD_BYTES as u64 {
            return Err(BackupError::Corrupt(format!(
                "record {} claims {len} bytes, more than a record may hold",
                self.records + 1
            )));
        }
        let start = bytes.len();
        bytes.resize(start + len as usize, 0);
        self.read_exact(&mut bytes[start..])?;
        let record = pb::BackupRecord::decode(&bytes[start..])
            .map_err(|e| {
                BackupError::Corrupt(format!("record {} does not decode: {e}", self.records + 1))
            })?
            .record
            .ok_or_else(|| BackupError::Corrupt(format!("record {} is empty", self.records + 1)))?;
        if let Record::End(end) = record {
            let digest = self.hasher.clone().finalize();
            if end.records != self.records || end.sha256[..] != digest[..] {
                return Err(BackupError::Corrupt(format!(
                    "its closing digest does not match its {} records: bytes changed after it was written",
                    self.records
                )));
            }
            let mut rest = [0u8; 1];
            match self.reader.read(&mut rest) {
                Ok(0) => {}
                Ok(_) => {
                    return Err(BackupError::Corrupt(
                        "bytes follow its closing record".into(),
                    ));
                }
                Err(e) => return Err(BackupError::io("reading the backup")(e)),
            }
            self.ended = true;
            return Ok(None);
        }
        self.hasher.update(&bytes);
        self.records += 1;
        Ok(Some(record))
    }

    /// Records read so far, the header included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// A varint length prefix, appended to `bytes` as read.
    fn read_length(&mut self, bytes: &mut Vec<u8>) -> Result<u64, BackupError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8; 1];
            self.read_exact(&mut byte)?;
            bytes.push(byte[0]);
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BackupError::Corrupt(format!(
            "record {} has a malformed length",
            self.records + 1
        )))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                BackupError::Truncated {
                    records: self.records,
                }
            } else {
                BackupError::io("reading the backup")(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: Vec<Record>) -> Vec<u8> {
        let mut encoder = Encoder::new();
        let mut bytes = Vec::new();
        for record in records {
            encoder.push(record);
            if let Some(piece) = encoder.take(10) {
                bytes.extend(piece);
            }
        }
        bytes.extend(encoder.finish());
        bytes
    }

    fn header() -> Record {
        Record::Header(pb::BackupHeader {
            format_version: FORMAT_VERSION,
            podium_version: "0.1.0".into(),
            taken_at: None,
            log_head: 2,
            recordings_included: true,
        })
    }

    fn sample() -> Vec<Record> {
        vec![
            header(),
            Record::Key(pb::BackupKey {
                path: "token-signing.key".into(),
                secret: vec![7; 32],
            }),
            Record::Chunk(vec![1; 3000]),
        ]
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, BackupError> {
        let (mut decoder, header) = Decoder::open(bytes, "b")?;
        let mut records = vec![Record::Header(header)];
        while let Some(record) = decoder.next()? {
            records.push(record);
        }
        Ok(records)
    }

    #[test]
    fn a_file_reads_back_as_written() {
        assert_eq!(read_all(&file(sample())).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = file(sample());
        for len in 0..bytes.len() {
            let error = read_all(&bytes[..len]).unwrap_err();
            assert!(
                matches!(
                    error,
                    BackupError::Truncated { .. } | BackupError::NotABackup(_)
                ),
                "cut at {len}: {error}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = file(sample());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(read_all(&damaged).is_err(), "byte {at} changed unnoticed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let error = read_all(&longer).unwrap_err().to_string();
        assert!(error.contains("bytes follow its closing record"), "{error}");
    }

    #[test]
    fn a_strange_file_or_version_is_named() {
        let error = read_all(b"PK\x03\x04 a zip file").unwrap_err().to_string();
        assert_eq!(
            error,
            "b is not a podium backup (it does not start with \"podium-backup\")"
        );
        let mut records = sample();
        records[0] = Record::Header(pb::BackupHeader {
            format_version: 2,
            ..Default::default()
        });
        let error = read_all(&file(records)).unwrap_err().to_string();
        assert_eq!(
            error,
            "the backup is in format version 2; this podiumd reads version 1 only"
        );
        let error = read_all(&file(sample()[1..].to_vec()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "the backup is corrupt: it does not begin with a header"
        );
    }
}
