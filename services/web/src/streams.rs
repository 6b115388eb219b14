//! How many live streams (Server-Sent Events) the pages hold open for one sign-in at once. A
//! page opens one; a person has a few tabs, a projector token a screen per room. Without a
//! bound, one token could hold as many connections as the operating system allows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{http::StatusCode, response::Response};
use futures::{Stream, StreamExt};
use podium_access::Principal;

use crate::{Web, reply, session::Visitor};

/// A permit for one more live stream of the visitor's sign-in, or the page (429) saying it
/// holds too many. A visitor who is not signed in opens no stream, so holds no permit.
pub fn admit(web: &Web, visitor: &Visitor) -> Result<Option<Permit>, Box<Response>> {
    let Some(principal) = &visitor.principal else {
        return Ok(None);
    };
    web.live_streams.admit(principal).map(Some).ok_or_else(|| {
        Box::new(reply::error(
            visitor,
            StatusCode::TOO_MANY_REQUESTS,
            visitor.text().error_too_many_pages,
            None,
        ))
    })
}

/// `stream`, holding `permit` for as long as it is open.
pub fn holding<S: Stream>(stream: S, permit: Option<Permit>) -> impl Stream<Item = S::Item> {
    stream.map(move |item| {
        let _open = &permit;
        item
    })
}

/// The open streams of each sign-in, and how many one may have.
#[derive(Debug)]
pub struct LiveStreams {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream: held by the stream, let go when the connection ends.
#[derive(Debug)]
pub struct Permit {
    streams: Arc<LiveStreams>,
    key: String,
}

impl LiveStreams {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::default(),
        })
    }

    /// A permit for one more stream of `principal`'s sign-in (its token, or who it is for a
    /// secret without a token id), or `None` when it already holds the limit.
    pub fn admit(self: &Arc<Self>, principal: &Principal) -> Option<Permit> {
        let key = principal
            .token_id
            .clone()
            .unwrap_or_else(|| principal.id.clone());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Permit {
            streams: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_sign_in_holds_at_most_the_limit_and_gets_a_place_back_when_a_stream_ends() {
        let streams = LiveStreams::new(2);
        let first = streams.admit(&principal("tok-a")).unwrap();
        let _second = streams.admit(&principal("tok-a")).unwrap();
        assert!(
            streams.admit(&principal("tok-a")).is_none(),
            "over the limit"
        );
        assert!(
            streams.admit(&principal("tok-b")).is_some(),
            "another sign-in is not affected"
        );
        drop(first);
        let _third = streams.admit(&principal("tok-a")).unwrap();
        assert_eq!(streams.held("tok-a"), 2);
        drop(_third);
        drop(_second);
        assert_eq!(streams.held("tok-a"), 0);
        assert!(
            streams.open.lock().unwrap().is_empty(),
            "nothing kept for ever"
        );
    }
}
