//! The privacy service (`podium.v1.Privacy`): a person's data, and erasing them.
//!
//! Erasure is crypto-shredding ([`podium_eventlog::personal`]): the person's key is destroyed,
//! so every sealed field of theirs becomes unreadable wherever the log is. Then the erasure is
//! recorded (`PersonErased`) for the read models to forget what they had opened, an attendee's
//! token is revoked, and the read models' snapshots are written again, so no file podium keeps
//! holds the person's data in the clear.

use std::sync::Arc;

use podium_access::{
    Directory, Principal, Role, TokenKeys, caller, record_revocation, token_stream,
};
use podium_agenda::AgendaStore;
use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, FollowerHandle, NewEvent, Projector, RecordedEvent,
    personal::{PersonKind, Personal, PersonalKeys, subject},
};
use podium_feedback::FeedbackModel;
use podium_proto::v1::{self as pb, privacy_server::Privacy};
use prost::Name;
use tonic::{Request, Response, Status};

/// Events read per page when scanning the log for one person.
const PAGE: usize = 1024;

#[derive(Clone)]
pub struct PrivacyService {
    pub log: Arc<dyn EventLog>,
    pub personal: Arc<PersonalKeys>,
    pub tokens: Arc<TokenKeys>,
    pub directory: Projector<Directory>,
    pub agenda: Option<AgendaStore>,
    pub feedback: Option<Projector<FeedbackModel>>,
    /// Asked for new snapshots after an erasure; `None` where the read models take none.
    pub follower: Option<FollowerHandle>,
    /// The position from which every event is sealed (`personal::sealed_from`).
    pub sealed_from: u64,
}

/// The person a request names, checked, and whether the caller may act on them.
fn person(
    caller: &Principal,
    person: Option<pb::Person>,
    action: &str,
) -> Result<(pb::Person, PersonKind), Status> {
    let person = person.ok_or_else(|| Status::invalid_argument("person: is required"))?;
    let kind = match pb::PersonKind::try_from(person.kind) {
        Ok(pb::PersonKind::Attendee) => PersonKind::Attendee,
        Ok(pb::PersonKind::Speaker) => PersonKind::Speaker,
        _ => {
            return Err(Status::invalid_argument(
                "person.kind: must be PERSON_KIND_ATTENDEE or PERSON_KIND_SPEAKER",
            ));
        }
    };
    for (field, value) in [
        ("person.conference_id", &person.conference_id),
        ("person.person_id", &person.person_id),
    ] {
        // podium's ids: they name the erasure's stream.
        let id_like = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if value.is_empty() || value.len() > 100 || !value.bytes().all(id_like) {
            return Err(Status::invalid_argument(format!(
                "{field}: {value:?} is not an id (1 to 100 letters, digits, '-', '_' or '.')"
            )));
        }
    }
    if kind == PersonKind::Attendee && !podium_access::is_attendee_id(&person.person_id) {
        return Err(Status::invalid_argument(format!(
            "person.person_id: {:?} is not an attendee id (they start with att-)",
            person.person_id
        )));
    }
    let themselves = caller.role == Role::Attendee
        && kind == PersonKind::Attendee
        && caller.id == person.person_id;
    if themselves {
        caller.check_conference(&person.conference_id)?;
    } else {
        caller.require(
            &person.conference_id,
            &[Role::Admin, Role::Organiser],
            action,
        )?;
    }
    Ok((person, kind))
}

fn erased_stream(person: &pb::Person, kind: PersonKind) -> String {
    format!(
        "{}privacy/{}/{}",
        podium_agenda::conference_prefix(&person.conference_id),
        kind.as_str(),
        person.person_id
    )
}

/// What the log holds about one person, their personal fields opened (or erased).
#[derive(Default)]
struct Found {
    questions: Vec<pb::QuestionAsked>,
    ratings: Vec<pb::SessionRated>,
    ballots: Vec<pb::BallotCast>,
    /// Events with the person's data in plain text (written before podium sealed it).
    plain: u64,
}

impl PrivacyService {
    fn speaker_exists(&self, person: &pb::Person) -> Result<(), Status> {
        let known = self.agenda.as_ref().is_some_and(|agenda| {
            agenda.read(|a| {
                a.conferences
                    .get(&person.conference_id)
                    .is_some_and(|c| c.speakers.contains_key(&person.person_id))
            })
        });
        if known {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "speaker {} not found in conference {}",
                person.person_id, person.conference_id
            )))
        }
    }

    /// Reads the conference's part of the log below `head` for the person's events.
    async fn scan(
        &self,
        person: &pb::Person,
        kind: PersonKind,
        head: u64,
    ) -> Result<Found, Status> {
        let prefix = podium_agenda::conference_prefix(&person.conference_id);
        let tokens = token_stream(Some(&person.conference_id));
        let mut found = Found::default();
        let mut from = 0;
        while from < head {
            let limit = usize::try_from(head - from).map_or(PAGE, |left| left.min(PAGE));
            let page = self
                .log
                .read_page(from, limit)
                .await
                .map_err(Status::from)?;
            let Some(last) = page.last_position() else {
                break;
            };
            for event in page {
                let event = event.map_err(Status::from)?;
                if event.stream.starts_with(&prefix) || event.stream == tokens {
                    self.take(&event, person, kind, &mut found);
                }
            }
            from = last + 1;
        }
        Ok(found)
    }

    fn take(
        &self,
        event: &RecordedEvent,
        person: &pb::Person,
        kind: PersonKind,
        found: &mut Found,
    ) {
        let id = person.person_id.as_str();
        let keys = &*self.personal;
        let plain = &mut found.plain;
        match kind {
            PersonKind::Attendee => {
                if let Some(q) = decoded::<pb::QuestionAsked>(event).filter(|q| q.author == id) {
                    found.questions.push(open(keys, q, plain));
                } else if let Some(r) = decoded::<pb::SessionRated>(event).filter(|r| r.rater == id)
                {
                    found.ratings.push(open(keys, r, plain));
                } else if let Some(b) = decoded::<pb::BallotCast>(event).filter(|b| b.voter == id) {
                    // Anonymous polls' ballots carry a keyed hash, never the attendee id.
                    found.ballots.push(b);
                }
            }
            PersonKind::Speaker => {
                if let Some(s) = decoded::<pb::SpeakerAdded>(event).filter(|s| s.speaker_id == id) {
                    open(keys, s, plain);
                } else if let Some(t) =
                    decoded::<pb::TokenIssued>(event).filter(|t| t.speaker_id == id)
                {
                    open(keys, t, plain);
                }
            }
        }
    }

    /// Erases `person`: destroys their key, records `PersonErased` (once), waits for the read
    /// models to fold it and has their snapshots written again, then signs an attendee out.
    /// A retry finds the event and answers as the first time.
    async fn erase_person(
        &self,
        caller: Principal,
        person: pb::Person,
        kind: PersonKind,
    ) -> Result<pb::EraseResponse, Status> {
        let stream = erased_stream(&person, kind);
        let (erased, position) = match self.recorded(&stream).await? {
            Some(first) => first,
            None => {
                let keys = self.personal.clone();
                let whom = subject(kind, &person.conference_id, &person.person_id);
                // The key may be gone although the answer was lost: the erasure is not
                // finished either way, and sending it again finishes it.
                keys.erase_everywhere(&whom).await.map_err(|e| {
                    Status::unavailable(format!(
                        "{e}; the erasure is not finished: send it again to finish it"
                    ))
                })?;
                let event = pb::PersonErased {
                    person: Some(person.clone()),
                    by: caller.id.clone(),
                    at: Some(std::time::SystemTime::now().into()),
                };
                // One id per person: two erasures racing write one event, and the second
                // answers with the first's.
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, stream.as_bytes());
                let appended = self
                    .log
                    .append(
                        &stream,
                        ExpectedVersion::NoStream,
                        vec![NewEvent::new(id, &event)],
                    )
                    .await;
                match appended {
                    Ok(outcome) if !outcome.deduplicated => (event, outcome.last_position),
                    Ok(_) | Err(EventLogError::Conflict { .. }) => self
                        .recorded(&stream)
                        .await?
                        .ok_or_else(|| Status::aborted("erasure raced another: retry"))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // Every model has forgotten what it had opened; then no snapshot file keeps it.
        self.directory
            .wait_for(position)
            .await
            .map_err(Status::from)?;
        if let Some(follower) = &self.follower {
            follower.snapshot().await.map_err(|e| {
                Status::unavailable(format!("rewriting the read models' snapshots: {e}; retry"))
            })?;
        }
        if kind == PersonKind::Attendee {
            // Last, so that an attendee erasing themselves could retry until here. An
            // attendee's token id is their id: they are signed out everywhere.
            match record_revocation(
                &self.log,
                &self.tokens,
                Some(&person.conference_id),
                &person.person_id,
                &caller.id,
                "the attendee's data was erased".into(),
            )
            .await
            {
                Ok(_) => {}
                // No token this node knows of to take back is not a failure.
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => return Err(status),
            }
        }
        // Only events below `sealed_from` can hold plain text: usually none, and no scan.
        let found = self.scan(&person, kind, self.sealed_from).await?;
        tracing::info!(kind = kind.as_str(), conference = %person.conference_id, by = %caller.id, plain = found.plain, "person erased");
        Ok(pb::EraseResponse {
            erased_at: erased.at,
            position,
            plain_events: found.plain,
        })
    }

    /// The first answer to erasing `person`, from the event that recorded it.
    async fn recorded(&self, stream: &str) -> Result<Option<(pb::PersonErased, u64)>, Status> {
        let events = self
            .log
            .read_stream(stream, 0, 1)
            .await
            .map_err(Status::from)?;
        Ok(events
            .first()
            .and_then(|e| Some((e.decode::<pb::PersonErased>().ok()?, e.position))))
    }
}

/// `event` decoded as `M`, when it is one.
fn decoded<M: prost::Message + Name + Default>(event: &RecordedEvent) -> Option<M> {
    event.is::<M>().then(|| event.decode::<M>().ok()).flatten()
}

/// `message` with its personal fields opened; counts it in `plain` when they were in the clear.
fn open<M: Personal>(keys: &PersonalKeys, mut message: M, plain: &mut u64) -> M {
    if message.sealed().is_none() && message.has_plain() {
        *plain += 1;
    }
    keys.open(&mut message);
    message
}

#[tonic::async_trait]
impl Privacy for PrivacyService {
    async fn erase(
        &self,
        request: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::EraseResponse>, Status> {
        let caller = caller(&request)?;
        let (person, kind) = person(&caller, request.into_inner().person, "erase a person")?;
        if kind == PersonKind::Speaker {
            self.speaker_exists(&person)?;
        }
        // To the end even if the caller goes away: a key destroyed is followed by the models
        // forgetting what they opened with it.
        let this = self.clone();
        tokio::spawn(async move { this.erase_person(caller, person, kind).await })
            .await
            .map_err(|e| Status::internal(format!("erasing: {e}")))?
            .map(Response::new)
    }

    async fn export_person(
        &self,
        request: Request<pb::ExportPersonRequest>,
    ) -> Result<Response<pb::ExportPersonResponse>, Status> {
        let caller = caller(&request)?;
        let (person, kind) = person(
            &caller,
            request.into_inner().person,
            "export a person's data",
        )?;
        let whom = subject(kind, &person.conference_id, &person.person_id);
        let mut answer = pb::ExportPersonResponse {
            erased: self.personal.is_erased(&whom),
            ..Default::default()
        };
        match kind {
            PersonKind::Attendee => {
                let found = self.scan(&person, kind, self.log.head()).await?;
                answer.display_name = found
                    .questions
                    .iter()
                    .rev()
                    .find(|q| !q.anonymous)
                    .map(|q| q.author_name.clone())
                    .unwrap_or_default();
                let model = self.feedback.as_ref().map(|m| m.read());
                answer.questions = found
                    .questions
                    .into_iter()
                    .map(|q| {
                        let now = model
                            .as_ref()
                            .and_then(|m| m.qa.question(&q.conference_id, &q.question_id));
                        pb::PersonQuestion {
                            state: now.map_or(q.state, |n| {
                                podium_feedback::store::qa::state_to_proto(n.state) as i32
                            }),
                            votes: now.map_or(0, |n| n.votes()),
                            session_id: q.session_id,
                            question_id: q.question_id,
                            text: q.text,
                            author_name: q.author_name,
                            anonymous: q.anonymous,
                            asked_at: q.at,
                        }
                    })
                    .collect();
                answer.ratings = found
                    .ratings
                    .into_iter()
                    .map(|r| pb::PersonRating {
                        session_id: r.session_id,
                        rating: r.rating,
                        comment: r.comment,
                    })
                    .collect();
                answer.ballots = found
                    .ballots
                    .into_iter()
                    .map(|b| pb::PersonBallot {
                        poll_id: b.poll_id,
                        option_ids: b.option_ids,
                        rating: b.rating,
                        text: b.text,
                    })
                    .collect();
            }
            PersonKind::Speaker => {
                self.speaker_exists(&person)?;
                if let Some(agenda) = &self.agenda {
                    agenda.read(|a| {
                        let Some(c) = a.conferences.get(&person.conference_id) else {
                            return;
                        };
                        if let Some(s) = c.speakers.get(&person.person_id) {
                            answer.name = s.name.clone();
                            answer.organisation = s.organisation.clone();
                            answer.time_zone = s.zone.name().to_owned();
                        }
                        answer.session_ids = c
                            .sessions
                            .values()
                            .filter(|s| {
                                s.speaker_ids.contains(&person.person_id)
                                    || s.backup_speaker_ids.contains(&person.person_id)
                            })
                            .map(|s| s.id.clone())
                            .collect();
                    });
                }
            }
        }
        answer.person = Some(person);
        Ok(Response::new(answer))
    }
}
