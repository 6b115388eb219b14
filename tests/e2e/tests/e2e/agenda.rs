//! The agenda through the client library: times in every speaker's zone, restart durability,
//! idempotent retries, refusals that change nothing, and the slot finder.

use futures::StreamExt;
use podium_client::{Client, FeedItem, pb};
use podium_e2e::{CONFERENCE, Show, text};
use tonic::Code;

/// Reads the conference's feed from `from` until it has caught up; returns the events.
pub async fn stored_events(client: &Client, conference: &str, from: u64) -> Vec<pb::Event> {
    let feed = client.follow_feed(conference, from, vec![]);
    futures::pin_mut!(feed);
    let mut events = Vec::new();
    while let Some(item) = feed.next().await {
        match item.expect("feed item") {
            FeedItem::Event(event) => events.push(event),
            FeedItem::CaughtUp(_) => return events,
        }
    }
    panic!("feed ended before catching up");
}

#[tokio::test]
async fn a_conference_with_speakers_in_two_zones_survives_a_restart_and_the_feed_resumes() {
    let mut show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    assert_eq!(odc.sokha.time_zone, "Asia/Phnom_Penh");
    assert_eq!(odc.sarah.time_zone, "America/New_York");

    // 09:00-09:45 in Phnom Penh is 21:00-21:45 the evening before in New York.
    let keynote = admin
        .agenda()
        .add_session(odc.session(
            "Opening keynote",
            "2024-11-14T02:00:00Z",
            "2024-11-14T02:45:00Z",
            vec![odc.sokha.id.clone(), odc.sarah.id.clone()],
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let start = keynote.start.clone().unwrap();
    assert_eq!(start.local, "2024-11-14T09:00:00+07:00");
    assert_eq!(start.label, "Thu 14 Nov 2024 09:00 +07 (Asia/Phnom_Penh)");
    let sarah = keynote
        .speakers
        .iter()
        .find(|s| s.speaker_id == odc.sarah.id)
        .unwrap();
    assert_eq!(
        sarah.start.as_ref().unwrap().label,
        "Wed 13 Nov 2024 21:00 EST (America/New_York)"
    );
    assert!(!sarah.within_hours);
    let sokha = keynote
        .speakers
        .iter()
        .find(|s| s.speaker_id == odc.sokha.id)
        .unwrap();
    assert!(sokha.within_hours);
    assert_eq!(keynote.warnings.len(), 1);
    assert_eq!(keynote.warnings[0].speaker_id, odc.sarah.id);
    assert_eq!(
        keynote.warnings[0].message,
        "Sarah Miller's session starts Wed 21:00 in America/New_York, outside their hours 08:00-21:00"
    );

    let before_conference = admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let before_sessions = admin
        .agenda()
        .list_sessions(pb::ListSessionsRequest {
            conference_id: CONFERENCE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let before_events = stored_events(admin, CONFERENCE, 0).await;
    assert_eq!(
        before_events.len(),
        5,
        "created, room, two speakers, session"
    );
    // Position 0 is the claim of the conference's join code, a stream of its own and so not
    // on the conference's feed; the conference's events follow it without a gap.
    let positions: Vec<u64> = before_events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..6).collect::<Vec<_>>());

    show.restart().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);

    let after_conference = admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_conference, before_conference);
    let after_sessions = admin
        .agenda()
        .list_sessions(pb::ListSessionsRequest {
            conference_id: CONFERENCE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_sessions, before_sessions);

    // Resume from the middle: exactly the events from there on, in order.
    let resumed = stored_events(admin, CONFERENCE, before_events[2].position).await;
    assert_eq!(resumed, before_events[2..].to_vec());

    // And the log goes on where it left off.
    admin
        .agenda()
        .add_session(odc.session(
            "Open data in Cambodia",
            "2024-11-14T03:00:00Z",
            "2024-11-14T03:30:00Z",
            vec![odc.sokha.id.clone()],
        ))
        .await
        .unwrap();
    let head = before_events[4].position + 1;
    let next = stored_events(admin, CONFERENCE, head).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].position, head);
    assert_eq!(next[0].r#type, "podium.v1.SessionScheduled");
}

#[tokio::test]
async fn a_retried_write_is_applied_once() {
    let show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    let request = pb::AddRoomRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        name: "Breakout room B".into(),
        capacity: 40,
    };
    let first = admin
        .agenda()
        .add_room(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = admin.agenda().add_room(request).await.unwrap().into_inner();
    assert_eq!(first, again);
    let conference = admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conference
        .unwrap();
    assert_eq!(conference.rooms.len(), 2, "main hall and one breakout room");
    let events = stored_events(admin, CONFERENCE, 0).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.r#type == "podium.v1.RoomAdded")
            .count(),
        2
    );

    // The same holds for a retried session and a retried conference.
    let add = odc.session(
        "Pitch: open budgets",
        "2024-11-15T04:00:00Z",
        "2024-11-15T04:05:00Z",
        vec![odc.sokha.id.clone()],
    );
    let a = admin
        .agenda()
        .add_session(add.clone())
        .await
        .unwrap()
        .into_inner();
    let b = admin.agenda().add_session(add).await.unwrap().into_inner();
    assert_eq!(a, b);
}

/// Asserts that a request was refused with `code` and a message that mentions `words`.
fn expect<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, words: &str) {
    let status = result.expect_err("the request should be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(words),
        "{:?} should mention {words:?}",
        status.message()
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    admin
        .agenda()
        .add_session(odc.session(
            "Keynote",
            "2024-11-14T02:00:00Z",
            "2024-11-14T02:45:00Z",
            vec![odc.sokha.id.clone()],
        ))
        .await
        .unwrap();
    let before = stored_events(admin, CONFERENCE, 0).await;

    let agenda = admin.agenda();

    let mut speaker = pb::AddSpeakerRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        name: "Jean Dupont".into(),
        organisation: "Etalab".into(),
        time_zone: "Europe/Pariss".into(),
        available_from: String::new(),
        available_until: String::new(),
    };
    expect(
        agenda.clone().add_speaker(speaker.clone()).await,
        Code::InvalidArgument,
        "time_zone",
    );
    speaker.time_zone = "Europe/Paris".into();
    speaker.available_from = "22:00".into();
    speaker.available_until = "09:00".into();
    expect(
        agenda.clone().add_speaker(speaker.clone()).await,
        Code::InvalidArgument,
        "available_from",
    );
    speaker.available_from = String::new();
    speaker.available_until = String::new();
    speaker.name = "   ".into();
    expect(
        agenda.clone().add_speaker(speaker).await,
        Code::InvalidArgument,
        "name",
    );

    let s = |title: &str, start: &str, end: &str| {
        odc.session(title, start, end, vec![odc.sarah.id.clone()])
    };
    expect(
        agenda
            .clone()
            .add_session(s(
                "Backwards",
                "2024-11-14T05:00:00Z",
                "2024-11-14T04:00:00Z",
            ))
            .await,
        Code::InvalidArgument,
        "end",
    );
    expect(
        agenda
            .clone()
            .add_session(s("", "2024-11-14T05:00:00Z", "2024-11-14T06:00:00Z"))
            .await,
        Code::InvalidArgument,
        "title",
    );
    expect(
        agenda
            .clone()
            .add_session(s(
                &"x".repeat(201),
                "2024-11-14T05:00:00Z",
                "2024-11-14T06:00:00Z",
            ))
            .await,
        Code::InvalidArgument,
        "title",
    );
    expect(
        agenda
            .clone()
            .add_session(s(
                "Double booked",
                "2024-11-14T02:30:00Z",
                "2024-11-14T03:00:00Z",
            ))
            .await,
        Code::FailedPrecondition,
        "already booked",
    );
    let mut unknown_room = s("Nowhere", "2024-11-14T05:00:00Z", "2024-11-14T06:00:00Z");
    unknown_room.room_id = "room-nope".into();
    expect(
        agenda.clone().add_session(unknown_room).await,
        Code::NotFound,
        "room-nope",
    );
    let mut unknown_speaker = s("Nobody", "2024-11-14T05:00:00Z", "2024-11-14T06:00:00Z");
    unknown_speaker.speaker_ids = vec!["spk-nobody".into()];
    expect(
        agenda.clone().add_session(unknown_speaker).await,
        Code::NotFound,
        "spk-nobody",
    );
    let mut no_start = s("No start", "2024-11-14T05:00:00Z", "2024-11-14T06:00:00Z");
    no_start.start = None;
    expect(
        agenda.clone().add_session(no_start).await,
        Code::InvalidArgument,
        "start",
    );
    let mut bad_id = s("Bad id", "2024-11-14T05:00:00Z", "2024-11-14T06:00:00Z");
    bad_id.request_id = "not-a-uuid".into();
    expect(
        agenda.clone().add_session(bad_id).await,
        Code::InvalidArgument,
        "request_id",
    );
    expect(
        agenda
            .clone()
            .get_session(pb::GetSessionRequest {
                conference_id: CONFERENCE.into(),
                session_id: "ses-unknown".into(),
            })
            .await,
        Code::NotFound,
        "ses-unknown",
    );
    expect(
        agenda
            .clone()
            .create_conference(pb::CreateConferenceRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                title: text("Again"),
                default_language: "en".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                join_code: String::new(),
            })
            .await,
        Code::AlreadyExists,
        CONFERENCE,
    );
    expect(
        agenda
            .clone()
            .create_conference(pb::CreateConferenceRequest {
                request_id: Client::request_id(),
                conference_id: "Bad Slug!".into(),
                title: text("Bad"),
                default_language: "en".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                join_code: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "conference_id",
    );
    expect(
        admin
            .access()
            .join(pb::JoinRequest {
                join_code: "WRONG-CODE".into(),
                display_name: String::new(),
            })
            .await,
        Code::NotFound,
        "join code",
    );

    let after = stored_events(admin, CONFERENCE, 0).await;
    assert_eq!(
        after, before,
        "refused requests must not change stored state"
    );
}

#[tokio::test]
async fn suggested_slots_suit_every_speaker_and_avoid_their_sessions() {
    let show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    // Phnom Penh 08:00-21:00 and New York 08:00-21:00 (EST, UTC-5, twelve hours behind)
    // overlap twice a day: 08:00-09:00 and 20:00-21:00 in Phnom Penh.
    let slots = admin
        .agenda()
        .suggest_slots(pb::SuggestSlotsRequest {
            conference_id: CONFERENCE.into(),
            speaker_ids: vec![odc.sokha.id.clone(), odc.sarah.id.clone()],
            duration_minutes: 30,
            from_date: "2024-11-14".into(),
            to_date: "2024-11-14".into(),
            room_id: odc.hall.id.clone(),
            limit: 10,
            step_minutes: 15,
        })
        .await
        .unwrap()
        .into_inner()
        .slots;
    let starts: Vec<&str> = slots
        .iter()
        .map(|s| s.start.as_ref().unwrap().local.as_str())
        .collect();
    // 08:00 in Phnom Penh is 20:00 the evening before in New York, 20:00 is 08:00 there.
    assert_eq!(
        starts,
        [
            "2024-11-14T08:00:00+07:00",
            "2024-11-14T08:15:00+07:00",
            "2024-11-14T08:30:00+07:00",
            "2024-11-14T20:00:00+07:00",
            "2024-11-14T20:15:00+07:00",
            "2024-11-14T20:30:00+07:00"
        ]
    );
    for slot in &slots {
        assert!(slot.speakers.iter().all(|s| s.within_hours));
    }
    // Book the first one; it is no longer suggested.
    admin
        .agenda()
        .add_session(odc.session(
            "Panel: data across borders",
            "2024-11-14T13:00:00Z",
            "2024-11-14T13:30:00Z",
            vec![odc.sarah.id.clone()],
        ))
        .await
        .unwrap();
    let slots = admin
        .agenda()
        .suggest_slots(pb::SuggestSlotsRequest {
            conference_id: CONFERENCE.into(),
            speaker_ids: vec![odc.sokha.id.clone(), odc.sarah.id.clone()],
            duration_minutes: 30,
            from_date: "2024-11-14".into(),
            to_date: "2024-11-14".into(),
            room_id: String::new(),
            limit: 10,
            step_minutes: 15,
        })
        .await
        .unwrap()
        .into_inner()
        .slots;
    let starts: Vec<&str> = slots
        .iter()
        .map(|s| s.start.as_ref().unwrap().local.as_str())
        .collect();
    assert_eq!(
        starts,
        [
            "2024-11-14T08:00:00+07:00",
            "2024-11-14T08:15:00+07:00",
            "2024-11-14T08:30:00+07:00",
            "2024-11-14T20:30:00+07:00"
        ]
    );
}
