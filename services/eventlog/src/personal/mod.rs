//! Personal data in an append-only log, erasable (crypto-shredding).
//!
//! The log is never rewritten, so a person's data cannot be deleted from it. Instead the events
//! that carry personal fields ([`Personal`]: a question's text and its author's name, a
//! rating's comment, a speaker's name and organisation, a speaker token's holder name) are
//! stored with those fields encrypted under the person's own key ([`pb::Sealed`]), and the keys
//! live in a [`KeyStore`] beside the log. Erasing a person destroys their key: every copy of the
//! log (on this node, in a backup made afterwards) then holds ciphertext that nothing can read,
//! while the events themselves, their positions and every count and tally stay as they were.
//!
//! [`SealingLog`] seals events as they are appended, so services write plain messages;
//! [`PersonalKeys::open_event`] opens them where podium reads them (the follower that feeds the
//! read models, the public feed) and writes [`ERASED`] in the fields of an erased person.
//! Events written before podium sealed anything hold plain fields: they are opened as they are,
//! and shown erased once their person is.

mod keys;

use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::{
    KeyInit as _, XChaCha20Poly1305, XNonce,
    aead::{Aead as _, Payload},
};
use podium_proto::v1 as pb;
use prost::{Message, Name};
use rand::RngCore as _;
use tokio::sync::broadcast;

pub use keys::{KeyStore, KeyStoreError, Slot, SubjectDigest, digest};

use crate::{
    AppendOutcome, CommittedBatch, EventLog, EventLogError, ExpectedVersion, NewEvent, Page,
    RecordedEvent, Result,
};

/// What a personal field says once its person is erased.
pub const ERASED: &str = "[erased]";

/// The key store's file name in the data directory.
pub const KEYS_FILE: &str = "personal.keys";

/// The file, in the data directory, that records where sealing began.
pub const SEALED_FROM_FILE: &str = "personal.sealed-from";

/// The log position from which every event is sealed: a one-time record, written (durably)
/// with `head` at the first start of a podium that seals, and read ever after. Events below it
/// may hold personal fields in plain text (written by an older podium); events from it on never
/// do. A fresh data directory records 0.
pub fn sealed_from(dir: &std::path::Path, head: u64) -> std::io::Result<u64> {
    let path = dir.join(SEALED_FROM_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            std::io::Error::other(format!("{} does not hold a position: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::durable::write_private(&path, format!("{head}\n").as_bytes())?;
            if head > 0 {
                tracing::info!(
                    head,
                    "events below this position may hold personal data in plain text (written before podium sealed it): see the README, \"Forgetting a person\""
                );
            }
            Ok(head)
        }
        Err(e) => Err(e),
    }
}

/// Whose data: the two kinds of people podium keeps personal data about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonKind {
    Attendee,
    Speaker,
}

impl PersonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attendee => "attendee",
            Self::Speaker => "speaker",
        }
    }

    pub fn to_proto(self) -> pb::PersonKind {
        match self {
            Self::Attendee => pb::PersonKind::Attendee,
            Self::Speaker => pb::PersonKind::Speaker,
        }
    }
}

/// The person of `kind` that a `PersonErased` event erased; `None` for any other event (or
/// another kind of person). What each read model folds to forget what it had opened.
pub fn erased(event: &RecordedEvent, kind: PersonKind) -> Option<pb::Person> {
    if !event.is::<pb::PersonErased>() {
        return None;
    }
    let person = event.decode::<pb::PersonErased>().ok()?.person?;
    (person.kind == kind.to_proto() as i32).then_some(person)
}

/// The subject a person's key is stored under.
pub fn subject(kind: PersonKind, conference_id: &str, person_id: &str) -> String {
    format!("{}/{conference_id}/{person_id}", kind.as_str())
}

/// An event type with personal fields.
pub trait Personal: Message + Name + Default {
    /// The person whose key seals the fields; `None` when the event is about nobody.
    fn subject(&self) -> Option<String>;
    fn sealed(&mut self) -> &mut Option<pb::Sealed>;
    /// Moves the personal fields out into a message of the same type holding only them;
    /// `None` when they are all empty.
    fn take_personal(&mut self) -> Option<Self>;
    /// Writes [`ERASED`] where the personal fields held something.
    fn mark_erased(&mut self);
    /// True when a personal field holds text: a plain event from before sealing.
    fn has_plain(&self) -> bool;
}

impl Personal for pb::QuestionAsked {
    fn subject(&self) -> Option<String> {
        Some(subject(
            PersonKind::Attendee,
            &self.conference_id,
            &self.author,
        ))
    }
    fn sealed(&mut self) -> &mut Option<pb::Sealed> {
        &mut self.personal
    }
    fn take_personal(&mut self) -> Option<Self> {
        self.has_plain().then(|| Self {
            author_name: std::mem::take(&mut self.author_name),
            text: std::mem::take(&mut self.text),
            ..Self::default()
        })
    }
    fn mark_erased(&mut self) {
        self.text = ERASED.to_owned();
        self.author_name = if self.anonymous {
            String::new()
        } else {
            ERASED.to_owned()
        };
    }
    fn has_plain(&self) -> bool {
        !self.text.is_empty() || !self.author_name.is_empty()
    }
}

impl Personal for pb::SessionRated {
    fn subject(&self) -> Option<String> {
        Some(subject(
            PersonKind::Attendee,
            &self.conference_id,
            &self.rater,
        ))
    }
    fn sealed(&mut self) -> &mut Option<pb::Sealed> {
        &mut self.personal
    }
    fn take_personal(&mut self) -> Option<Self> {
        self.has_plain().then(|| Self {
            comment: std::mem::take(&mut self.comment),
            ..Self::default()
        })
    }
    fn mark_erased(&mut self) {
        self.comment = ERASED.to_owned();
    }
    fn has_plain(&self) -> bool {
        !self.comment.is_empty()
    }
}

impl Personal for pb::SpeakerAdded {
    fn subject(&self) -> Option<String> {
        Some(subject(
            PersonKind::Speaker,
            &self.conference_id,
            &self.speaker_id,
        ))
    }
    fn sealed(&mut self) -> &mut Option<pb::Sealed> {
        &mut self.personal
    }
    fn take_personal(&mut self) -> Option<Self> {
        self.has_plain().then(|| Self {
            name: std::mem::take(&mut self.name),
            organisation: std::mem::take(&mut self.organisation),
            ..Self::default()
        })
    }
    fn mark_erased(&mut self) {
        self.name = ERASED.to_owned();
        self.organisation = String::new();
    }
    fn has_plain(&self) -> bool {
        !self.name.is_empty() || !self.organisation.is_empty()
    }
}

impl Personal for pb::TokenIssued {
    fn subject(&self) -> Option<String> {
        (!self.speaker_id.is_empty())
            .then(|| subject(PersonKind::Speaker, &self.conference_id, &self.speaker_id))
    }
    fn sealed(&mut self) -> &mut Option<pb::Sealed> {
        &mut self.personal
    }
    fn take_personal(&mut self) -> Option<Self> {
        self.has_plain().then(|| Self {
            holder_name: std::mem::take(&mut self.holder_name),
            ..Self::default()
        })
    }
    fn mark_erased(&mut self) {
        self.holder_name = ERASED.to_owned();
    }
    fn has_plain(&self) -> bool {
        !self.holder_name.is_empty()
    }
}

/// Runs `$body` with `$t` bound to the personal event type named `$event_type`; evaluates to
/// `$otherwise` for any other type.
macro_rules! for_personal_type {
    ($event_type:expr, $t:ident => $body:expr, $otherwise:expr) => {{
        let name = $event_type.strip_prefix("podium.v1.");
        if name == Some(<pb::QuestionAsked as Name>::NAME) {
            type $t = pb::QuestionAsked;
            $body
        } else if name == Some(<pb::SessionRated as Name>::NAME) {
            type $t = pb::SessionRated;
            $body
        } else if name == Some(<pb::SpeakerAdded as Name>::NAME) {
            type $t = pb::SpeakerAdded;
            $body
        } else if name == Some(<pb::TokenIssued as Name>::NAME) {
            type $t = pb::TokenIssued;
            $body
        } else {
            $otherwise
        }
    }};
}

/// True when events of `event_type` may carry personal data.
pub fn is_personal(event_type: &str) -> bool {
    for_personal_type!(event_type, _T => true, false)
}

/// What opening an event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// No personal fields, or only empty ones.
    Nothing,
    /// Plain personal fields: an event written before podium sealed them.
    Plain,
    /// Sealed fields, opened.
    Sealed,
    /// The person was erased: the fields say [`ERASED`].
    Erased,
    /// A seal that does not open (no key for it, or not this event's): the fields say
    /// [`ERASED`] too, but the person is not known to be erased, so a backup or a restore
    /// keeps the seal as it is.
    Unreadable,
}

/// The per-person keys and the cipher: seals personal fields, opens them, erases people.
#[derive(Debug)]
pub struct PersonalKeys {
    store: KeyStore,
    /// On a cluster: where the keys live, shared by every node ([`shared`]); the file then
    /// holds nothing new.
    shared: Option<Arc<crate::SharedSecrets>>,
    /// On a cluster: keys asked of it and not found, not asked again.
    missed: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn associated(subject: &str, event_type: &str) -> Vec<u8> {
    [subject.as_bytes(), b"\0", event_type.as_bytes()].concat()
}

impl PersonalKeys {
    /// Loads (or creates) the key store at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, KeyStoreError> {
        Ok(Self {
            store: KeyStore::open(path)?,
            shared: None,
            missed: Default::default(),
        })
    }

    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// True when `subject`'s key was erased.
    pub fn is_erased(&self, subject: &str) -> bool {
        matches!(self.slot(subject), Some(Slot::Erased))
    }

    /// Destroys `subject`'s key, durably: true when there was one to destroy.
    pub fn erase(&self, subject: &str) -> Result<bool, KeyStoreError> {
        self.store.erase(&digest(subject))
    }

    /// Encrypts `message`'s personal fields under its person's key (created on first use, and
    /// durable before this returns). Refused when the person was erased.
    pub fn seal<M: Personal>(&self, message: &mut M) -> Result<()> {
        let Some(subject) = message.subject() else {
            return Ok(());
        };
        let Some(personal) = message.take_personal() else {
            return Ok(());
        };
        let key = match self.slot_to_seal(&subject) {
            Ok(Slot::Key(key)) => key,
            Ok(Slot::Erased) => {
                return Err(EventLogError::Erased(format!(
                    "the personal data of {subject} was erased: podium keeps none about them any more"
                )));
            }
            Err(e) => return Err(EventLogError::Storage(e.to_string())),
        };
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&key.into());
        let aad = associated(&subject, &M::full_name());
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &personal.encode_to_vec(),
                    aad: &aad,
                },
            )
            .map_err(|_| EventLogError::InvalidAppend("sealing personal data failed".into()))?;
        *message.sealed() = Some(pb::Sealed {
            subject,
            nonce: nonce.to_vec(),
            ciphertext,
            erased: false,
        });
        Ok(())
    }

    /// Fills in `message`'s personal fields from its seal, or writes [`ERASED`] in them when its
    /// person was erased. A message that is opened has no seal left; an erased one keeps a
    /// seal with only the subject and `erased` set.
    pub fn open<M: Personal>(&self, message: &mut M) -> Opened {
        let Some(sealed) = message.sealed().take() else {
            let plain = message.has_plain();
            return match message.subject() {
                Some(subject) if plain && self.is_erased(&subject) => {
                    message.mark_erased();
                    *message.sealed() = Some(erased_mark(subject));
                    Opened::Erased
                }
                _ if plain => Opened::Plain,
                _ => Opened::Nothing,
            };
        };
        let nonce = <[u8; 24]>::try_from(sealed.nonce.as_slice()).ok();
        // A seal names its person; one that names another than the event's is not opened.
        let slot = (message.subject().as_deref() == Some(sealed.subject.as_str()))
            .then(|| self.slot(&sealed.subject))
            .flatten();
        let opened = match (slot, nonce) {
            (Some(Slot::Key(key)), Some(nonce)) => {
                let cipher = XChaCha20Poly1305::new(&key.into());
                let aad = associated(&sealed.subject, &M::full_name());
                cipher
                    .decrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: &sealed.ciphertext,
                            aad: &aad,
                        },
                    )
                    .ok()
                    .and_then(|plain| message.merge(plain.as_slice()).ok())
                    .is_some()
            }
            _ => false,
        };
        if opened {
            return Opened::Sealed;
        }
        // Erased, or no key (a store that lost it) or a seal that does not open: either way
        // nothing can be read, and readers see it erased.
        message.mark_erased();
        let erased = matches!(slot, Some(Slot::Erased));
        *message.sealed() = Some(erased_mark(sealed.subject));
        if erased {
            Opened::Erased
        } else {
            Opened::Unreadable
        }
    }

    /// [`seal`](Self::seal) on an event about to be appended; other events pass unchanged.
    pub fn seal_event(&self, event: NewEvent) -> Result<NewEvent> {
        for_personal_type!(event.event_type, T => {
            let mut message = T::decode(event.payload.as_slice())
                .map_err(|e| EventLogError::InvalidAppend(format!("{}: {e}", event.event_type)))?;
            self.seal(&mut message)?;
            Ok(NewEvent { payload: message.encode_to_vec(), ..event })
        }, Ok(event))
    }

    /// The event with its personal fields opened (see [`open`](Self::open)), or `None` when
    /// it has none to open. A payload that does not decode is left to its reader.
    pub fn open_event(&self, event: &RecordedEvent) -> Option<RecordedEvent> {
        self.open_payload(&event.event_type, &event.payload)
            .map(|(payload, _)| RecordedEvent {
                payload,
                ..event.clone()
            })
    }

    /// Leaves an erased person's fields out of `event` (the text of an event stored before
    /// podium sealed it, dead ciphertext), for a copy of the log that must not carry them: a
    /// backup, a restore. True when it did.
    pub fn drop_erased(&self, event: &mut RecordedEvent) -> bool {
        // Most events are of people not erased: nothing is decrypted for them.
        let of_erased = for_personal_type!(event.event_type, T => {
            T::decode(event.payload.as_slice()).ok().and_then(|m| m.subject()).is_some_and(|s| self.is_erased(&s))
        }, false);
        if !of_erased {
            return false;
        }
        match self.open_payload(&event.event_type, &event.payload) {
            Some((payload, Opened::Erased)) => {
                event.payload = payload;
                true
            }
            _ => false,
        }
    }

    /// The payload of an event of `event_type` opened, and what was found; `None` when there
    /// is nothing to open.
    pub fn open_payload(&self, event_type: &str, payload: &[u8]) -> Option<(Vec<u8>, Opened)> {
        for_personal_type!(event_type, T => {
            let mut message = T::decode(payload).ok()?;
            match self.open(&mut message) {
                Opened::Nothing | Opened::Plain => None,
                opened => Some((message.encode_to_vec(), opened)),
            }
        }, None)
    }
}

fn erased_mark(subject: String) -> pb::Sealed {
    pb::Sealed {
        subject,
        erased: true,
        ..pb::Sealed::default()
    }
}

/// An [`EventLog`] that seals the personal fields of every event appended through it; reads
/// pass through unchanged (sealed).
pub struct SealingLog {
    inner: Arc<dyn EventLog>,
    keys: Arc<PersonalKeys>,
}

impl SealingLog {
    pub fn new(inner: Arc<dyn EventLog>, keys: Arc<PersonalKeys>) -> Self {
        Self { inner, keys }
    }
}

#[async_trait]
impl EventLog for SealingLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        let events = if self.keys.is_shared() {
            // The keys are made on the cluster first; sealing then reads them from memory.
            self.keys.prepare(&events).await?;
            events
                .into_iter()
                .map(|e| self.keys.seal_event(e))
                .collect::<Result<Vec<_>>>()?
        } else if events.iter().any(|e| is_personal(&e.event_type)) {
            let keys = self.keys.clone();
            // Creating a key fsyncs the key store: off the runtime's threads.
            tokio::task::spawn_blocking(move || {
                events
                    .into_iter()
                    .map(|e| keys.seal_event(e))
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .map_err(|e| EventLogError::Storage(format!("sealing personal data: {e}")))??
        } else {
            events
        };
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.inner.read_stream(stream, from_version, limit).await
    }

    async fn read_page(&self, from: u64, limit: usize) -> Result<Page> {
        self.inner.read_page(from, limit).await
    }

    async fn find(&self, stream: &str, id: uuid::Uuid) -> Result<Option<(u64, u64)>> {
        self.inner.find(stream, id).await
    }

    fn head(&self) -> u64 {
        self.inner.head()
    }

    async fn head_now(&self) -> Result<u64> {
        self.inner.head_now().await
    }

    fn listen(&self) -> broadcast::Receiver<CommittedBatch> {
        self.inner.listen()
    }
}

#[cfg(test)]
mod tests;

mod shared;
