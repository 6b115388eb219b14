//! Rooms as the status service knows them: every room of the conference, with sessions or not.

use futures::StreamExt;
use podium_client::pb;
use podium_e2e::CONFERENCE;

use super::stage;

/// A room is a room before its first session and after its last one moved away: its playout
/// bridge watches it and reports its output. A room the conference does not have is NOT_FOUND,
/// named.
#[tokio::test]
async fn a_bridge_watches_and_reports_a_room_without_sessions() {
    let (show, _) = stage(pb::FailbackMode::Sticky, false).await;
    let empty = podium_e2e::add_room(&show.admin, CONFERENCE, "Workshop room", 30)
        .await
        .unwrap();
    let watch = |room: String| {
        let mut stage = show.admin.stage();
        async move {
            stage
                .watch_status(pb::WatchStatusRequest {
                    conference_id: CONFERENCE.into(),
                    room_id: room,
                    from_position: 0,
                })
                .await
        }
    };
    let mut watching = watch(empty.id.clone()).await.unwrap().into_inner();
    match watching.next().await.unwrap().unwrap().update {
        Some(pb::watch_status_response::Update::Snapshot(s)) => {
            assert!(s.sessions.is_empty(), "{s:?}")
        }
        other => panic!("a snapshot first, got {other:?}"),
    }
    let report = |room: String| {
        let mut playout = show.admin.playout();
        let output = pb::ProgramOutput {
            room_id: room,
            scene: "Placeholder".into(),
            obs_connected: true,
            ..Default::default()
        };
        let first = pb::PlayoutReportRequest {
            conference_id: CONFERENCE.into(),
            output: Some(output),
        };
        async move { playout.report(futures::stream::iter([first])).await }
    };
    report(empty.id.clone()).await.unwrap();
    for refused in [
        watch("room-nowhere".into()).await.map(drop),
        report("room-nowhere".into()).await.map(drop),
    ] {
        let refused = refused.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
        assert!(
            refused.message().contains("room room-nowhere not found"),
            "{refused:?}"
        );
    }
}
