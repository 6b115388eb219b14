//! The `podium.v1.Agenda` service: the only place in this crate that sees prost request types
//! and `tonic::Status`. Requests are checked and converted here (naming the bad field), decided
//! in [`crate::domain`], stored through [`AgendaStore`], and answered from the read model.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use podium_access::{EVERYONE, ORGANISERS, Principal, caller};
use podium_core::{Hours, zoned};
use podium_eventlog::RequestId;
use podium_proto::{
    time::instant,
    v1::{self as pb, agenda_server::Agenda as AgendaRpc},
};
use rand::Rng;
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        Command, Conference, LocalizedText, MAX_NAME_CHARS, NewConference, NewSession,
        ORGANISATION, Room, Speaker, is_language_tag,
        time::{SlotQuery, parse_date, parse_zone, suggest_slots},
        validated_name,
    },
    error::AgendaError,
    store::{AgendaStore, failover_from_proto, kind_from_proto},
    views::{
        conference_to_proto, room_to_proto, session_to_proto, speaker_times, speaker_to_proto,
        zoned_to_proto,
    },
};

/// The agenda service.
#[derive(Clone)]
pub struct AgendaService {
    store: AgendaStore,
}

impl AgendaService {
    pub fn new(store: AgendaStore) -> Self {
        Self { store }
    }

    /// Runs `command`, which schedules session `session_id` (`Command::ScheduleSession`) or
    /// replaces it (`Command::RescheduleSession`), and answers the session as this request
    /// left it.
    async fn place(
        &self,
        principal: &Principal,
        rid: RequestId,
        command: Command,
        session_id: String,
    ) -> Result<pb::Session, Status> {
        let conference_id = command.conference_id().to_owned();
        let changed = matches!(command, Command::RescheduleSession { .. });
        let position = self.store.run(rid, &command).await?;
        // The session as this request left it (a retry's first answer, not a later change's),
        // or a refusal if the request id was used for another write.
        let written = self
            .store
            .scheduled_at(position)
            .await?
            .filter(|written| written.id == session_id)
            .ok_or_else(|| {
                AgendaError::invalid(
                    "request_id",
                    "was already used for a different request; send a new one",
                )
            })?;
        let session = self.with_conference(principal, &conference_id, |c| {
            Ok(session_to_proto(c, &written))
        })?;
        let warnings = session.warnings.len();
        tracing::info!(conference = %conference_id, session = %session.id, warnings, changed, "session scheduled");
        Ok(session)
    }

    /// Reads conference `id` for `principal`, who must be allowed to see it.
    fn with_conference<T>(
        &self,
        principal: &Principal,
        id: &str,
        f: impl FnOnce(&Conference) -> Result<T, AgendaError>,
    ) -> Result<T, Status> {
        principal.check_conference(id)?;
        Ok(self
            .store
            .read(|agenda| agenda.conference(id).and_then(f))?)
    }
}

fn conference_slug(text: &str) -> Result<String, AgendaError> {
    let ok = (2..=40).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(AgendaError::invalid(
            "conference_id",
            format!(
                "{text:?} must be 2 to 40 lowercase letters, digits and dashes, not starting with a dash"
            ),
        ))
    }
}

fn join_code(text: &str) -> Result<String, AgendaError> {
    let text = text.trim();
    if text.is_empty() {
        // Crockford's alphabet: no I, L, O or U to misread on a slide.
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut rng = rand::rng();
        let mut code: String = (0..8)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        code.insert(4, '-');
        return Ok(code);
    }
    let ok = (6..=32).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(AgendaError::invalid(
            "join_code",
            "must be 6 to 32 letters, digits and dashes",
        ))
    }
}

fn texts(text: Option<pb::LocalizedText>) -> BTreeMap<String, String> {
    text.map(|t| t.text.into_iter().collect())
        .unwrap_or_default()
}

fn required_time(
    field: &'static str,
    t: Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, AgendaError> {
    if t.is_none() {
        return Err(AgendaError::invalid(field, "is required"));
    }
    instant(&t).ok_or_else(|| AgendaError::invalid(field, "is not a valid timestamp"))
}

fn ids(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

// ---- Requests -> commands: each write request parsed once, naming the bad field ----

/// The request id and the conference a `CreateConference` asks for, created by `principal`.
fn new_conference(
    r: pb::CreateConferenceRequest,
    principal: &Principal,
) -> Result<(RequestId, NewConference), AgendaError> {
    let rid = RequestId::parse_or_new("request_id", &r.request_id)?;
    let default_language = match r.default_language.trim() {
        "" => "en".to_owned(),
        tag if is_language_tag(tag) => tag.to_owned(),
        tag => {
            return Err(AgendaError::invalid(
                "default_language",
                format!("{tag:?} is not a language tag like \"en\" or \"km\""),
            ));
        }
    };
    let id = match r.conference_id.trim() {
        "" => rid.derive_id("conf"),
        slug => conference_slug(slug)?,
    };
    let new = NewConference {
        title: LocalizedText::validated("title", texts(r.title), &default_language)?,
        zone: parse_zone("time_zone", &r.time_zone)?,
        join_code: join_code(&r.join_code)?,
        id,
        default_language,
        created_by: principal.id.clone(),
    };
    Ok((rid, new))
}

fn new_room(r: pb::AddRoomRequest) -> Result<(RequestId, Room), AgendaError> {
    let rid = RequestId::parse_or_new("request_id", &r.request_id)?;
    let room = Room {
        id: rid.derive_id("room"),
        name: validated_name("name", &r.name, MAX_NAME_CHARS)?,
        capacity: r.capacity,
    };
    if room.capacity > 1_000_000 {
        return Err(AgendaError::invalid("capacity", "must be at most 1000000"));
    }
    Ok((rid, room))
}

fn new_speaker(r: pb::AddSpeakerRequest) -> Result<(RequestId, Speaker), AgendaError> {
    let rid = RequestId::parse_or_new("request_id", &r.request_id)?;
    let organisation = podium_text::clean("organisation", &r.organisation, &ORGANISATION)?;
    let speaker = Speaker {
        id: rid.derive_id("spk"),
        name: validated_name("name", &r.name, MAX_NAME_CHARS)?,
        organisation,
        zone: parse_zone("time_zone", &r.time_zone)?,
        hours: Hours::parse(&r.available_from, &r.available_until)?,
    };
    Ok((rid, speaker))
}

fn new_session(r: pb::AddSessionRequest) -> Result<(RequestId, NewSession), AgendaError> {
    let rid = RequestId::parse_or_new("request_id", &r.request_id)?;
    let kind = kind_from_proto(r.kind)
        .ok_or_else(|| AgendaError::invalid("kind", "is not a known session kind"))?;
    let failover = failover_from_proto(&r.failover.unwrap_or_default())
        .ok_or_else(|| AgendaError::invalid("failover.failback", "is not a known failback mode"))?
        .validated()?;
    let start = required_time("start", r.start)?;
    let end = required_time("end", r.end)?;
    let room_id = r.room_id.trim().to_owned();
    if room_id.is_empty() {
        return Err(AgendaError::invalid("room_id", "is required"));
    }
    let session = NewSession {
        id: rid.derive_id("ses"),
        titles: texts(r.title),
        kind,
        start,
        end,
        room_id,
        speaker_ids: ids(r.speaker_ids),
        backup_speaker_ids: ids(r.backup_speaker_ids),
        failover,
    };
    Ok((rid, session))
}

#[tonic::async_trait]
impl AgendaRpc for AgendaService {
    async fn create_conference(
        &self,
        request: Request<pb::CreateConferenceRequest>,
    ) -> Result<Response<pb::CreateConferenceResponse>, Status> {
        let principal = caller(&request)?;
        principal.require_admin("create conferences")?;
        let (rid, new) = new_conference(request.into_inner(), &principal)?;
        let id = new.id.clone();
        if !self.store.applied(&id, rid) {
            // What the read model already refuses is refused before the code is claimed.
            self.store
                .read(|agenda| crate::domain::create_conference(agenda, new.clone()))?;
            self.store.claim_join_code(&id, &new.join_code).await?;
        }
        self.store.run(rid, &Command::CreateConference(new)).await?;
        let conference =
            self.with_conference(&principal, &id, |c| Ok(conference_to_proto(c, &principal)))?;
        tracing::info!(conference = %id, by = %principal.id, "conference created");
        Ok(Response::new(pb::CreateConferenceResponse {
            conference: Some(conference),
        }))
    }

    async fn get_conference(
        &self,
        request: Request<pb::GetConferenceRequest>,
    ) -> Result<Response<pb::GetConferenceResponse>, Status> {
        let principal = caller(&request)?;
        let id = request.into_inner().conference_id;
        let conference = self.with_conference(&principal, id.trim(), |c| {
            Ok(conference_to_proto(c, &principal))
        })?;
        Ok(Response::new(pb::GetConferenceResponse {
            conference: Some(conference),
        }))
    }

    async fn list_conferences(
        &self,
        request: Request<pb::ListConferencesRequest>,
    ) -> Result<Response<pb::ListConferencesResponse>, Status> {
        let principal = caller(&request)?;
        let conferences = self.store.read(|agenda| {
            agenda
                .conferences
                .values()
                .filter(|c| principal.check_conference(&c.info.id).is_ok())
                .map(|c| conference_to_proto(c, &principal))
                .collect()
        });
        Ok(Response::new(pb::ListConferencesResponse { conferences }))
    }

    async fn add_room(
        &self,
        request: Request<pb::AddRoomRequest>,
    ) -> Result<Response<pb::AddRoomResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, ORGANISERS, "add rooms")?;
        let (rid, room) = new_room(r)?;
        let room_id = room.id.clone();
        self.store
            .run(
                rid,
                &Command::AddRoom {
                    conference_id: conference_id.clone(),
                    room,
                },
            )
            .await?;
        let room = self.with_conference(&principal, &conference_id, |c| {
            Ok(room_to_proto(c.room(&room_id)?))
        })?;
        Ok(Response::new(pb::AddRoomResponse { room: Some(room) }))
    }

    async fn add_speaker(
        &self,
        request: Request<pb::AddSpeakerRequest>,
    ) -> Result<Response<pb::AddSpeakerResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, ORGANISERS, "add speakers")?;
        let (rid, speaker) = new_speaker(r)?;
        let speaker_id = speaker.id.clone();
        self.store
            .run(
                rid,
                &Command::AddSpeaker {
                    conference_id: conference_id.clone(),
                    speaker,
                },
            )
            .await?;
        let speaker = self.with_conference(&principal, &conference_id, |c| {
            Ok(speaker_to_proto(c.speaker(&speaker_id)?))
        })?;
        Ok(Response::new(pb::AddSpeakerResponse {
            speaker: Some(speaker),
        }))
    }

    async fn add_session(
        &self,
        request: Request<pb::AddSessionRequest>,
    ) -> Result<Response<pb::AddSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, ORGANISERS, "add sessions")?;
        let (rid, session) = new_session(r)?;
        let session_id = session.id.clone();
        let command = Command::ScheduleSession {
            conference_id,
            session,
        };
        let session = self.place(&principal, rid, command, session_id).await?;
        Ok(Response::new(pb::AddSessionResponse {
            session: Some(session),
        }))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, ORGANISERS, "change sessions")?;
        let session_id = r.session_id.trim().to_owned();
        if session_id.is_empty() {
            return Err(AgendaError::invalid("session_id", "is required").into());
        }
        let (rid, mut session) = new_session(pb::AddSessionRequest {
            request_id: r.request_id,
            conference_id: r.conference_id,
            title: r.title,
            kind: r.kind,
            start: r.start,
            end: r.end,
            room_id: r.room_id,
            speaker_ids: r.speaker_ids,
            backup_speaker_ids: r.backup_speaker_ids,
            failover: r.failover,
        })?;
        session.id = session_id.clone();
        let command = Command::RescheduleSession {
            conference_id,
            session,
            expected_revision: r.expected_revision,
        };
        let session = self.place(&principal, rid, command, session_id).await?;
        Ok(Response::new(pb::UpdateSessionResponse {
            session: Some(session),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let cid = r.conference_id.trim().to_owned();
        principal.require(&cid, EVERYONE, "list sessions")?;
        let (room, speaker) = (r.room_id.trim(), r.speaker_id.trim());
        let sessions = self.with_conference(&principal, &cid, |c| {
            if !room.is_empty() {
                c.room(room)?;
            }
            if !speaker.is_empty() {
                c.speaker(speaker)?;
            }
            Ok(c.sessions_by_start()
                .into_iter()
                .filter(|s| room.is_empty() || s.room_id == room)
                .filter(|s| speaker.is_empty() || s.all_speakers().any(|(id, _)| id == speaker))
                .map(|s| session_to_proto(c, s))
                .collect())
        })?;
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let cid = r.conference_id.trim().to_owned();
        principal.require(&cid, EVERYONE, "read sessions")?;
        let session = self.with_conference(&principal, &cid, |c| {
            Ok(session_to_proto(c, c.session(r.session_id.trim())?))
        })?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session),
        }))
    }

    async fn suggest_slots(
        &self,
        request: Request<pb::SuggestSlotsRequest>,
    ) -> Result<Response<pb::SuggestSlotsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let cid = r.conference_id.trim().to_owned();
        principal.require(&cid, ORGANISERS, "suggest slots")?;
        let speaker_ids = ids(r.speaker_ids);
        if speaker_ids.is_empty() {
            return Err(AgendaError::invalid("speaker_ids", "name at least one speaker").into());
        }
        if !(5..=720).contains(&r.duration_minutes) {
            return Err(AgendaError::invalid("duration_minutes", "must be 5 to 720").into());
        }
        let step = match r.step_minutes {
            0 => 15,
            s if (5..=720).contains(&s) => s,
            _ => return Err(AgendaError::invalid("step_minutes", "must be 5 to 720").into()),
        };
        let limit = match r.limit {
            0 => 10,
            l if l <= 100 => l as usize,
            _ => return Err(AgendaError::invalid("limit", "must be at most 100").into()),
        };
        let from_date = parse_date("from_date", &r.from_date).map_err(AgendaError::from)?;
        let to_date = parse_date("to_date", &r.to_date).map_err(AgendaError::from)?;
        if to_date < from_date {
            return Err(AgendaError::invalid("to_date", "must not be before from_date").into());
        }
        if (to_date - from_date).num_days() > 30 {
            return Err(AgendaError::invalid("to_date", "the range is at most 31 days").into());
        }
        let room_id = r.room_id.trim();
        let slots = self.with_conference(&principal, &cid, |c| {
            if !room_id.is_empty() {
                c.room(room_id)?;
            }
            let speakers = speaker_ids
                .iter()
                .map(|id| c.speaker(id).map(|s| (s.zone, s.hours)))
                .collect::<Result<Vec<_>, _>>()?;
            let names: Vec<&str> = speaker_ids.iter().map(String::as_str).collect();
            let busy = c.busy_times((!room_id.is_empty()).then_some(room_id), &names);
            let query = SlotQuery {
                zone: c.info.zone,
                from_date,
                to_date,
                duration: Duration::minutes(i64::from(r.duration_minutes)),
                step: Duration::minutes(i64::from(step)),
                speakers,
                busy: &busy,
                limit,
            };
            Ok(suggest_slots(&query)
                .into_iter()
                .map(|(start, end)| pb::SuggestedSlot {
                    start: Some(zoned_to_proto(zoned(start, c.info.zone))),
                    end: Some(zoned_to_proto(zoned(end, c.info.zone))),
                    speakers: speaker_times(
                        c,
                        speaker_ids.iter().map(|id| (id.clone(), false)),
                        start,
                        end,
                    ),
                })
                .collect())
        })?;
        Ok(Response::new(pb::SuggestSlotsResponse { slots }))
    }
}
