//! The poll commands: create, open and close a poll, cast a ballot, hide a word.
//!
//! **A ballot takes one path**: the request, parsed once into a [`CastBallot`], is checked
//! against the poll, given its voter id, decided by [`Poll::decide_ballot`](crate::domain::poll::Poll::decide_ballot),
//! appended to the voter's stream, and then answered from where the log put it, because the log
//! decides: a ballot that landed after the poll's close is not counted, and is refused; one at
//! version 1 or later of its voter's stream replaced an earlier one. A resent ballot lands
//! where the first did, so it gets the first answer, also after the poll has closed.

use std::sync::Arc;

use podium_eventlog::{EventLogError, ExpectedVersion, NewEvent};
use podium_proto::v1 as pb;
use uuid::Uuid;

use super::{Writer, now};
use crate::{
    domain::poll::{Ballot, CastBallot, Kind, NewPoll, State, Transition},
    error::{PollError, session_not_found},
    store::{VoterKeys, ballot_event, ballot_stream, poll_stream, spec_to_proto},
};

/// A counted ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BallotCounted {
    /// It replaced the voter's earlier ballot.
    pub replaced: bool,
    /// Its log position (the first one's, for a retry).
    pub position: u64,
}

pub struct PollCommands {
    writer: Writer,
    keys: Arc<VoterKeys>,
}

impl PollCommands {
    pub fn new(writer: Writer, keys: Arc<VoterKeys>) -> Self {
        Self { writer, keys }
    }

    /// Creates a draft poll; its id.
    pub async fn create(&self, created_by: &str, new: NewPoll) -> Result<String, PollError> {
        let model = &self.writer.model;
        let (conference_id, session_id) = (new.conference_id.clone(), new.session_id.clone());
        // A conference or session the agenda has just written may not be in the model yet.
        model
            .catch_up_unless(|m| {
                m.conferences
                    .get(&conference_id)
                    .is_some_and(|c| session_id.is_empty() || c.sessions.contains(&session_id))
            })
            .await?;
        let default_language = {
            let model = model.read();
            let conference = model.conferences.get(&conference_id).ok_or_else(|| {
                PollError::NotFound(format!("conference {conference_id} not found"))
            })?;
            if !session_id.is_empty() && !conference.sessions.contains(&session_id) {
                return Err(PollError::NotFound(session_not_found(
                    &conference_id,
                    &session_id,
                )));
            }
            conference.default_language.clone()
        };
        let request_id = new.request_id;
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let spec = new.spec(&default_language, created_at)?;
        let event = NewEvent::new(
            request_id.uuid(),
            &pb::PollCreated {
                poll: Some(spec_to_proto(&spec, State::Draft, "", &default_language)),
                created_by: created_by.to_owned(),
            },
        );
        let stream = poll_stream(&conference_id, &spec.id);
        match self
            .writer
            .append(&stream, ExpectedVersion::NoStream, event)
            .await
        {
            Ok(_) => Ok(spec.id),
            Err(EventLogError::Conflict { .. }) => Err(PollError::AlreadyExists(spec.id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a draft poll or closes an open one; closing destroys an anonymous poll's key.
    pub async fn transition(
        &self,
        conference_id: &str,
        poll_id: &str,
        transition: Transition,
    ) -> Result<(), PollError> {
        let version = {
            let model = self.writer.model.read();
            model
                .poll(conference_id, poll_id)
                .ok_or_else(|| PollError::poll_not_found(poll_id))?
                .check_transition(transition)?;
            let key = (conference_id.to_owned(), poll_id.to_owned());
            model.poll_versions.get(&key).copied()
        };
        // Against the version the state was read at: of two moderators closing at once, one
        // succeeds and the other is told to retry (ABORTED), never a second close.
        let expected = version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
        let (conference, poll, at) = (conference_id.to_owned(), poll_id.to_owned(), now());
        let event = match transition {
            Transition::Open => NewEvent::new(
                Uuid::now_v7(),
                &pb::PollOpened {
                    conference_id: conference,
                    poll_id: poll,
                    at,
                },
            ),
            Transition::Close => NewEvent::new(
                Uuid::now_v7(),
                &pb::PollClosed {
                    conference_id: conference,
                    poll_id: poll,
                    at,
                },
            ),
        };
        self.writer
            .append(&poll_stream(conference_id, poll_id), expected, event)
            .await?;
        if transition == Transition::Close {
            // The poll is closed in the log: no ballot counts any more, so the link from
            // attendees to ballots of an anonymous poll can go, durably (an fsync, so on the
            // blocking pool) before the close is acknowledged.
            self.keys
                .close(conference_id, poll_id)
                .await
                .map_err(PollError::KeyNotDestroyed)?;
        }
        Ok(())
    }

    /// Casts `attendee`'s ballot.
    pub async fn cast_ballot(
        &self,
        attendee: &str,
        cast: CastBallot,
    ) -> Result<BallotCounted, PollError> {
        let CastBallot {
            conference_id,
            poll_id,
            ballot_id,
            answer,
        } = cast;
        let (kind, anonymous, locked, closed) = {
            let model = self.writer.model.read();
            let poll = model
                .poll(&conference_id, &poll_id)
                .filter(|p| p.state != State::Draft)
                .ok_or_else(|| PollError::poll_not_found(&poll_id))?;
            (
                poll.spec.kind,
                poll.spec.anonymous,
                poll.spec.lock_ballots,
                poll.state == State::Closed,
            )
        };
        if closed {
            // A resent ballot is answered as it was the first time. Only where the voter is
            // the attendee: a closed anonymous poll must never get its key back (deriving the
            // voter would create it again), so nothing links a ballot to its sender any more.
            let stream = ballot_stream(&conference_id, &poll_id, attendee);
            let sent = match anonymous {
                false => self.writer.log.find(&stream, ballot_id.uuid()).await?,
                true => None,
            };
            return match sent {
                Some((position, version)) => {
                    self.counted(&conference_id, &poll_id, position, version)
                }
                None => Err(PollError::NotOpen(format!("poll {poll_id} is closed"))),
            };
        }
        let ballot = Ballot {
            ballot_id: ballot_id.to_string(),
            choice: answer.choice(kind)?,
        };
        let voter = if anonymous {
            self.anonymous_voter(&conference_id, &poll_id, attendee)
                .await?
        } else {
            attendee.to_owned()
        };
        // Checked again after the voter is known: the poll may have closed meanwhile, and a
        // new ballot is checked against the voter's earlier one.
        self.writer
            .model
            .read()
            .poll(&conference_id, &poll_id)
            .ok_or_else(|| PollError::poll_not_found(&poll_id))?
            .decide_ballot(&voter, &ballot)?;
        let event = NewEvent::new(
            ballot_id.uuid(),
            &ballot_event(&conference_id, &poll_id, &voter, &ballot),
        );
        let expected = if locked {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Any
        };
        let stream = ballot_stream(&conference_id, &poll_id, &voter);
        let outcome = match self.writer.append_outcome(&stream, expected, event).await {
            Ok(outcome) => outcome,
            Err(EventLogError::Conflict { .. }) => {
                return Err(PollError::Locked(format!(
                    "poll {poll_id} locks ballots: yours is already counted"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.counted(
            &conference_id,
            &poll_id,
            outcome.last_position,
            outcome.first_version,
        )
    }

    /// The answer to a ballot the log holds at `position`, version `version` of its voter's
    /// stream: counted unless it landed after the close (the log decides, not the moment it
    /// was checked), and a replacement when the voter had cast one before. Both come from the
    /// log, so a resent ballot gets the same answer as the first time, whatever came since.
    fn counted(
        &self,
        conference_id: &str,
        poll_id: &str,
        position: u64,
        version: u64,
    ) -> Result<BallotCounted, PollError> {
        let counted = self
            .writer
            .model
            .read()
            .poll(conference_id, poll_id)
            .is_some_and(|p| p.counted_at(position));
        if !counted {
            return Err(PollError::NotOpen(format!(
                "poll {poll_id} closed before your ballot arrived"
            )));
        }
        Ok(BallotCounted {
            replaced: version > 0,
            position,
        })
    }

    /// The voter id of `attendee` in an anonymous poll.
    async fn anonymous_voter(
        &self,
        conference_id: &str,
        poll_id: &str,
        attendee: &str,
    ) -> Result<String, PollError> {
        self.keys
            .voter_of(conference_id, poll_id, attendee)
            .await
            .map_err(PollError::VoterKey)?
            // The poll closed since the check above, and its key is gone.
            .ok_or_else(|| PollError::NotOpen(format!("poll {poll_id} is closed")))
    }

    /// Hides `word` (one word, cleaned) from a word cloud, or shows it again.
    pub async fn hide_word(
        &self,
        conference_id: &str,
        poll_id: &str,
        word: &str,
        hidden: bool,
    ) -> Result<(), PollError> {
        let word = {
            let model = self.writer.model.read();
            let poll = model
                .poll(conference_id, poll_id)
                .ok_or_else(|| PollError::poll_not_found(poll_id))?;
            if poll.spec.kind != Kind::WordCloud {
                return Err(PollError::WrongState(format!(
                    "poll {poll_id} is not a word cloud"
                )));
            }
            match model.words.words(word).as_slice() {
                [one] => one.clone(),
                _ => return Err(PollError::invalid("word", "give exactly one word")),
            }
        };
        let event = NewEvent::new(
            Uuid::now_v7(),
            &pb::WordHidden {
                conference_id: conference_id.to_owned(),
                poll_id: poll_id.to_owned(),
                word,
                hidden,
            },
        );
        self.writer
            .append(
                &poll_stream(conference_id, poll_id),
                ExpectedVersion::Any,
                event,
            )
            .await?;
        Ok(())
    }
}
