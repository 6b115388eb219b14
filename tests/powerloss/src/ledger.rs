//! What the storm sent and what podiumd acknowledged: the test's record, against which the
//! state after every power cut is checked. A write is recorded as sent before its request
//! leaves, and as acknowledged only when podiumd's success answer arrives; a write whose answer
//! never came (or was an error) may or may not be there afterwards, but an acknowledged one
//! must be, exactly as acknowledged.

use std::collections::{BTreeMap, HashMap};

/// One write of a kind whose effect the check can find again (a room, a question, ...).
#[derive(Debug, Clone)]
pub struct Write<T> {
    pub what: T,
    pub acked: bool,
}

/// A ballot as sent: the option chosen and whether podiumd acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub option: String,
    pub acked: bool,
}

/// A poll whose creation podiumd acknowledged, and what happened to it since.
#[derive(Debug, Clone, Default)]
pub struct PollRecord {
    pub anonymous: bool,
    pub options: Vec<String>,
    /// `Some(acked)` once OpenPoll was sent.
    pub open: Option<bool>,
    /// `Some(acked)` once ClosePoll was sent; `Some(true)` also once a check found it closed.
    pub close: Option<bool>,
    /// podiumd answered a ClosePoll: from then on the poll's anonymity key must be gone.
    pub close_answered: bool,
    /// Every ballot sent to the poll, per attendee, in the order sent. An attendee's ballots
    /// are sent one at a time, so this is also the order in which podiumd could store them.
    pub ballots: HashMap<String, Vec<Ballot>>,
}

impl PollRecord {
    /// Whether ballots may be sent: its opening was acknowledged and no close was sent.
    pub fn takes_ballots(&self) -> bool {
        self.open == Some(true) && self.close.is_none()
    }
}

/// A recording upload as sent.
#[derive(Debug, Clone)]
pub struct Upload {
    pub sha256: String,
    pub size: u64,
    /// The recording id podiumd answered with, once acknowledged.
    pub id: Option<String>,
    /// Whether its bytes have been fetched and checked since it was acknowledged.
    pub fetched: bool,
}

/// An acknowledged event whose log position podiumd returned: the log must hold it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedAt {
    pub position: u64,
    /// The event's protobuf type, e.g. `podium.v1.BallotCast`.
    pub event_type: &'static str,
    /// What identifies it in its payload: the ballot id, the question id.
    pub key: String,
}

/// A question as sent; its text is unique, so it is found by it.
#[derive(Debug, Clone)]
pub struct Question {
    pub text: String,
    /// The question id, once acknowledged.
    pub id: Option<String>,
}

/// Everything the storms of one data directory sent.
#[derive(Debug, Default)]
pub struct Ledger {
    pub rooms: Vec<Write<String>>,
    pub speakers: Vec<Write<String>>,
    pub polls: BTreeMap<String, PollRecord>,
    pub questions: Vec<Question>,
    pub uploads: Vec<Upload>,
    pub positions: Vec<AckedAt>,
}

impl Ledger {
    /// How many writes were acknowledged, and how many were sent without an answer.
    pub fn counts(&self) -> (usize, usize) {
        let mut acked = 0;
        let mut unknown = 0;
        let mut count = |yes: bool| {
            if yes {
                acked += 1;
            } else {
                unknown += 1;
            }
        };
        self.rooms.iter().for_each(|w| count(w.acked));
        self.speakers.iter().for_each(|w| count(w.acked));
        self.questions.iter().for_each(|q| count(q.id.is_some()));
        self.uploads.iter().for_each(|u| count(u.id.is_some()));
        for poll in self.polls.values() {
            count(true);
            poll.open.into_iter().for_each(&mut count);
            poll.close.into_iter().for_each(&mut count);
            poll.ballots.values().flatten().for_each(|b| count(b.acked));
        }
        (acked, unknown)
    }
}

/// The counts a poll's results may show after a crash, given what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Per option: (at least, at most).
    pub options: BTreeMap<String, (u64, u64)>,
    /// Ballots counted: (at least, at most).
    pub ballots: (u64, u64),
}

/// Each attendee's latest stored ballot is their last acknowledged one or one sent after it
/// (whose answer never came); with none acknowledged, any they sent, or none.
pub fn tally_bounds(poll: &PollRecord) -> Bounds {
    let mut bounds = Bounds::default();
    for option in &poll.options {
        bounds.options.insert(option.clone(), (0, 0));
    }
    for ballots in poll.ballots.values() {
        if ballots.is_empty() {
            continue;
        }
        let (candidates, definite) = match ballots.iter().rposition(|b| b.acked) {
            Some(last) => (&ballots[last..], true),
            None => (&ballots[..], false),
        };
        for option in &poll.options {
            let any = candidates.iter().any(|b| &b.option == option);
            let all = candidates.iter().all(|b| &b.option == option);
            let entry = bounds.options.entry(option.clone()).or_default();
            entry.0 += u64::from(definite && all);
            entry.1 += u64::from(any);
        }
        bounds.ballots.0 += u64::from(definite);
        bounds.ballots.1 += 1;
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(ballots: &[(&str, &[(&str, bool)])]) -> PollRecord {
        PollRecord {
            options: vec!["opt-1".into(), "opt-2".into(), "opt-3".into()],
            open: Some(true),
            ballots: ballots
                .iter()
                .map(|(who, sent)| {
                    let sent = sent
                        .iter()
                        .map(|(option, acked)| Ballot {
                            option: (*option).into(),
                            acked: *acked,
                        })
                        .collect();
                    ((*who).to_owned(), sent)
                })
                .collect(),
            ..PollRecord::default()
        }
    }

    #[test]
    fn an_acknowledged_ballot_is_counted_and_an_unanswered_one_may_be() {
        let bounds = tally_bounds(&poll(&[
            ("a", &[("opt-1", true)]),
            ("b", &[("opt-2", false)]),
        ]));
        assert_eq!(bounds.options["opt-1"], (1, 1));
        assert_eq!(bounds.options["opt-2"], (0, 1));
        assert_eq!(bounds.options["opt-3"], (0, 0));
        assert_eq!(bounds.ballots, (1, 2));
    }

    #[test]
    fn a_replaced_ballot_counts_for_its_replacement_or_what_followed_it() {
        // a: voted 1 (acked), then 2 (acked), then 3 (no answer): 2 or 3, never 1.
        // b: voted 3 (acked), then 1 (refused): 3 or 1.
        let bounds = tally_bounds(&poll(&[
            ("a", &[("opt-1", true), ("opt-2", true), ("opt-3", false)]),
            ("b", &[("opt-3", true), ("opt-1", false)]),
        ]));
        assert_eq!(bounds.options["opt-1"], (0, 1));
        assert_eq!(bounds.options["opt-2"], (0, 1));
        assert_eq!(bounds.options["opt-3"], (0, 2));
        assert_eq!(bounds.ballots, (2, 2));
        let settled = tally_bounds(&poll(&[("a", &[("opt-1", false), ("opt-2", true)])]));
        assert_eq!(settled.options["opt-1"], (0, 0));
        assert_eq!(settled.options["opt-2"], (1, 1));
    }

    #[test]
    fn counts_split_acknowledged_from_unanswered_writes() {
        let mut ledger = Ledger::default();
        ledger.rooms.push(Write {
            what: "Hall".into(),
            acked: true,
        });
        ledger.questions.push(Question {
            text: "why?".into(),
            id: None,
        });
        let mut record = poll(&[("a", &[("opt-1", true), ("opt-2", false)])]);
        record.close = Some(false);
        ledger.polls.insert("poll-1".into(), record);
        // room, poll created, poll opened, ballot 1 | question, close, ballot 2
        assert_eq!(ledger.counts(), (4, 3));
    }
}
