//! End-to-end tests: real `podiumd` processes on loopback, driven through the client library
//! and the `podium` CLI.

mod access;
mod agenda;
mod authz;
mod cli;
mod faults;
mod feed;
mod house;
mod polls;
mod qa;
mod recordings;
mod server;
mod status;
mod text;
mod transport;

use podium_client::{Client, pb};

/// An RFC 3339 time as a protobuf timestamp.
pub fn ts(rfc3339: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339 time");
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

pub fn text(en: &str) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: [("en".to_owned(), en.to_owned())].into(),
    })
}

/// The ODC 2024 conference of the seed report: Phnom Penh, a main hall, a speaker in Phnom Penh
/// and one in New York.
pub struct Odc {
    pub conference: pb::Conference,
    pub hall: pb::Room,
    pub sokha: pb::Speaker,
    pub sarah: pb::Speaker,
}

pub async fn create_odc(admin: &Client, id: &str) -> anyhow::Result<Odc> {
    let conference = admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: id.into(),
            title: Some(pb::LocalizedText {
                text: [
                    ("en".to_owned(), "Open Data Conference 2024".to_owned()),
                    ("km".to_owned(), "សន្និសីទទិន្នន័យបើកចំហ ២០២៤".to_owned()),
                ]
                .into(),
            }),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            join_code: String::new(),
        })
        .await?
        .into_inner()
        .conference
        .expect("conference");
    let hall = admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: id.into(),
            name: "Main hall".into(),
            capacity: 300,
        })
        .await?
        .into_inner()
        .room
        .expect("room");
    let speaker = |name: &str, org: &str, zone: &str| pb::AddSpeakerRequest {
        request_id: Client::request_id(),
        conference_id: id.into(),
        name: name.into(),
        organisation: org.into(),
        time_zone: zone.into(),
        available_from: String::new(),
        available_until: String::new(),
    };
    let sokha = admin
        .agenda()
        .add_speaker(speaker(
            "Sokha Chan",
            "Open Development Cambodia",
            "Asia/Phnom_Penh",
        ))
        .await?
        .into_inner()
        .speaker
        .expect("speaker");
    let sarah = admin
        .agenda()
        .add_speaker(speaker(
            "Sarah Miller",
            "Open Knowledge Foundation",
            "America/New_York",
        ))
        .await?
        .into_inner()
        .speaker
        .expect("speaker");
    Ok(Odc {
        conference,
        hall,
        sokha,
        sarah,
    })
}

/// A session request in the main hall.
pub fn session(
    odc: &Odc,
    title: &str,
    start: &str,
    end: &str,
    speakers: Vec<String>,
) -> pb::AddSessionRequest {
    pb::AddSessionRequest {
        request_id: Client::request_id(),
        conference_id: odc.conference.id.clone(),
        title: text(title),
        kind: pb::SessionKind::Talk as i32,
        start: Some(ts(start)),
        end: Some(ts(end)),
        room_id: odc.hall.id.clone(),
        speaker_ids: speakers,
        backup_speaker_ids: vec![],
        failover: None,
    }
}
