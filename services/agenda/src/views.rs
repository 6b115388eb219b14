//! Answers of the `podium.v1.Agenda` service: the read model's conferences, rooms, speakers
//! and sessions as protobuf messages, every time shown in the zones of the people concerned.

use chrono::{DateTime, Utc};
use podium_access::Principal;
use podium_core::{ZonedView, hhmm, zoned};
use podium_proto::{time::timestamp, v1 as pb};

use crate::{
    domain::{Conference, Room, Session, Speaker},
    store::{failover_to_proto, kind_to_proto, text_to_proto},
};

pub(crate) fn zoned_to_proto(view: ZonedView) -> pb::ZonedTime {
    pb::ZonedTime {
        utc: Some(timestamp(view.utc)),
        time_zone: view.zone.name().to_owned(),
        local: view.local,
        label: view.label,
    }
}

pub(crate) fn room_to_proto(room: &Room) -> pb::Room {
    pb::Room {
        id: room.id.clone(),
        name: room.name.clone(),
        capacity: room.capacity,
    }
}

pub(crate) fn speaker_to_proto(s: &Speaker) -> pb::Speaker {
    pb::Speaker {
        id: s.id.clone(),
        name: s.name.clone(),
        organisation: s.organisation.clone(),
        time_zone: s.zone.name().to_owned(),
        available_from: hhmm(s.hours.from),
        available_until: hhmm(s.hours.until),
    }
}

pub(crate) fn conference_to_proto(c: &Conference, viewer: &Principal) -> pb::Conference {
    pb::Conference {
        id: c.info.id.clone(),
        title: Some(text_to_proto(&c.info.title)),
        default_language: c.info.default_language.clone(),
        time_zone: c.info.zone.name().to_owned(),
        join_code: if viewer.sees_join_code() {
            c.info.join_code.clone()
        } else {
            String::new()
        },
        rooms: c.rooms.values().map(room_to_proto).collect(),
        speakers: c.speakers.values().map(speaker_to_proto).collect(),
        created_at: Some(timestamp(c.created_at)),
    }
}

/// A slot as each speaker sees it.
pub(crate) fn speaker_times(
    c: &Conference,
    speakers: impl Iterator<Item = (String, bool)>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<pb::SessionSpeaker> {
    speakers
        .filter_map(|(id, backup)| c.speakers.get(&id).map(|s| (s, backup)))
        .map(|(s, backup)| pb::SessionSpeaker {
            speaker_id: s.id.clone(),
            name: s.name.clone(),
            time_zone: s.zone.name().to_owned(),
            backup,
            start: Some(zoned_to_proto(zoned(start, s.zone))),
            end: Some(zoned_to_proto(zoned(end, s.zone))),
            within_hours: s.hours.contains(s.zone, start, end),
        })
        .collect()
}

pub(crate) fn session_to_proto(c: &Conference, s: &Session) -> pb::Session {
    let speakers = s.all_speakers().map(|(id, backup)| (id.to_owned(), backup));
    pb::Session {
        id: s.id.clone(),
        conference_id: c.info.id.clone(),
        title: Some(text_to_proto(&s.title)),
        kind: kind_to_proto(s.kind) as i32,
        start: Some(zoned_to_proto(zoned(s.start, c.info.zone))),
        end: Some(zoned_to_proto(zoned(s.end, c.info.zone))),
        room_id: s.room_id.clone(),
        room_name: c
            .rooms
            .get(&s.room_id)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        speakers: speaker_times(c, speakers, s.start, s.end),
        failover: Some(failover_to_proto(&s.failover)),
        revision: s.revision,
        warnings: c
            .warnings(s)
            .into_iter()
            .map(|(speaker_id, message)| pb::ScheduleWarning {
                speaker_id,
                message,
            })
            .collect(),
    }
}
