//! The decoders of stored events, each followed by every read model podiumd keeps (the access
//! directory and token register, the agenda, the live status and the feedback model with its
//! Q&A and ratings): `stored_event` takes bytes as they would lie in the log as the entry of
//! position 0 in a chunk, `stored_chunk` a whole chunk with its framing
//! (`services/eventlog/src/sled_log/chunks/mod.rs`), both decoded by the functions replay uses.
//! The models live for the whole process, so a run of inputs builds on what came before, as a
//! replay does; they start afresh every [`MODEL_EVENTS`] events to keep memory bounded.

use std::sync::{Arc, Mutex, OnceLock};

use podium_access::{Directory, TokenRegister};
use podium_agenda::store::AgendaModel;
use podium_eventlog::{Projection, RecordedEvent, decode_chunk, decode_stored};
use podium_feedback::{FeedbackModel, domain::words::WordCounter};
use podium_status::StatusModel;

const MODEL_EVENTS: usize = 4096;

struct Models {
    words: Arc<WordCounter>,
    directory: Directory,
    tokens: TokenRegister,
    agenda: AgendaModel,
    status: StatusModel,
    feedback: FeedbackModel,
    applied: usize,
}

impl Models {
    fn new(words: Arc<WordCounter>) -> Self {
        Self {
            feedback: FeedbackModel::new(words.clone()),
            words,
            directory: Directory::default(),
            tokens: TokenRegister::default(),
            agenda: AgendaModel::default(),
            status: StatusModel::default(),
            applied: 0,
        }
    }
}

/// Decodes `data` as the stored event at position 0 and, if it decodes, applies it to every
/// read model.
pub fn stored_event(data: &[u8]) {
    if let Ok(event) = decode_stored(0, data) {
        apply(&event);
    }
}

/// Decodes `data` as a chunk: its first 8 bytes the position of the chunk's first event (big
/// endian, as in the chunk's key), the rest the chunk's value; if it decodes, applies each of
/// its events to every read model.
pub fn stored_chunk(data: &[u8]) {
    let Some((first, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    let first = u64::from_be_bytes(*first);
    if let Ok(events) = decode_chunk(first, value) {
        for (event, at) in events.iter().zip(first..=u64::MAX) {
            assert_eq!(event.position, at, "a chunk's events are consecutive");
            apply(event);
        }
    }
}

/// Folds `event` into every read model, and through the status service's own decoder.
fn apply(event: &RecordedEvent) {
    static MODELS: OnceLock<Mutex<Models>> = OnceLock::new();
    // The status service's own decoder, which the engine uses when it loads a session.
    let _ = podium_status::codec::decode(event);
    let models = MODELS.get_or_init(|| Mutex::new(Models::new(Arc::new(WordCounter::new()))));
    let mut models = models
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if models.applied >= MODEL_EVENTS {
        let words = models.words.clone();
        *models = Models::new(words);
    }
    models.applied += 1;
    models.directory.apply(event);
    models.tokens.apply(event);
    models.agenda.apply(event);
    models.status.apply(event);
    models.feedback.apply(event);
}
