//! Backup speakers stand by: backing up a talk is not being booked, so one person may back up
//! talks that overlap (never speak in one while speaking in or backing up another), and their
//! agents for those sessions run side by side.

use futures::StreamExt;
use podium_client::{
    Client,
    agent::{AgentConfig, AgentEvent, run_agent},
    pb,
};
use podium_e2e::{CONFERENCE, PATIENCE, Show, Speaker, add_room, add_speaker};
use tonic::Code;

/// Backing up a talk is not being booked: one speaker may back up two talks at once in two
/// rooms, but cannot speak while backing up, nor back up while speaking.
#[tokio::test]
async fn a_backup_speaker_may_back_up_talks_that_overlap() {
    let show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    let studio = add_room(admin, CONFERENCE, "Studio B", 40).await.unwrap();
    let backed_up_by_sarah = |title: &str, room: &pb::Room| {
        let mut s = odc.session(
            title,
            "2024-11-14T03:00:00Z",
            "2024-11-14T04:00:00Z",
            vec![odc.sokha.id.clone()],
        );
        s.room_id = room.id.clone();
        s.backup_speaker_ids = vec![odc.sarah.id.clone()];
        s
    };
    let budgets = admin
        .agenda()
        .add_session(backed_up_by_sarah("Budgets in the open", &odc.hall))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    // Sokha cannot speak twice at once; with another speaker, Sarah backs up both.
    let mut second = backed_up_by_sarah("Land data", &studio);
    let refused = admin
        .agenda()
        .add_session(second.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("they speak in session"),
        "{}",
        refused.message()
    );
    let extra = add_speaker(
        admin,
        CONFERENCE,
        "Vanna Chea",
        "Open Development Cambodia",
        "Asia/Phnom_Penh",
    )
    .await
    .unwrap();
    second.request_id = Client::request_id();
    second.speaker_ids = vec![extra.id.clone()];
    let land = admin
        .agenda()
        .add_session(second)
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    // Sarah speaking at that time would leave both talks without their backup.
    let mut speaking = odc.session(
        "Sarah's own talk",
        "2024-11-14T03:30:00Z",
        "2024-11-14T04:30:00Z",
        vec![odc.sarah.id.clone()],
    );
    let third_room = add_room(admin, CONFERENCE, "Terrace", 20).await.unwrap();
    speaking.room_id = third_room.id;
    let refused = admin.agenda().add_session(speaking).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().starts_with(&format!(
            "speaker {} cannot speak here: they back up session",
            odc.sarah.id
        )),
        "{}",
        refused.message()
    );

    // Standing by for both talks: one agent per session, side by side; neither replaces the
    // other.
    let sarah = show
        .token(pb::Role::Speaker, Some(Speaker::Sarah), "Sarah's laptop")
        .await
        .unwrap();
    let sarah = Client::connect(&show.server.addr, Some(sarah))
        .await
        .unwrap();
    let agents = [&budgets.id, &land.id]
        .map(|session| Box::pin(run_agent(sarah.clone(), AgentConfig::new(session))));
    let [mut for_budgets, mut for_land] = agents;
    for agent in [&mut for_budgets, &mut for_land] {
        assert!(matches!(
            agent.next().await,
            Some(Ok(AgentEvent::Connected(_)))
        ));
    }
    for agent in [&mut for_budgets, &mut for_land] {
        for _ in 0..8 {
            let event = tokio::time::timeout(PATIENCE, agent.next())
                .await
                .expect("in time");
            assert!(
                matches!(event, Some(Ok(AgentEvent::Acked { .. }))),
                "a backup's agent for one session was ended by its agent for the other: {event:?}"
            );
        }
    }
}
