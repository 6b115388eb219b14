//! A session changed after it was scheduled (`Agenda/UpdateSession`): moved to another hour or
//! room, a withdrawn speaker replaced, retitled; through the client library and the CLI. A move
//! is checked as a new session is, except against the slot it leaves, and refused once the
//! session is live; the change survives a restart, reaches the live status (a room's watchers
//! told a session left the room, a removed speaker's own watchers and speaker page told she no
//! longer speaks there), stops a removed speaker's connected agent, and is a second
//! `SessionScheduled` on the feed.

use futures::StreamExt;
use podium_client::{
    Client,
    agent::{AgentConfig, AgentEvent, run_agent},
    pb,
};
use podium_e2e::{
    CONFERENCE, PATIENCE, Show, Speaker, add_room, cli, cli_lines, http, text, ts, unchanged,
};
use tonic::Code;

use crate::agenda::stored_events;

#[tokio::test]
async fn an_organiser_moves_a_session_replaces_its_speaker_and_the_change_holds_everywhere() {
    let mut show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin.clone(), &show.odc.clone());
    let agenda = admin.agenda();
    let add = |title: &str, start: &str, end: &str, speaker: &pb::Speaker| {
        let mut agenda = admin.agenda();
        let request = odc.session(title, start, end, vec![speaker.id.clone()]);
        async move {
            agenda
                .add_session(request)
                .await
                .unwrap()
                .into_inner()
                .session
                .unwrap()
        }
    };
    let keynote = add(
        "Opening keynote",
        "2024-11-14T02:00:00Z",
        "2024-11-14T02:45:00Z",
        &odc.sokha,
    )
    .await;
    let panel = add(
        "Open budgets panel",
        "2024-11-14T03:00:00Z",
        "2024-11-14T03:45:00Z",
        &odc.sarah,
    )
    .await;
    let update = |request: pb::UpdateSessionRequest| {
        let mut agenda = agenda.clone();
        async move { agenda.update_session(request).await }
    };

    // Half an hour later: it overlaps the slot it leaves, which is no clash.
    let mut later = unchanged(&keynote);
    later.start = Some(ts("2024-11-14T02:30:00Z"));
    later.end = Some(ts("2024-11-14T03:00:00Z"));
    let moved = update(later.clone())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(moved.id, keynote.id);
    assert_eq!(
        moved.start.as_ref().unwrap().label,
        "Thu 14 Nov 2024 09:30 +07 (Asia/Phnom_Penh)"
    );
    // Sent again, it is answered and changes nothing.
    let events = stored_events(admin, CONFERENCE, 0).await.len();
    update(later.clone()).await.unwrap();
    assert_eq!(stored_events(admin, CONFERENCE, 0).await.len(), events);
    // The move is the keynote's first change: a change made to it as first read (revision 0)
    // is refused now, not written over the move.
    assert_eq!((keynote.revision, moved.revision), (0, 1));
    let stale = update(unchanged(&keynote)).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert!(
        stale
            .message()
            .contains("changed since revision 0 (it is at revision 1)"),
        "{stale:?}"
    );
    // Its request id, sent for another session, is refused.
    let reused = pb::UpdateSessionRequest {
        session_id: panel.id.clone(),
        ..unchanged(&panel)
    };
    let reused = pb::UpdateSessionRequest {
        request_id: later.request_id.clone(),
        ..reused
    };
    let refused = update(reused).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("request_id"), "{refused:?}");

    // Into the panel's slot in the same room: refused, naming the panel.
    let mut onto_panel = unchanged(&moved);
    onto_panel.start = Some(ts("2024-11-14T03:15:00Z"));
    onto_panel.end = Some(ts("2024-11-14T04:00:00Z"));
    let clash = update(onto_panel).await.unwrap_err();
    assert_eq!(clash.code(), Code::FailedPrecondition, "{clash:?}");
    assert!(clash.message().contains(&panel.id), "{}", clash.message());
    let mut unknown = unchanged(&moved);
    unknown.session_id = "ses-nowhere".into();
    let missing = update(unknown).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(
        stored_events(admin, CONFERENCE, 0).await.len(),
        events,
        "refusals store nothing"
    );

    // Sokha withdrew: Sarah takes the keynote in the breakout room, retitled.
    let breakout = add_room(admin, CONFERENCE, "Breakout room", 40)
        .await
        .unwrap();
    // Sokha's agent was already connected, in the green room, when she withdrew.
    let sokha_token = show
        .token(pb::Role::Speaker, Some(Speaker::Sokha), "Sokha's laptop")
        .await
        .unwrap();
    let sokha = Client::connect(&show.server.addr, Some(sokha_token.clone()))
        .await
        .unwrap();
    let agent = run_agent(sokha, AgentConfig::new(&keynote.id));
    futures::pin_mut!(agent);
    assert!(matches!(
        agent.next().await,
        Some(Ok(AgentEvent::Connected(_)))
    ));
    // The status stream of one room (all if empty), from a position, as `client` may see it.
    let watch = |client: &Client, room_id: &str, from_position| {
        let mut stage = client.stage();
        let room_id = room_id.to_owned();
        async move {
            stage
                .watch_status(pb::WatchStatusRequest {
                    conference_id: CONFERENCE.into(),
                    room_id,
                    from_position,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // A watcher of the hall (a playout bridge, a board) has the keynote in its snapshot.
    let watch_hall = |from_position| watch(admin, &odc.hall.id, from_position);
    let mut hall = watch_hall(0).await;
    let first = hall.next().await.unwrap().unwrap();
    let Some(pb::watch_status_response::Update::Snapshot(before)) = first.update else {
        panic!("a snapshot first, got {first:?}")
    };
    assert!(before.sessions.iter().any(|s| s.session_id == keynote.id));
    // So do `podium status watch --room`'s lines, and its JSON.
    let token = show.server.admin_token().unwrap();
    let cli_watch = |json: bool| {
        let mut args = vec!["-c", CONFERENCE, "status", "watch", "--room", &odc.hall.id];
        args.extend(json.then_some("--json"));
        cli_lines(&show.server, &token, &args).unwrap()
    };
    let (mut lines, mut json) = (cli_watch(false), cli_watch(true));
    lines.find(&keynote.id).await.unwrap();
    json.find(&keynote.id).await.unwrap();
    let snapshot = |message: pb::WatchStatusResponse| match message.update {
        Some(pb::watch_status_response::Update::Snapshot(all)) => all.sessions,
        other => panic!("a snapshot first, got {other:?}"),
    };
    // The sessions a status stream opens with.
    let opening = async |mut stream: tonic::Streaming<pb::WatchStatusResponse>| {
        snapshot(stream.next().await.unwrap().unwrap())
    };
    // Sokha's own status stream, and her speaker page's live part, are open too.
    let hers = Client::connect(&show.server.addr, Some(sokha_token.clone()))
        .await
        .unwrap();
    let watch_hers = |from_position| watch(&hers, "", from_position);
    let mut her_status = watch_hers(0).await;
    // So is her `podium status watch`, in lines and in JSON.
    let her_cli = |json: bool| {
        let mut args = vec!["-c", CONFERENCE, "status", "watch"];
        args.extend(json.then_some("--json"));
        cli_lines(&show.server, &sokha_token, &args).unwrap()
    };
    let (mut her_lines, mut her_json) = (her_cli(false), her_cli(true));
    her_lines.find(&keynote.id).await.unwrap();
    her_json.find(&keynote.id).await.unwrap();
    let her_first = her_status.next().await.unwrap().unwrap();
    let her_sessions = snapshot(her_first.clone());
    assert!(her_sessions.iter().any(|s| s.session_id == keynote.id));
    let cookie = format!("{}={sokha_token}", show.server.session_cookie());
    let her_page = |path: String, last_seen: String| {
        let (addr, cookie) = (show.server.addr.clone(), cookie.clone());
        async move {
            let mut headers = vec![("cookie", cookie.as_str())];
            headers
                .extend((!last_seen.is_empty()).then_some(("last-event-id", last_seen.as_str())));
            let (status, page) = http::open_stream(&addr, &path, &headers).await.unwrap();
            assert_eq!(status, 200);
            page
        }
    };
    let live = || "/live/speaker".to_owned();
    let mut page = her_page(live(), String::new()).await;
    // Her page as rendered now: its stream, opened only after the change below, must follow on
    // from what the page shows.
    let rendered = http::request(&show.server.addr, "GET", "/s/", &[("cookie", &cookie)], "")
        .await
        .unwrap();
    assert_eq!(rendered.status, 200, "{}", rendered.body);
    let rendered_live = rendered
        .body
        .split("data-live=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("her page follows a live stream")
        .to_owned();
    assert!(
        rendered_live.starts_with("/live/speaker?from="),
        "{rendered_live}"
    );
    // Her calendar file has the keynote at its new time, as its first change (SEQUENCE 1), so a
    // calendar that has the first one replaces it.
    let ics = http::request(
        &show.server.addr,
        "GET",
        &format!("/s/session/{}.ics", keynote.id),
        &[("cookie", &cookie)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(ics.status, 200, "{}", ics.body);
    assert!(
        ics.body.contains("DTSTART:20241114T023000Z\r\n"),
        "{}",
        ics.body
    );
    assert!(ics.body.contains("SEQUENCE:1\r\n"), "{}", ics.body);
    http::read_until(&mut page, &format!("live-{}", keynote.id))
        .await
        .unwrap();
    let mut handed_over = unchanged(&moved);
    handed_over.speaker_ids = vec![odc.sarah.id.clone()];
    handed_over.room_id = breakout.id.clone();
    handed_over.title = text("Opening keynote, by Sarah Miller");
    update(handed_over).await.unwrap();
    // The hall's watcher is sent the keynote once more, with its new room, to drop it.
    let left = tokio::time::timeout(PATIENCE, async {
        loop {
            let message = hall.next().await.unwrap().unwrap();
            // (The keynote's link may change in the hall first: Sokha's agent connected.)
            if let Some(pb::watch_status_response::Update::Changed(s)) = message.update
                && s.session_id == keynote.id
                && s.room_id != odc.hall.id
            {
                return s;
            }
        }
    })
    .await
    .expect("the hall's watcher told the keynote left");
    assert_eq!(left.room_id, breakout.id);
    drop(hall);
    let line = lines.find("left this room").await.unwrap();
    assert!(line.contains(&keynote.id), "{line}");
    assert!(line.ends_with("now in Breakout room"), "{line}");
    let left: serde_json::Value =
        serde_json::from_str(&json.find("leftRoom").await.unwrap()).unwrap();
    assert_eq!(left["sessionId"], keynote.id.as_str(), "{left}");
    assert_eq!(left["roomId"], breakout.id.as_str(), "{left}");
    assert_eq!(left["leftRoom"], true, "{left}");
    drop((lines, json));
    // Sokha's stream is sent the keynote once more, without links: none names her, she drops
    // it. Her page says so in place, and so does one reconnecting from before the change.
    let taken_off = tokio::time::timeout(PATIENCE, async {
        loop {
            let message = her_status.next().await.unwrap().unwrap();
            if let Some(pb::watch_status_response::Update::Changed(s)) = message.update
                && s.session_id == keynote.id
                && !s.links.iter().any(|l| l.speaker_id == odc.sokha.id)
            {
                return s;
            }
        }
    })
    .await
    .expect("Sokha's watcher told she no longer speaks in the keynote");
    // Its title and state only: what is on air and who else speaks are no longer hers to see.
    assert_eq!(
        taken_off,
        pb::SessionStatus {
            session_id: keynote.id.clone(),
            room_id: breakout.id.clone(),
            title: "Opening keynote, by Sarah Miller".into(),
            state: pb::SessionState::Scheduled as i32,
            ..Default::default()
        }
    );
    let line = her_lines.find("no longer speak").await.unwrap();
    assert!(line.contains(&keynote.id), "{line}");
    assert!(
        line.ends_with("you no longer speak in this session"),
        "{line}"
    );
    let off: serde_json::Value =
        serde_json::from_str(&her_json.find("takenOff").await.unwrap()).unwrap();
    assert_eq!(off["sessionId"], keynote.id.as_str(), "{off}");
    assert_eq!(off["takenOff"], true, "{off}");
    drop((her_lines, her_json));
    let taken_off = "You no longer speak in this session";
    http::read_until(&mut page, taken_off).await.unwrap();
    let mut reconnected = her_page(live(), her_first.position.to_string()).await;
    http::read_until(&mut reconnected, taken_off).await.unwrap();
    // The page rendered before the change opens its stream only now, and is told too.
    let mut late = her_page(rendered_live, String::new()).await;
    http::read_until(&mut late, taken_off).await.unwrap();
    drop((her_status, page, reconnected, late));
    let her_resumed = opening(watch_hers(her_first.position).await).await;
    assert!(
        her_resumed
            .iter()
            .any(|s| s.session_id == keynote.id && s.links.is_empty()),
        "{her_resumed:?}"
    );
    let her_fresh = opening(watch_hers(0).await).await;
    assert!(
        !her_fresh.iter().any(|s| s.session_id == keynote.id),
        "{her_fresh:?}"
    );
    // So is the hall's watcher resuming from before the move; a fresh one does not see the
    // keynote at all.
    let resumed = opening(watch_hall(first.position).await).await;
    assert!(
        resumed
            .iter()
            .any(|s| s.session_id == keynote.id && s.room_id == breakout.id),
        "{resumed:?}"
    );
    let fresh = opening(watch_hall(0).await).await;
    assert!(
        !fresh.iter().any(|s| s.session_id == keynote.id),
        "{fresh:?}"
    );
    // Her agent is told at its next heartbeat that she no longer speaks there, and stops.
    let told = tokio::time::timeout(PATIENCE, async {
        loop {
            match agent.next().await {
                Some(Ok(AgentEvent::Acked { .. })) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the withdrawn speaker's agent told in time");
    let Some(Err(stopped)) = told else {
        panic!("expected the agent to be refused, got {told:?}")
    };
    assert_eq!(stopped.code(), Code::PermissionDenied, "{stopped:?}");
    assert!(
        stopped.message().contains("no longer a speaker"),
        "{stopped:?}"
    );
    // A late retry of the first move gets the first move's answer, not the session as the
    // handover left it.
    let first_answer = update(later).await.unwrap().into_inner().session.unwrap();
    assert_eq!(first_answer.room_id, odc.hall.id);
    assert_eq!(first_answer.revision, 1);
    let speaker_ids: Vec<&str> = first_answer
        .speakers
        .iter()
        .map(|s| s.speaker_id.as_str())
        .collect();
    assert_eq!(speaker_ids, [odc.sokha.id.as_str()]);

    // The live status follows: the keynote's status names its new room and title.
    let mut status = watch(admin, "", 0).await;
    let seen = tokio::time::timeout(PATIENCE, async {
        while let Some(message) = status.next().await {
            let sessions = match message.unwrap().update {
                Some(pb::watch_status_response::Update::Snapshot(all)) => all.sessions,
                Some(pb::watch_status_response::Update::Changed(one)) => vec![one],
                None => Vec::new(),
            };
            if let Some(s) = sessions
                .into_iter()
                .find(|s| s.session_id == keynote.id && s.room_id == breakout.id)
            {
                return s;
            }
        }
        panic!("the status stream ended");
    })
    .await
    .expect("the keynote's status in its new room");
    assert_eq!(seen.title, "Opening keynote, by Sarah Miller");

    // The feed has the change as a second SessionScheduled of the same session, and a restart
    // keeps it.
    let scheduled: Vec<pb::SessionScheduled> = stored_events(admin, CONFERENCE, 0)
        .await
        .iter()
        .filter(|e| e.r#type == "podium.v1.SessionScheduled")
        .map(|e| prost::Message::decode(e.payload.as_slice()).unwrap())
        .filter(|s: &pb::SessionScheduled| s.session_id == keynote.id)
        .collect();
    assert_eq!(scheduled.len(), 3, "added, moved, handed over");
    show.restart().await.unwrap();
    let after = show
        .admin
        .agenda()
        .get_session(pb::GetSessionRequest {
            conference_id: CONFERENCE.into(),
            session_id: keynote.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(after.room_id, breakout.id);
    let names: Vec<&str> = after.speakers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Sarah Miller"]);

    // From the command line: a new start alone keeps the length (30 minutes).
    let (ok, out, err) = cli(
        &show.server,
        &token,
        &[
            "session",
            "change",
            &keynote.id,
            "-c",
            CONFERENCE,
            "--start",
            "2024-11-14 11:00",
        ],
    )
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("Thu 14 Nov 2024 11:00 +07 (Asia/Phnom_Penh)"),
        "{out}"
    );
    assert!(out.contains("11:30"), "{out}");
    // The move, the handover and this: the keynote's third change.
    assert!(out.contains("Revision    3 "), "{out}");
    // A clash is the server's message, and a failure.
    let (ok, _, err) = cli(
        &show.server,
        &token,
        &[
            "session",
            "change",
            &panel.id,
            "-c",
            CONFERENCE,
            "--speaker",
            &odc.sarah.id,
            "--room",
            &breakout.id,
            "--start",
            "2024-11-14 11:15",
        ],
    )
    .unwrap();
    assert!(!ok);
    assert!(err.contains(&keynote.id), "{err}");

    // Once a moderator has taken a session live, its room, speakers and times are the live
    // status's: the agenda refuses to change it.
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            conference_id: CONFERENCE.into(),
            session_id: panel.id.clone(),
            request_id: Client::request_id(),
        })
        .await
        .unwrap();
    let mut live = unchanged(&panel);
    live.end = Some(ts("2024-11-14T04:00:00Z"));
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            // The agenda learns from the log that the session went live.
            let attempt = pb::UpdateSessionRequest {
                request_id: Client::request_id(),
                ..live.clone()
            };
            match show.admin.agenda().update_session(attempt).await {
                Err(status) if status.code() == Code::FailedPrecondition => return status,
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("a change to a live session refused");
    assert!(refused.message().contains("is live"), "{refused:?}");
}
