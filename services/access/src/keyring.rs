//! The keys that sign and verify tokens: the current one, and the keys rotated out that still
//! verify until their grace period ends.
//!
//! On disk, in the data directory: [`KEY_FILE`] holds the current key's secret (raw bytes, as
//! it always has), and [`RETIRED_FILE`] one line per retired key, oldest first, `<until, unix
//! seconds> <secret, hex>`, followed, for a key retired by a rotation that carried a request id,
//! by ` <request id> <until as that rotation gave it>`, so that a retry of the rotation is
//! answered as the first time (a later rotation may shorten `until`). Both are written with
//! `podium_eventlog::durable::write_private` (mode 0600, atomic, fsynced), the retired file
//! first, so that a crash between the two writes leaves the old key current and also retired,
//! which verifies the same tokens; loading drops that retired copy, so that the rotation, which
//! never finished, is not taken for done when its request is retried.
//!
//! A key's id is the first 16 hex digits of its secret's SHA-256: a token names the key that
//! signed it in its header's `kid`, and the id reveals nothing of the secret.

use std::{
    fmt::Write as _,
    fs, io,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{DecodingKey, EncodingKey};
use podium_eventlog::durable::write_private;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The current signing key's file in the data directory.
pub const KEY_FILE: &str = "token-signing.key";
/// The retired keys' file in the data directory.
pub const RETIRED_FILE: &str = "token-signing.retired";
/// Length of a generated secret, and the least a configured one may have.
pub const SECRET_LEN: usize = 32;

/// One key.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pub(crate) id: String,
    secret: Vec<u8>,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl SigningKey {
    pub(crate) fn from_secret(secret: Vec<u8>) -> Self {
        let digest = Sha256::digest(&secret);
        let id = hex::encode(&digest[..8]);
        Self {
            id,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            secret,
        }
    }

    fn generate() -> Self {
        let mut secret = vec![0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        Self::from_secret(secret)
    }
}

/// A key rotated out, verifying until `until`.
#[derive(Clone)]
pub(crate) struct Retired {
    pub(crate) key: SigningKey,
    pub(crate) until: SystemTime,
    /// The rotation that retired it, if it carried a request id.
    pub(crate) by: Option<RotatedBy>,
}

/// A rotation's request id, and the end of the retired key's grace as that rotation set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RotatedBy {
    pub(crate) request: uuid::Uuid,
    pub(crate) until: SystemTime,
}

/// What a rotation answered: the new key, the key it retired, and that key's end of grace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub key_id: String,
    pub retired_key_id: String,
    pub retired_until: SystemTime,
}

/// What a rotation for a request comes to ([`Keyring::rotation_for`]).
pub(crate) enum Rotating {
    /// The ring holds the request's rotation already: its first answer, nothing to write.
    Answered(Rotation),
    /// The ring to write, and what to answer once it is written.
    Next(Keyring, Rotation),
}

/// Which key a token's `kid` names.
pub(crate) enum Lookup<'a> {
    /// A key that verifies tokens now, and the end of its grace (`None`: the current key).
    Usable(&'a SigningKey, Option<SystemTime>),
    /// Rotated out, and its grace period has ended.
    Retired,
    /// Not a key of this server (or one dropped before it last started).
    Unknown,
}

/// The current key and the retired ones.
#[derive(Clone)]
pub(crate) struct Keyring {
    pub(crate) current: SigningKey,
    pub(crate) retired: Vec<Retired>,
}

impl Keyring {
    pub(crate) fn new(current: SigningKey) -> Self {
        Self {
            current,
            retired: Vec::new(),
        }
    }

    /// Loads the keys in `dir`, creating the current one on first start. Returns whether it
    /// was created.
    pub(crate) fn load(dir: &Path, now: SystemTime) -> io::Result<(Self, bool)> {
        let key_path = dir.join(KEY_FILE);
        let (current, created) = match fs::read(&key_path) {
            Ok(secret) if secret.len() >= SECRET_LEN => (SigningKey::from_secret(secret), false),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is shorter than {SECRET_LEN} bytes; remove it to generate a new key",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = SigningKey::generate();
                write_private(&key_path, &key.secret)?;
                (key, true)
            }
            Err(e) => return Err(e),
        };
        let retired_path = dir.join(RETIRED_FILE);
        let retired = match fs::read_to_string(&retired_path) {
            Ok(text) => parse_retired(&text).map_err(|line| {
                io::Error::other(format!(
                    "{} line {line} is not {LINE}",
                    retired_path.display()
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut ring = Self { current, retired };
        ring.retired.retain(|r| r.until > now);
        if ring
            .retired
            .last()
            .is_some_and(|r| r.key.id == ring.current.id)
        {
            // A rotation cut short between the two files: the current key verifies the same
            // tokens, for good, and a retry of that rotation rotates.
            ring.retired.pop();
        }
        Ok((ring, created))
    }

    /// The key a token's header names, or for a token without `kid` (issued before keys had
    /// ids) every usable key, current first.
    pub(crate) fn lookup(&self, kid: Option<&str>, now: SystemTime) -> Vec<Lookup<'_>> {
        let mut usable = std::iter::once((&self.current, None)).chain(
            self.retired
                .iter()
                .filter(|r| r.until > now)
                .map(|r| (&r.key, Some(r.until))),
        );
        match kid {
            Some(kid) => vec![match usable.find(|(k, _)| k.id == kid) {
                Some((key, until)) => Lookup::Usable(key, until),
                None if self.retired.iter().any(|r| r.key.id == kid) => Lookup::Retired,
                None => Lookup::Unknown,
            }],
            None => usable
                .map(|(key, until)| Lookup::Usable(key, until))
                .collect(),
        }
    }

    /// The ring after a rotation: a new current key, the old one retired until `now + grace`;
    /// keys retired before keep their grace up to that time at most, and keys past their grace
    /// are dropped. `self` is unchanged, so that nothing changes unless [`Keyring::save`]
    /// succeeds.
    pub(crate) fn rotated(
        &self,
        grace: Duration,
        now: SystemTime,
        request: Option<uuid::Uuid>,
    ) -> Keyring {
        // In whole seconds, as the retired keys' file keeps it: a retry after a restart is
        // answered with the same time as the first rotation.
        let until = whole_seconds(now + grace);
        // A rotation with no grace ends every old key's tokens.
        let mut retired: Vec<Retired> = self
            .retired
            .iter()
            .filter(|r| r.until > now)
            .map(|r| Retired {
                until: r.until.min(until),
                key: r.key.clone(),
                by: r.by,
            })
            .collect();
        retired.push(Retired {
            key: self.current.clone(),
            until,
            by: request.map(|request| RotatedBy { request, until }),
        });
        Keyring {
            current: SigningKey::generate(),
            retired,
        }
    }

    /// What a rotation for `request` comes to: its first answer, if this ring holds that
    /// rotation already (a retry), else the ring after it ([`Keyring::rotated`]) and its answer.
    pub(crate) fn rotation_for(
        &self,
        grace: Duration,
        now: SystemTime,
        request: Option<uuid::Uuid>,
    ) -> Rotating {
        if let Some(first) = request.and_then(|request| self.answer_to(request)) {
            return Rotating::Answered(first);
        }
        let next = self.rotated(grace, now, request);
        let answer = next.last_rotation().expect("a rotation retires a key");
        Rotating::Next(next, answer)
    }

    /// What the rotation with request id `request` answered, if this ring still holds the key
    /// it retired: the key after it is the one that rotation made current.
    pub(crate) fn answer_to(&self, request: uuid::Uuid) -> Option<Rotation> {
        let at = self
            .retired
            .iter()
            .position(|r| r.by.is_some_and(|by| by.request == request))?;
        let (retired, by) = (&self.retired[at], self.retired[at].by?);
        let next = self.retired.get(at + 1).map_or(&self.current, |r| &r.key);
        if next.id == retired.key.id {
            // Not a rotation that happened (see `load`).
            return None;
        }
        Some(Rotation {
            key_id: next.id.clone(),
            retired_key_id: retired.key.id.clone(),
            retired_until: by.until,
        })
    }

    /// The rotation that made this ring: its current key and the last key it retired.
    pub(crate) fn last_rotation(&self) -> Option<Rotation> {
        let retired = self.retired.last()?;
        Some(Rotation {
            key_id: self.current.id.clone(),
            retired_key_id: retired.key.id.clone(),
            retired_until: retired.until,
        })
    }

    /// Writes the ring to `dir`: the retired keys first, then the current one, so that a
    /// crash between the two leaves the old current key both current and retired.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let [(current_file, current), (retired_file, retired)] = self.files();
        write_private(&dir.join(retired_file), &retired)?;
        write_private(&dir.join(current_file), &current)
    }

    /// The ring as [`save`](Self::save) writes it: each file's name and contents.
    pub(crate) fn files(&self) -> [(&'static str, Vec<u8>); 2] {
        [
            (KEY_FILE, self.current.secret.clone()),
            (RETIRED_FILE, format_retired(&self.retired).into_bytes()),
        ]
    }
}

/// The shared secret that holds the ring on a cluster (`podium_eventlog::SharedSecrets`).
pub const SHARED_NAME: &str = "token-keyring";

impl Keyring {
    /// A ring of one new key.
    pub(crate) fn generated() -> Self {
        Self::new(SigningKey::generate())
    }

    /// The ring as one shared secret: the current secret in hex on the first line, then the
    /// retired keys as in [`RETIRED_FILE`].
    pub(crate) fn to_shared(&self) -> Vec<u8> {
        let mut text = hex::encode(&self.current.secret);
        text.push('\n');
        text.push_str(&format_retired(&self.retired));
        text.into_bytes()
    }

    /// The ring [`to_shared`](Self::to_shared) wrote. Keys past their grace are kept, so that a
    /// token they signed is refused as rotated out on every node; the next rotation drops them.
    pub(crate) fn from_shared(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "the shared key ring is not text")?;
        let (current, retired) = text.split_once('\n').unwrap_or((text, ""));
        let current = hex::decode(current.trim())
            .ok()
            .filter(|secret| secret.len() >= SECRET_LEN)
            .ok_or("the shared key ring's current key is not a hex secret")?;
        let retired = parse_retired(retired)
            .map_err(|line| format!("line {} of the shared key ring does not parse", line + 1))?;
        Ok(Self {
            current: SigningKey::from_secret(current),
            retired,
        })
    }
}

/// Checks a retired keys' file as podiumd reads it at start-up: for a restore, before podiumd
/// would refuse to start on it.
pub fn check_retired(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    parse_retired(text)
        .map(drop)
        .map_err(|line| format!("line {line} is not {LINE}"))
}

/// What a line of the retired keys' file holds, for errors.
const LINE: &str =
    "\"<unix seconds> <hex secret>\", optionally followed by \" <request id> <unix seconds>\"";

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `time` without its fraction of a second (before 1970: 1970).
fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds(time))
}

fn from_unix_seconds(text: &str) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(text.parse().ok()?))
}

fn format_retired(retired: &[Retired]) -> String {
    let mut text = String::new();
    for r in retired {
        let _ = write!(
            text,
            "{} {}",
            unix_seconds(r.until),
            hex::encode(&r.key.secret)
        );
        if let Some(by) = r.by {
            let _ = write!(text, " {} {}", by.request, unix_seconds(by.until));
        }
        text.push('\n');
    }
    text
}

/// The retired keys, or the number of the first line that does not parse.
fn parse_retired(text: &str) -> Result<Vec<Retired>, usize> {
    let mut retired = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parse = || -> Option<Retired> {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (until, hex, by) = match fields[..] {
                [until, hex] => (until, hex, None),
                [until, hex, request, first] => (until, hex, Some((request, first))),
                _ => return None,
            };
            let secret = hex::decode(hex)
                .ok()
                .filter(|secret| secret.len() >= SECRET_LEN)?;
            let by = match by {
                None => None,
                Some((request, first)) => Some(RotatedBy {
                    request: uuid::Uuid::parse_str(request).ok()?,
                    until: from_unix_seconds(first)?,
                }),
            };
            Some(Retired {
                key: SigningKey::from_secret(secret),
                until: from_unix_seconds(until)?,
                by,
            })
        };
        retired.push(parse().ok_or(index + 1)?);
    }
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_keys_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let (mut ring, created) = Keyring::load(dir.path(), now).unwrap();
        assert!(created);
        let first = ring.current.id.clone();
        ring = ring.rotated(Duration::from_secs(3600), now, None);
        ring.save(dir.path()).unwrap();
        let (again, created) = Keyring::load(dir.path(), now).unwrap();
        assert!(!created);
        assert_eq!(again.current.id, ring.current.id);
        assert_ne!(again.current.id, first);
        assert_eq!(again.retired.len(), 1);
        assert_eq!(again.retired[0].key.id, first);

        // Past its grace, a retired key is no longer loaded.
        let later = now + Duration::from_secs(3601);
        let (after, _) = Keyring::load(dir.path(), later).unwrap();
        assert!(after.retired.is_empty());
    }

    #[test]
    fn a_ring_round_trips_through_its_shared_form() {
        let now = SystemTime::now();
        let ring = Keyring::generated().rotated(Duration::from_secs(60), now, None);
        let back = Keyring::from_shared(&ring.to_shared()).unwrap();
        assert_eq!(back.current.id, ring.current.id);
        assert_eq!(back.retired.len(), 1);
        assert_eq!(back.retired[0].key.id, ring.retired[0].key.id);
        assert_eq!(
            back.retired[0]
                .until
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            ring.retired[0]
                .until
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        );
        assert!(Keyring::from_shared(b"abc").is_err());
        assert!(Keyring::from_shared(b"").is_err());
    }

    #[test]
    fn a_rotation_is_answered_again_by_its_request_id_through_file_and_shared_form() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (first, second) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let (ring, _) = Keyring::load(dir.path(), now).unwrap();
        let once = ring.rotated(Duration::from_secs(3600), now, Some(first));
        let answer = once.last_rotation().unwrap();
        assert_eq!(once.answer_to(first), Some(answer.clone()));
        assert_eq!(once.answer_to(second), None);
        // A later rotation with less grace cuts the first key's, but the first rotation's
        // answer is what it said then; a rotation without an id is never anyone's retry.
        let twice = once
            .rotated(Duration::from_secs(60), now, Some(second))
            .rotated(Duration::from_secs(60), now, None);
        twice.save(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(RETIRED_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let (loaded, _) = Keyring::load(dir.path(), now).unwrap();
        let shared = Keyring::from_shared(&twice.to_shared()).unwrap();
        for ring in [&twice, &loaded, &shared] {
            assert_eq!(ring.retired[0].until, now + Duration::from_secs(60));
            assert_eq!(ring.answer_to(first), Some(answer.clone()));
            let later = ring.answer_to(second).unwrap();
            assert_eq!(later.retired_key_id, answer.key_id);
            assert_eq!(later.key_id, ring.retired[2].key.id);
            assert_eq!(ring.retired[2].by, None);
        }
        // Files written before request ids were kept still load.
        let old = format!("1900000000 {}\n", "ab".repeat(SECRET_LEN));
        check_retired(old.as_bytes()).unwrap();
        assert!(check_retired(format!("{} x 5\n", old.trim()).as_bytes()).is_err());
        assert!(check_retired(format!("{} {first}\n", old.trim()).as_bytes()).is_err());
    }

    #[test]
    fn a_rotation_cut_short_between_its_two_files_is_not_answered_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let request = uuid::Uuid::now_v7();
        let (ring, _) = Keyring::load(dir.path(), now).unwrap();
        let next = ring.rotated(Duration::from_secs(3600), now, Some(request));
        // Only the retired keys' file reached the disk.
        let [_, (retired_file, retired)] = next.files();
        write_private(&dir.path().join(retired_file), &retired).unwrap();
        let (loaded, _) = Keyring::load(dir.path(), now).unwrap();
        assert_eq!(loaded.current.id, ring.current.id);
        assert!(loaded.retired.is_empty());
        assert_eq!(loaded.answer_to(request), None);
        // The retry rotates, and is then answered as itself.
        let retried = loaded.rotated(Duration::from_secs(3600), now, Some(request));
        assert_ne!(retried.current.id, ring.current.id);
        assert_eq!(retried.answer_to(request), retried.last_rotation());
    }

    #[test]
    fn a_broken_retired_file_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        Keyring::load(dir.path(), SystemTime::now()).unwrap();
        fs::write(dir.path().join(RETIRED_FILE), "\n12 zz\n").unwrap();
        assert!(check_retired(b"\n12 zz\n").unwrap_err().contains("line 2"));
        let huge = format!("{} {}\n", u64::MAX, "ab".repeat(SECRET_LEN));
        assert!(
            check_retired(huge.as_bytes()).is_err(),
            "no panic on a time past the end"
        );
        let error = Keyring::load(dir.path(), SystemTime::now())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
