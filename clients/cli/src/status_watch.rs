//! `podium status watch`: the live status of a conference (or one room) as it changes, as a
//! board redrawn in place on a terminal, a line per change otherwise, or JSON lines.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
};

use futures::StreamExt;
use podium_client::{StatusUpdate, left_room, pb, taken_off};

use crate::{
    Ctx,
    output::table,
    stage::{Names, StatusCmd, link_text, on_air, program_text, state},
};

pub async fn watch(ctx: &Ctx, cmd: StatusCmd) -> anyhow::Result<()> {
    let StatusCmd::Watch { room } = cmd;
    let conference_id = ctx.conference().await?;
    let names = Names::load(ctx, &conference_id).await;
    // A speaker's token watches their own sessions only, and is told when taken off one. A
    // node that cannot say whose token it is (one running only the status service) is still
    // watched: without the speaker id, taken-off sessions are only not dropped.
    let speaker_id = match ctx.client.access().who_am_i(pb::WhoAmIRequest {}).await {
        Ok(me) => me.into_inner().principal.map(|p| p.speaker_id),
        Err(status) => {
            eprintln!(
                "warning: podiumd did not say whose token this is: {}",
                status.message()
            );
            None
        }
    }
    .unwrap_or_default();
    let board = std::io::stdout().is_terminal() && !ctx.out.json;
    let updates = ctx
        .client
        .watch_status(&conference_id, room.as_deref().unwrap_or_default());
    futures::pin_mut!(updates);
    let mut sessions: BTreeMap<String, pb::SessionStatus> = BTreeMap::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(update) = updates.next().await {
        let (position, changed) = match update? {
            StatusUpdate::Snapshot {
                position,
                sessions: list,
            } => (position, list),
            StatusUpdate::Changed { position, session } => (position, vec![*session]),
        };
        // A session moved to another room is sent once more to its old room's watchers, and
        // one a speaker was taken off to that speaker's.
        let left = |s: &pb::SessionStatus| left_room(room.as_deref().unwrap_or_default(), s);
        let off = |s: &pb::SessionStatus| taken_off(&speaker_id, s);
        for session in &changed {
            match left(session) || off(session) {
                true => sessions.remove(&session.session_id),
                false => sessions.insert(session.session_id.clone(), session.clone()),
            };
        }
        let written = if ctx.out.json {
            changed.iter().try_for_each(|s| {
                let mut json = podium_client::message_to_json(s);
                if let Some(o) = json.as_object_mut() {
                    o.insert("position".into(), position.into());
                    if left(s) {
                        o.insert("leftRoom".into(), true.into());
                    }
                    if off(s) {
                        o.insert("takenOff".into(), true.into());
                    }
                }
                writeln!(stdout, "{json}")
            })
        } else if board {
            // Redraw in place: clear the screen, then the whole board.
            write!(
                stdout,
                "\x1b[2J\x1b[H{}\n(position {position}; Ctrl-C stops)\n",
                board_table(&sessions, &names)
            )
        } else {
            changed.iter().try_for_each(|s| {
                if left(s) {
                    let now_in = names.rooms.get(&s.room_id).unwrap_or(&s.room_id);
                    return writeln!(
                        stdout,
                        "#{position} {} left this room: now in {now_in}",
                        s.session_id
                    );
                }
                if off(s) {
                    return writeln!(
                        stdout,
                        "#{position} {} ({}): you no longer speak in this session",
                        s.session_id, s.title
                    );
                }
                let links: Vec<String> = s.links.iter().map(|l| link_text(l, &names)).collect();
                writeln!(
                    stdout,
                    "#{position} {} [{}] {}: {} | program: {} | {}",
                    s.session_id,
                    state(s.state),
                    s.title,
                    on_air(s.source.as_ref(), &names),
                    program_text(s).replace('\n', "; "),
                    links.join("; ")
                )
            })
        };
        match written.and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn board_table(
    sessions: &BTreeMap<String, pb::SessionStatus>,
    names: &Names,
) -> comfy_table::Table {
    let mut t = table(&[
        "Room",
        "Session",
        "State",
        "On air (decided)",
        "Program (OBS)",
        "Links",
        "Alert",
    ]);
    let mut rows: Vec<&pb::SessionStatus> = sessions.values().collect();
    rows.sort_by_key(|s| {
        (
            s.room_id.clone(),
            s.state != pb::SessionState::Live as i32,
            s.session_id.clone(),
        )
    });
    for s in rows {
        t.add_row(vec![
            names
                .rooms
                .get(&s.room_id)
                .cloned()
                .unwrap_or_else(|| s.room_id.clone()),
            format!("{}\n{}", s.title, s.session_id),
            format!(
                "{}{}",
                state(s.state),
                if s.pinned { " (pinned)" } else { "" }
            ),
            on_air(s.source.as_ref(), names),
            program_text(s),
            s.links
                .iter()
                .map(|l| link_text(l, names))
                .collect::<Vec<_>>()
                .join("\n"),
            s.alerts
                .last()
                .map(|a| a.message.clone())
                .unwrap_or_default(),
        ]);
    }
    t
}
