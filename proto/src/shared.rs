//! `WatchResultsResponse`, written by hand instead of generated, so that a server can encode a
//! poll's results once per update and send the same bytes to every watcher.
//!
//! On the wire it is exactly the message `podium.v1.WatchResultsResponse` of `feedback.proto`:
//! clients in any language decode it as usual, and Rust clients read its public fields.

use prost::{
    DecodeError, Message, Name,
    bytes::{Buf, BufMut, Bytes},
    encoding::{DecodeContext, WireType, message, skip_field, uint64},
};

use crate::v1::{Poll, Results};

const POSITION: u32 = 1;
const RESULTS: u32 = 2;
const POLL: u32 = 3;

/// One update of a poll's results stream (`Polls/WatchResults`).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct WatchResultsResponse {
    /// Every log position below this one is reflected.
    pub position: u64,
    /// Absent while the caller may not see results yet.
    pub results: Option<Results>,
    /// The poll, sent when its state changed.
    pub poll: Option<Poll>,
    /// `position` and `results` already encoded by [`SharedResults::encode`]; when present it
    /// is sent in their place. Decoding never sets it.
    shared: Option<Bytes>,
}

/// The position and results of one update, encoded once and shared by every watcher that
/// sees the same results (a cheap clone of reference-counted bytes).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct SharedResults(Bytes);

impl SharedResults {
    pub fn encode(position: u64, results: Option<&Results>) -> Self {
        let mut buf = Vec::with_capacity(head_len(position, results));
        encode_head(position, results, &mut buf);
        Self(Bytes::from(buf))
    }

    /// The encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl WatchResultsResponse {
    /// The update with `position` and `results` readable: decoded from the shared bytes when
    /// it carries them, as a client on the wire would decode them. For readers in the same
    /// process as the publisher, such as the pages.
    pub fn resolved(self) -> Self {
        match &self.shared {
            Some(bytes) => Self {
                poll: self.poll,
                ..Self::decode(bytes.clone()).unwrap_or_default()
            },
            None => self,
        }
    }

    /// An update that sends `shared` as its position and results, then `poll`.
    /// The publisher's shared encoding of the position and results, when this response came
    /// from one: equal bytes are equal results, so a consumer that turns results into something
    /// else (a page fragment) can do it once for every watcher that gets the same bytes.
    pub fn shared(&self) -> Option<&Bytes> {
        self.shared.as_ref()
    }

    pub fn from_shared(shared: &SharedResults, poll: Option<Poll>) -> Self {
        Self {
            shared: Some(shared.0.clone()),
            poll,
            ..Self::default()
        }
    }
}

fn head_len(position: u64, results: Option<&Results>) -> usize {
    let position = if position == 0 {
        0
    } else {
        uint64::encoded_len(POSITION, &position)
    };
    position + results.map_or(0, |r| message::encoded_len(RESULTS, r))
}

fn encode_head(position: u64, results: Option<&Results>, buf: &mut impl BufMut) {
    if position != 0 {
        uint64::encode(POSITION, &position, buf);
    }
    if let Some(results) = results {
        message::encode(RESULTS, results, buf);
    }
}

impl Message for WatchResultsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.shared {
            Some(shared) => buf.put_slice(shared),
            None => encode_head(self.position, self.results.as_ref(), buf),
        }
        if let Some(poll) = &self.poll {
            message::encode(POLL, poll, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (field, merged) = match tag {
            POSITION => (
                "position",
                uint64::merge(wire_type, &mut self.position, buf, ctx),
            ),
            RESULTS => (
                "results",
                message::merge(
                    wire_type,
                    self.results.get_or_insert_with(Results::default),
                    buf,
                    ctx,
                ),
            ),
            POLL => (
                "poll",
                message::merge(
                    wire_type,
                    self.poll.get_or_insert_with(Poll::default),
                    buf,
                    ctx,
                ),
            ),
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        merged.map_err(|mut e| {
            e.push(Self::NAME, field);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let head = match &self.shared {
            Some(shared) => shared.len(),
            None => head_len(self.position, self.results.as_ref()),
        };
        head + self
            .poll
            .as_ref()
            .map_or(0, |p| message::encoded_len(POLL, p))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Name for WatchResultsResponse {
    const NAME: &'static str = "WatchResultsResponse";
    const PACKAGE: &'static str = "podium.v1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{OptionCount, PollState};

    fn results() -> Results {
        Results {
            poll_id: "p1".into(),
            state: PollState::Open as i32,
            ballots: 3,
            options: vec![OptionCount {
                option_id: "a".into(),
                count: 3,
                ..Default::default()
            }],
            texts: vec!["ឆ្ងាញ់".into()],
            ..Default::default()
        }
    }

    fn poll() -> Poll {
        Poll {
            id: "p1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn shared_bytes_are_the_message_encoding() {
        for (position, results, poll) in [
            (0, None, None),
            (7, None, Some(poll())),
            (1 << 40, Some(results()), None),
            (42, Some(results()), Some(poll())),
        ] {
            let plain = WatchResultsResponse {
                position,
                results: results.clone(),
                poll: poll.clone(),
                ..Default::default()
            };
            let shared = SharedResults::encode(position, results.as_ref());
            let sent = WatchResultsResponse::from_shared(&shared, poll.clone());
            assert_eq!(sent.encoded_len(), plain.encoded_len());
            assert_eq!(sent.encode_to_vec(), plain.encode_to_vec());
            let decoded = WatchResultsResponse::decode(sent.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded, plain);
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_ones_named() {
        let mut bytes = WatchResultsResponse {
            position: 5,
            ..Default::default()
        }
        .encode_to_vec();
        // Field 9, varint 1: a newer server's field.
        bytes.extend([9 << 3, 1]);
        let decoded = WatchResultsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.position, 5);

        // Field 2 (results) as a varint: the wrong wire type.
        let err = WatchResultsResponse::decode([2u8 << 3, 1].as_slice()).unwrap_err();
        assert!(
            err.to_string().contains("WatchResultsResponse.results"),
            "{err}"
        );
    }
}
