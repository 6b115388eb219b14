//! podiumd as a process: health, reflection, the admin token file, running one service alone,
//! and a graceful stop.

use futures::StreamExt;
use nix::sys::signal::Signal;
use podium_client::pb;
use podium_e2e::{CONFERENCE, NewPoll, Podiumd, Show, Talk};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn channel(server: &Podiumd) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `podium health` given several nodes asks each on its own and names each: a node that is
/// down, or that lacks the service asked about, fails the check without hiding the others.
#[tokio::test]
async fn health_of_several_nodes_names_each_node() {
    let (a, b) = (Podiumd::start().unwrap(), Podiumd::start().unwrap());
    // A loopback port held but not listened on: connections to it are refused, and no other
    // test's server can take it while this one runs.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down = held.local_addr().unwrap().to_string();
    let health = |nodes: &[&str], service: Option<&str>| {
        let addr = nodes.join(",");
        let mut args = vec!["--addr", &addr, "health"];
        args.extend(service.map(|s| ["--service", s]).into_iter().flatten());
        let (ok, out, err) = podium_e2e::cli(&a, "", &args).unwrap();
        (ok, out.lines().map(str::to_owned).collect::<Vec<_>>(), err)
    };

    let (ok, lines, err) = health(&[&a.addr, &b.addr], None);
    assert!(ok, "{err}");
    assert_eq!(
        lines,
        [format!("{} SERVING", a.addr), format!("{} SERVING", b.addr)]
    );

    let (ok, lines, err) = health(&[&a.addr, &down, &b.addr], None);
    assert!(!ok);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], format!("{} SERVING", a.addr));
    assert!(
        lines[1].starts_with(&format!("{down} UNREACHABLE ")),
        "{lines:?}"
    );
    assert_eq!(lines[2], format!("{} SERVING", b.addr));
    assert!(err.contains("not serving on 1 of 3 nodes"), "{err}");

    let (ok, lines, err) = health(&[&a.addr, &b.addr], Some("podium.v1.NoSuchService"));
    assert!(!ok);
    assert_eq!(
        lines,
        [
            format!("{} SERVICE_UNKNOWN", a.addr),
            format!("{} SERVICE_UNKNOWN", b.addr)
        ]
    );
    assert!(
        err.contains("podium.v1.NoSuchService is not serving on 2 of 2 nodes"),
        "{err}"
    );

    // An address list with no address in it is an error, not a pass.
    let (ok, lines, err) = health(&[" ", ""], None);
    assert!(!ok && lines.is_empty(), "{lines:?}");
    assert!(err.contains("no podiumd address"), "{err}");
}

#[tokio::test]
async fn health_answers_serving_and_reflection_lists_the_services() {
    let server = Podiumd::start().unwrap();
    let channel = channel(&server).await;
    // The process that answers runs with glibc's mmap threshold fixed (podiumd started itself
    // again with it: services/server/src/malloc.rs), under the process id it was started with.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let pid = server.pid().expect("podiumd runs");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        let tunables = environ
            .split('\0')
            .find_map(|v| v.strip_prefix("GLIBC_TUNABLES="))
            .unwrap_or_default();
        assert!(
            tunables
                .split(':')
                .any(|t| t.starts_with("glibc.malloc.mmap_threshold=")),
            "{environ}"
        );
    }

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "podium.v1.Agenda",
        "podium.v1.Access",
        "podium.v1.EventFeed",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "podium.v1.Access",
        "podium.v1.Agenda",
        "podium.v1.EventFeed",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn ping_is_the_authenticated_no_op_baseline() {
    let server = Podiumd::start().unwrap();
    let admin = server.admin().await.unwrap();
    let pong = admin
        .diagnostics()
        .ping(pb::PingRequest { seq: 42 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pong.seq, 42);
    let anonymous = server.client(None).await.unwrap();
    let refused = anonymous
        .diagnostics()
        .ping(pb::PingRequest { seq: 1 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn process_figures_count_the_streams_an_admin_opens() {
    let server = Podiumd::start().unwrap();
    let admin = server.admin().await.unwrap();
    let figures = || async {
        admin
            .diagnostics()
            .process(pb::ProcessRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let before = figures().await;
    assert!(before.resident_bytes > 1024 * 1024, "{before:?}");
    assert!(before.open_files > 3 && before.threads > 1, "{before:?}");

    // Each open stream is a task of podiumd's; they end when the streams do.
    admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            conference_id: "odc2024".into(),
            title: Some(pb::LocalizedText {
                text: [("en".to_owned(), "Open Data Conference".to_owned())].into(),
            }),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut feeds = Vec::new();
    for _ in 0..20 {
        let feed = admin
            .feed()
            .subscribe(pb::SubscribeRequest {
                conference_id: "odc2024".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        feeds.push(feed);
    }
    let open = figures().await;
    assert!(open.tasks >= before.tasks + 20, "{before:?} then {open:?}");
    drop(feeds);
    let mut after = figures().await;
    for _ in 0..100 {
        if after.tasks < open.tasks {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = figures().await;
    }
    assert!(after.tasks < open.tasks, "{open:?} then {after:?}");
}

#[tokio::test]
async fn the_generated_admin_token_is_private_and_works() {
    let server = Podiumd::start().unwrap();
    let path = server.data_dir.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me = server
        .admin()
        .await
        .unwrap()
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal.unwrap().role(), pb::Role::Admin);
}

#[tokio::test]
async fn a_configured_admin_token_replaces_the_generated_one() {
    let server = Podiumd::start_with(&["--admin-token", "correct-horse-battery-staple"]).unwrap();
    assert!(!server.data_dir.join("admin.token").exists());
    let admin = server
        .client(Some("correct-horse-battery-staple".into()))
        .await
        .unwrap();
    let me = admin
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal.unwrap().role(), pb::Role::Admin);
}

#[tokio::test]
async fn one_service_can_run_alone() {
    let show = Show::start()
        .args(&["--services", "access,agenda"])
        .await
        .unwrap();
    let err = show
        .admin
        .feed()
        .subscribe(pb::SubscribeRequest {
            conference_id: CONFERENCE.into(),
            from_position: 0,
            types: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn sigterm_ends_open_streams_with_a_status_and_exits_cleanly() {
    let mut show = Show::start()
        .session(Talk::new(
            "Open budgets",
            "2024-11-14T02:00:00Z",
            "2024-11-14T03:00:00Z",
        ))
        .poll(NewPoll::word_cloud())
        .await
        .unwrap();
    // A poll's and a session's watchers, each past its first message: they end when the
    // publisher closes its channels.
    let mut results = show
        .admin
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: CONFERENCE.into(),
            poll_id: show.polls[0].id.clone(),
            language: "en".into(),
        })
        .await
        .unwrap()
        .into_inner();
    results.next().await.unwrap().unwrap();
    let mut questions = show
        .admin
        .questions()
        .watch_questions(pb::WatchQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    questions.next().await.unwrap().unwrap();
    let mut stream = show
        .admin
        .feed()
        .subscribe(pb::SubscribeRequest {
            conference_id: CONFERENCE.into(),
            from_position: 0,
            types: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    // Read up to the seam, so the stream is live and idle when the signal comes.
    loop {
        let item = stream.next().await.unwrap().unwrap();
        if matches!(item.item, Some(pb::subscribe_response::Item::CaughtUp(_))) {
            break;
        }
    }
    let status = show.server.stop(Signal::SIGTERM).await.unwrap();
    assert!(status.success(), "podiumd exited with {status}");
    shut_down(stream.next().await);
    shut_down(results.next().await);
    shut_down(questions.next().await);
}

/// Asserts that a stream's last item is UNAVAILABLE because podiumd is shutting down.
fn shut_down<T: std::fmt::Debug>(end: Option<Result<T, tonic::Status>>) {
    match end {
        Some(Err(status)) => {
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert!(
                status.message().contains("shutting down"),
                "{}",
                status.message()
            );
        }
        other => panic!("expected the stream to end with UNAVAILABLE, got {other:?}"),
    }
}
