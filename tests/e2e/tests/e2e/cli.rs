//! The `podium` CLI against a real podiumd: the README's quickstart, and errors that print the
//! server's message and exit non-zero.

use podium_e2e::{CONFERENCE, Podiumd, cli};

#[tokio::test]
async fn the_quickstart_works_from_the_command_line() {
    let server = tokio::task::spawn_blocking(|| Podiumd::start().unwrap())
        .await
        .unwrap();
    let admin = server.admin_token().unwrap();
    let run = |args: &[&str]| {
        let (ok, out, err) = cli(&server, &admin, args).unwrap();
        assert!(ok, "podium {args:?} failed: {err}");
        out
    };
    run(&[
        "conference",
        "create",
        "--id",
        CONFERENCE,
        "--title",
        "Open Data Conference 2024",
        "--title",
        "km=សន្និសីទទិន្នន័យបើកចំហ ២០២៤",
        "--time-zone",
        "Asia/Phnom_Penh",
        "--join-code",
        "ODC-2024",
    ]);
    let room = run(&[
        "room",
        "add",
        "Main hall",
        "--capacity",
        "300",
        "-c",
        CONFERENCE,
    ])
    .trim()
    .to_owned();
    let mei = run(&[
        "speaker",
        "add",
        "Mei-Ling Chen",
        "--organisation",
        "g0v",
        "--time-zone",
        "Asia/Taipei",
        "-c",
        CONFERENCE,
    ])
    .trim()
    .to_owned();
    let sarah = run(&[
        "speaker",
        "add",
        "Sarah Miller",
        "--organisation",
        "Open Knowledge Foundation",
        "--time-zone",
        "America/New_York",
        "--hours",
        "07:00-22:00",
        "-c",
        CONFERENCE,
    ])
    .trim()
    .to_owned();
    assert!(room.starts_with("room-") && mei.starts_with("spk-") && sarah.starts_with("spk-"));

    let shown = run(&[
        "session",
        "add",
        "-c",
        CONFERENCE,
        "--title",
        "Open data in Taiwan",
        "--room",
        &room,
        "--start",
        "2024-11-14 09:00",
        "--minutes",
        "45",
        "--speaker",
        &mei,
        "--backup",
        &sarah,
    ]);
    assert!(
        shown.contains("Thu 14 Nov 2024 09:00 +07 (Asia/Phnom_Penh)"),
        "{shown}"
    );
    assert!(
        shown.contains("Thu 14 Nov 2024 10:00 CST (Asia/Taipei)"),
        "{shown}"
    );
    assert!(
        shown.contains("Wed 13 Nov 2024 21:00 EST (America/New_York)"),
        "{shown}"
    );

    let listed: serde_json::Value =
        serde_json::from_str(&run(&["session", "list", "-c", CONFERENCE, "--json"])).unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["start"]["local"], "2024-11-14T09:00:00+07:00");
    assert_eq!(sessions[0]["speakers"][1]["timeZone"], "America/New_York");

    let slots = run(&[
        "slots",
        "suggest",
        "-c",
        CONFERENCE,
        "--speaker",
        &mei,
        "--speaker",
        &sarah,
        "--minutes",
        "60",
        "--from",
        "2024-11-15",
        "--limit",
        "2",
    ]);
    assert!(
        slots.contains("Asia/Taipei") && slots.contains("America/New_York"),
        "{slots}"
    );

    let attendee = run(&["join", "odc-2024", "--name", "Dara"])
        .trim()
        .to_owned();
    let (ok, me, _) = cli(&server, &attendee, &["whoami"]).unwrap();
    assert!(ok);
    assert!(
        me.contains("role attendee") && me.contains(CONFERENCE),
        "{me}"
    );

    let tail = run(&["events", "tail", "-c", CONFERENCE, "--no-follow"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 5, "{tail}");
    assert!(
        // #0 is the claim of the join code, a stream of its own: not on the conference's feed.
        lines[0].starts_with("#1") && lines[0].contains("ConferenceCreated"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn errors_print_the_servers_message_and_exit_non_zero() {
    let server = tokio::task::spawn_blocking(|| Podiumd::start().unwrap())
        .await
        .unwrap();
    let admin = server.admin_token().unwrap();
    let (ok, _, err) = cli(
        &server,
        &admin,
        &[
            "conference",
            "create",
            "--id",
            CONFERENCE,
            "--title",
            "ODC",
            "--time-zone",
            "Asia/Phnom_Pen",
        ],
    )
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("time_zone")
            && err.contains("Asia/Phnom_Pen")
            && err.contains("InvalidArgument"),
        "{err}"
    );
    let (ok, _, err) = cli(&server, "bogus", &["conference", "list"]).unwrap();
    assert!(!ok);
    assert!(err.contains("token is malformed"), "{err}");
}

#[tokio::test]
async fn an_organiser_lists_and_revokes_tokens_and_an_admin_rotates_the_key() {
    let server = tokio::task::spawn_blocking(|| Podiumd::start().unwrap())
        .await
        .unwrap();
    let admin = server.admin_token().unwrap();
    let run = |token: &str, args: &[&str]| {
        let (ok, out, err) = cli(&server, token, args).unwrap();
        assert!(ok, "podium {args:?} failed: {err}");
        (out, err)
    };
    run(
        &admin,
        &[
            "conference",
            "create",
            "--id",
            CONFERENCE,
            "--title",
            "ODC",
            "--time-zone",
            "Asia/Phnom_Penh",
        ],
    );
    let (organiser, _) = run(
        &admin,
        &["token", "issue", "--role", "organiser", "-c", CONFERENCE],
    );
    let organiser = organiser.trim().to_owned();
    let (moderator, _) = run(
        &organiser,
        &[
            "token",
            "issue",
            "--role",
            "moderator",
            "--name",
            "Dara, hall A",
        ],
    );
    let moderator = moderator.trim().to_owned();
    let (whoami, _) = run(&moderator, &["--json", "whoami"]);
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    let id = whoami["principal"]["tokenId"].as_str().unwrap().to_owned();

    let (listed, _) = run(&organiser, &["token", "list"]);
    let row = listed
        .lines()
        .find(|line| line.contains(&id))
        .unwrap_or_else(|| panic!("{id} not in:\n{listed}"));
    assert!(
        row.contains("Dara, hall A") && row.contains("moderator"),
        "{row}"
    );

    let (_, said) = run(
        &organiser,
        &["token", "revoke", &id, "--reason", "left the team"],
    );
    assert!(said.contains(&format!("revoked token {id}")), "{said}");
    let (ok, _, err) = cli(&server, &moderator, &["whoami"]).unwrap();
    assert!(!ok);
    assert!(err.contains("token has been revoked"), "{err}");

    let (rotated, _) = run(&admin, &["admin", "rotate-key", "--grace-hours", "0"]);
    assert!(rotated.contains("is now in use"), "{rotated}");
    let (ok, _, err) = cli(&server, &organiser, &["whoami"]).unwrap();
    assert!(!ok);
    assert!(err.contains("rotated out"), "{err}");
    // The admin token file was signed again.
    run(&server.admin_token().unwrap(), &["whoami"]);
}
