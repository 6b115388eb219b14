//! The public event feed: filters, isolation between conferences, and a follower that keeps
//! going across a podiumd restart with no gap and no duplicate.

use futures::StreamExt;
use podium_client::{Client, FeedItem, pb};
use podium_e2e::{CONFERENCE, PATIENCE, Show};

use crate::agenda::stored_events;

fn room(name: &str) -> pb::AddRoomRequest {
    pb::AddRoomRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        name: name.into(),
        capacity: 0,
    }
}

#[tokio::test]
async fn the_feed_filters_by_type_and_never_shows_another_conference() {
    let show = Show::start().await.unwrap();
    show.other_conference().await.unwrap();
    let admin = &show.admin;
    admin
        .agenda()
        .add_room(room("Breakout room B"))
        .await
        .unwrap();

    let all = stored_events(admin, CONFERENCE, 0).await;
    let prefix = format!("conference/{CONFERENCE}/");
    assert!(all.iter().all(|e| e.stream.starts_with(&prefix)));
    assert_eq!(all.len(), 5);

    let feed = admin.follow_feed(CONFERENCE, 0, vec!["podium.v1.RoomAdded".into()]);
    futures::pin_mut!(feed);
    let mut rooms = Vec::new();
    while let Some(FeedItem::Event(event)) = feed.next().await.transpose().unwrap() {
        let added: pb::RoomAdded = prost::Message::decode(event.payload.as_slice()).unwrap();
        rooms.push(added.name);
    }
    assert_eq!(rooms, ["Main hall", "Breakout room B"]);

    let bad = admin
        .feed()
        .subscribe(pb::SubscribeRequest {
            conference_id: CONFERENCE.into(),
            from_position: 0,
            types: vec![String::new()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

async fn take(
    n: usize,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<pb::Event>,
) -> Vec<pb::Event> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .expect("event in time")
                .expect("follower alive"),
        );
    }
    out
}

#[tokio::test]
async fn a_follower_resumes_across_a_restart_without_gap_or_duplicate() {
    let mut show = Show::start().await.unwrap();
    let integration_token = show
        .token(pb::Role::Integration, None, "OBS bridge")
        .await
        .unwrap();
    let bridge = show.server.client(Some(integration_token)).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(async move {
        let feed = bridge.follow_feed(CONFERENCE, 0, vec![]);
        futures::pin_mut!(feed);
        while let Some(item) = feed.next().await {
            if let Ok(FeedItem::Event(event)) = item
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    seen.extend(take(4, &mut rx).await);

    show.restart().await.unwrap();
    for name in ["Room 1", "Room 2", "Room 3"] {
        show.admin.agenda().add_room(room(name)).await.unwrap();
    }
    seen.extend(take(3, &mut rx).await);
    follower.abort();

    // Every event once, in order, across the restart: increasing positions, and exactly the
    // conference's stored events (positions of other streams, such as the join code's claim
    // and the integration token's record, are not on the conference's feed).
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {positions:?}"
    );
    assert_eq!(seen.len(), 7);
    assert_eq!(seen, stored_events(&show.admin, CONFERENCE, 0).await);
}
