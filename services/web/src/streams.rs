//! How many live streams (Server-Sent Events) the pages hold open for one sign-in at once. A
//! page opens one; a person has a few tabs, a projector token a screen per room. Without a
//! bound, one token could hold as many connections as the operating system allows.
//!
//! At the bound, a new stream ends the sign-in's oldest instead of being refused: a phone that
//! left the venue's Wi-Fi holds its stream until TCP gives up (many minutes), and a page that
//! is really open reconnects by itself (`EventSource` does), so refusing the newest would freeze
//! the live pages and keep the dead ones.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures::{Stream, StreamExt};
use podium_access::Principal;
use tokio::sync::Notify;

use crate::{Web, session::Visitor};

/// The open streams of each sign-in, oldest first, and how many one may have.
#[derive(Debug)]
pub struct LiveStreams {
    limit: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    /// Each open stream's `ended`, by sign-in: the `Arc` is the stream's identity.
    by_sign_in: HashMap<String, VecDeque<Arc<Notify>>>,
}

/// One open stream: held by the stream, let go when the connection ends; `ended` is notified
/// when a newer stream of the same sign-in takes its place.
#[derive(Debug)]
pub struct Permit {
    streams: Arc<LiveStreams>,
    key: String,
    ended: Arc<Notify>,
}

/// A permit for one more live stream of the visitor's sign-in, ending its oldest stream when
/// it holds the limit; `None` for a visitor who is not signed in (who opens no stream).
pub fn admit(web: &Web, visitor: &Visitor) -> Option<Permit> {
    visitor
        .principal
        .as_ref()
        .map(|principal| web.live_streams.admit(principal))
}

/// `stream`, holding `permit` while it is open, and ending when the permit's place is taken.
pub fn holding<S: Stream>(stream: S, permit: Option<Permit>) -> impl Stream<Item = S::Item> {
    let ended = permit.as_ref().map(|p| p.ended.clone());
    stream
        .take_until(async move {
            match ended {
                Some(ended) => ended.notified().await,
                None => std::future::pending().await,
            }
        })
        .map(move |item| {
            let _open = &permit;
            item
        })
}

impl LiveStreams {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::default(),
        })
    }

    /// A permit for one more stream of `principal`'s sign-in (its token, or who it is for a
    /// secret without a token id). At the limit, the sign-in's oldest stream is told to end.
    pub fn admit(self: &Arc<Self>, principal: &Principal) -> Permit {
        let key = match &principal.token_id {
            Some(token) => format!("token:{token}"),
            None => format!("principal:{}", principal.id),
        };
        let ended = Arc::new(Notify::new());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.by_sign_in.entry(key.clone()).or_default();
        if held.len() >= self.limit
            && let Some(oldest) = held.pop_front()
        {
            // Stored if the stream is not waiting right now: it ends at its next poll.
            oldest.notify_one();
        }
        held.push_back(ended.clone());
        Permit {
            streams: self.clone(),
            key,
            ended,
        }
    }

    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.by_sign_in.get(key).map_or(0, VecDeque::len)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = open.by_sign_in.get_mut(&self.key) {
            held.retain(|ended| !Arc::ptr_eq(ended, &self.ended));
            if held.is_empty() {
                open.by_sign_in.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use podium_access::Role;

    use super::*;

    fn principal(token: &str) -> Principal {
        Principal {
            id: "att-1".into(),
            name: String::new(),
            role: Role::Attendee,
            conference_id: Some("odc2024".into()),
            speaker_id: None,
            expires_at: None,
            token_id: Some(token.into()),
        }
    }

    #[tokio::test]
    async fn a_new_stream_beyond_the_limit_ends_the_oldest_and_nothing_stays_behind() {
        let streams = LiveStreams::new(2);
        let stream = |permit| Box::pin(holding(futures::stream::pending::<()>(), Some(permit)));
        let mut first = stream(streams.admit(&principal("tok-a")));
        let mut second = stream(streams.admit(&principal("tok-a")));
        let mut others = stream(streams.admit(&principal("tok-b")));
        let mut third = stream(streams.admit(&principal("tok-a")));
        assert_eq!(first.next().await, None, "the oldest ended");
        for open in [&mut second, &mut third, &mut others] {
            assert!(open.next().now_or_never().is_none(), "still open");
        }
        assert_eq!(streams.held("token:tok-a"), 2);
        drop((first, second, third, others));
        assert!(
            streams.open.lock().unwrap().by_sign_in.is_empty(),
            "nothing kept for ever"
        );
    }
}
