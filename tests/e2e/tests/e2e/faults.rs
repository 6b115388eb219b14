//! Faults against the real podiumd: watchers that stop reading, a disk that fills up under
//! the event log, and SIGTERM with a thousand open streams.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use futures::{StreamExt, TryStreamExt, stream};
use nix::sys::signal::Signal;
use podium_client::{
    Client, pb,
    pb::{
        event_feed_client::EventFeedClient, polls_client::PollsClient,
        questions_client::QuestionsClient, stage_client::StageClient,
    },
};
use podium_e2e::{CONFERENCE, NewPoll, PATIENCE, Podiumd, Show, Talk, ballot};
use prost::Message;
use tokio::sync::watch;
use tonic::{
    Code,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Waits until `receiver`'s value satisfies `done`, failing after [`PATIENCE`].
async fn converge<T>(receiver: &mut watch::Receiver<T>, what: &str, done: impl FnMut(&T) -> bool) {
    tokio::time::timeout(PATIENCE, receiver.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("{what} did not converge"))
        .unwrap_or_else(|_| panic!("{what} stopped"));
}

pub(crate) fn feed_request() -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        conference_id: CONFERENCE.into(),
        from_position: 0,
        types: vec![],
    }
}

fn status_request() -> pb::WatchStatusRequest {
    pb::WatchStatusRequest {
        conference_id: CONFERENCE.into(),
        room_id: String::new(),
        from_position: 0,
    }
}

fn results_request(poll: &pb::Poll) -> pb::WatchResultsRequest {
    pb::WatchResultsRequest {
        conference_id: CONFERENCE.into(),
        poll_id: poll.id.clone(),
        language: "en".into(),
    }
}

fn questions_request(session_id: &str) -> pb::WatchQuestionsRequest {
    pb::WatchQuestionsRequest {
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
    }
}

/// The sessions a feed event schedules, if it is a `SessionScheduled`.
fn scheduled(event: &pb::Event) -> Option<String> {
    (event.r#type == "podium.v1.SessionScheduled")
        .then(|| pb::SessionScheduled::decode(event.payload.as_slice()).ok())
        .flatten()
        .map(|s| s.session_id)
}

/// A talk of Sokha's in the main hall on 14 November 2024 from `hour` UTC, one hour long.
fn talk(title: &str, hour: u32) -> Talk {
    Talk::new(
        title,
        &format!("2024-11-14T{hour:02}:00:00Z"),
        &format!("2024-11-14T{hour:02}:59:00Z"),
    )
}

/// What one round of updates left behind, for the watchers to converge on.
struct Round {
    /// Position of the last ballot.
    last_ballot: u64,
    /// A session scheduled after everything else of the round: a watcher that has seen it has
    /// seen the whole round.
    marker: String,
}

/// The load of the slow-watcher test: attendees replacing their ballots on one poll while
/// moderators hide and show a word of a word cloud and pin and unpin a live session, so that
/// results, status and feed all move.
struct Load<'a> {
    show: &'a Show,
    voters: Vec<Client>,
    poll: pb::Poll,
    cloud: pb::Poll,
    live: String,
    rounds: u32,
}

impl Load<'_> {
    /// `updates` ballots (from a fixed set of voters, so read models do not grow), as many
    /// word toggles (events of the public feed) and a pin toggle for every eight of them, then
    /// a marker session.
    async fn round(&mut self, updates: usize) -> Round {
        let ballots = stream::iter(0..updates)
            .map(|i| {
                let voter = self.voters[i % self.voters.len()].clone();
                let option = self.poll.options[i % self.poll.options.len()].id.clone();
                let request = ballot(&self.poll, vec![option]);
                async move {
                    let answer = voter.polls().cast_ballot(request).await?;
                    Ok::<_, tonic::Status>(answer.into_inner().position)
                }
            })
            .buffer_unordered(16)
            .try_fold(0, |last, position| async move { Ok(last.max(position)) });
        let words = stream::iter(0..updates)
            .map(|i| {
                let request = pb::HideWordRequest {
                    conference_id: CONFERENCE.into(),
                    poll_id: self.cloud.id.clone(),
                    word: "budget".into(),
                    hidden: i % 2 == 0,
                };
                let mut polls = self.show.admin.polls();
                async move { polls.hide_word(request).await.map(|_| ()) }
            })
            .buffer_unordered(16)
            .try_collect::<()>();
        let pins = async {
            for i in 0..updates / 8 {
                self.show
                    .admin
                    .stage()
                    .pin(pb::PinRequest {
                        request_id: Client::request_id(),
                        conference_id: CONFERENCE.into(),
                        session_id: self.live.clone(),
                        pinned: i % 2 == 0,
                    })
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        };
        let (last_ballot, (), ()) = tokio::try_join!(ballots, words, pins).unwrap();
        self.rounds += 1;
        let title = format!("Marker {}", self.rounds);
        let marker = self
            .show
            .add_session(talk(&title, 2 + self.rounds))
            .await
            .unwrap()
            .id;
        Round {
            last_ballot,
            marker,
        }
    }
}

/// Watchers that read everything, each publishing what it has seen so far.
struct Readers {
    results: watch::Receiver<u64>,
    status: watch::Receiver<BTreeSet<String>>,
    feed: watch::Receiver<BTreeSet<String>>,
}

impl Readers {
    async fn start(show: &Show, poll: &pb::Poll) -> Self {
        let attendee = show.join("Reader").await.unwrap();
        let mut results_stream = attendee
            .polls()
            .watch_results(results_request(poll))
            .await
            .unwrap()
            .into_inner();
        let (results_tx, results) = watch::channel(0);
        tokio::spawn(async move {
            while let Some(Ok(message)) = results_stream.next().await {
                results_tx.send_replace(message.position);
            }
        });
        let admin = show.server.admin().await.unwrap();
        let mut status_stream = admin
            .stage()
            .watch_status(status_request())
            .await
            .unwrap()
            .into_inner();
        let (status_tx, status) = watch::channel(BTreeSet::new());
        tokio::spawn(async move {
            while let Some(Ok(message)) = status_stream.next().await {
                if let Some(pb::watch_status_response::Update::Changed(changed)) = message.update {
                    status_tx.send_modify(|seen| {
                        seen.insert(changed.session_id);
                    });
                }
            }
        });
        let mut feed_stream = admin
            .feed()
            .subscribe(feed_request())
            .await
            .unwrap()
            .into_inner();
        let (feed_tx, feed) = watch::channel(BTreeSet::new());
        tokio::spawn(async move {
            while let Some(Ok(message)) = feed_stream.next().await {
                if let Some(pb::subscribe_response::Item::Event(event)) = message.item
                    && let Some(session_id) = scheduled(&event)
                {
                    feed_tx.send_modify(|seen| {
                        seen.insert(session_id);
                    });
                }
            }
        });
        Self {
            results,
            status,
            feed,
        }
    }

    /// Waits until every reader has seen the whole round.
    async fn converge(&mut self, round: &Round) {
        converge(&mut self.results, "results watcher", |p| {
            *p > round.last_ballot
        })
        .await;
        converge(&mut self.status, "status watcher", |s| {
            s.contains(&round.marker)
        })
        .await;
        converge(&mut self.feed, "feed follower", |s| {
            s.contains(&round.marker)
        })
        .await;
    }
}

const MIB: u64 = 1 << 20;

/// A connection of a client that has stopped reading: 8 KiB HTTP/2 windows. Small windows, and
/// not h2's 64 KiB default, because the client's own h2 (0.4.20 and later) closes a connection
/// on which small DATA frames it has not read cost over 25,600 bytes of framing overhead
/// (`too_many_data_frames`): a stalled results watcher gets one ~110-byte frame per update, so
/// with 64 KiB windows about 170 unread updates (17 s of a busy poll) ended the test's own
/// connection. 8 KiB holds at most about 75 of them; what the client does not read still backs
/// up into podiumd, which is what this test measures.
pub(crate) async fn frozen(server: &Podiumd) -> Channel {
    Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(8 << 10)
        .initial_connection_window_size(8 << 10)
        .connect()
        .await
        .unwrap()
}

/// Adds `token` to every request, for the generated stubs on a channel of the test's own.
pub(crate) fn bearer(token: &str) -> impl Interceptor + Clone + use<> {
    let value: MetadataValue<Ascii> = format!("Bearer {token}").parse().unwrap();
    move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_stop_reading_cost_bounded_memory_and_hold_back_no_one() {
    // A small page cache for the log, so that podiumd's own memory does not grow with the
    // events it stores and what is measured is the watchers.
    // Few attendees re-vote thousands of times: far past a person's rate limit.
    let show = Show::start()
        .args(&["--log-cache", "2MiB", "--rate-ballots", "4000000000"])
        .session(talk("Open budgets", 2))
        .poll(NewPoll::single_choice(&[
            "Budgets",
            "Health",
            "Education",
            "Land",
        ]))
        .poll(NewPoll::word_cloud())
        .attendees(32)
        .await
        .unwrap();
    let (server, admin) = (&show.server, &show.admin);
    let (poll, cloud) = (show.polls[0].clone(), show.polls[1].clone());
    let live = show.session_id().to_owned();
    admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: live.clone(),
        })
        .await
        .unwrap();
    let voters = show.attendees.iter().map(|a| a.client.clone()).collect();

    // Watchers that never read, each on its own connection like a frozen client, with small
    // HTTP/2 windows (see `frozen`) so that what they do not read backs up into podiumd, not
    // into this process: the results, the questions, the status and the feed.
    let staff = server.admin_token().unwrap();
    let mut stalled_results = Vec::new();
    let mut stalled_feeds = Vec::new();
    let mut stalled_others = Vec::new();
    for _ in 0..16 {
        let mut feed = EventFeedClient::with_interceptor(frozen(server).await, bearer(&staff));
        stalled_feeds.push(feed.subscribe(feed_request()).await.unwrap().into_inner());
    }
    for s in 0..4 {
        let viewer = show.join(&format!("Frozen {s}")).await.unwrap().token;
        let mut polls = PollsClient::with_interceptor(frozen(server).await, bearer(&viewer));
        stalled_results.push(
            polls
                .watch_results(results_request(&poll))
                .await
                .unwrap()
                .into_inner(),
        );
        let mut questions =
            QuestionsClient::with_interceptor(frozen(server).await, bearer(&viewer));
        stalled_others.push(
            questions
                .watch_questions(questions_request(&live))
                .await
                .unwrap()
                .into_inner()
                .map(|_| ())
                .boxed(),
        );
        let mut stage = StageClient::with_interceptor(frozen(server).await, bearer(&staff));
        stalled_others.push(
            stage
                .watch_status(status_request())
                .await
                .unwrap()
                .into_inner()
                .map(|_| ())
                .boxed(),
        );
    }

    let mut readers = Readers::start(&show, &poll).await;
    let mut load = Load {
        show: &show,
        voters,
        poll: poll.clone(),
        cloud,
        live,
        rounds: 0,
    };
    const UPDATES: usize = 400;
    // A warm-up round first, so allocator pools and connection buffers are in place.
    let round = load.round(UPDATES).await;
    readers.converge(&round).await;
    let before = server.memory().unwrap();
    let round = load.round(UPDATES).await;
    readers.converge(&round).await;
    let small = server.memory().unwrap();
    let round = load.round(10 * UPDATES).await;
    readers.converge(&round).await;
    let large = server.memory().unwrap();

    let growth_small = small.rss.saturating_sub(before.rss);
    let growth_large = large.rss.saturating_sub(small.rss);
    eprintln!(
        "podiumd RSS {} MiB, +{} KiB after {UPDATES} updates, +{} KiB after {} more; peak {} MiB",
        before.rss / MIB,
        growth_small / 1024,
        growth_large / 1024,
        10 * UPDATES,
        large.peak / MIB
    );
    // Ten times the updates must not cost anything like ten times the memory: what a stalled
    // watcher holds is bounded (one value per results or questions watcher, the HTTP/2 window
    // and send buffer of each stream, the log's live ring), not a queue of updates. A floor
    // absorbs the allocator's noise when the small round grew by almost nothing.
    let floor = 6 * MIB;
    assert!(
        growth_large <= 3 * growth_small.max(floor),
        "memory grew with the updates: +{} KiB for {UPDATES}, +{} KiB for {}",
        growth_small / 1024,
        growth_large / 1024,
        10 * UPDATES
    );

    // The stalled results watchers were not queued every result: once read, they reach the
    // final tally at once.
    for mut stalled in stalled_results {
        let caught_up = async {
            loop {
                let message = stalled.next().await.unwrap().unwrap();
                if message.position > round.last_ballot {
                    return;
                }
            }
        };
        tokio::time::timeout(PATIENCE, caught_up)
            .await
            .expect("a stalled results watcher reaches the final results once it reads");
    }
    // A stalled feed lagged far behind the log's live ring; read now, it still delivers every
    // event in order, every marker session included.
    for mut stalled in stalled_feeds {
        let markers = async {
            let mut seen = BTreeSet::new();
            while !seen.contains(&round.marker) {
                let message = stalled.next().await.unwrap().unwrap();
                if let Some(pb::subscribe_response::Item::Event(event)) = message.item
                    && let Some(session_id) = scheduled(&event)
                {
                    seen.insert(session_id);
                }
            }
            seen
        };
        let seen = tokio::time::timeout(PATIENCE, markers)
            .await
            .expect("a stalled feed delivers everything once it reads");
        // The live session and the three rounds' markers.
        assert_eq!(seen.len(), 4, "{seen:?}");
    }
    drop(stalled_others);
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            output.status.success(),
            "this test needs to mount a small tmpfs (it runs as root in CI): mount -t tmpfs -o size={size} tmpfs {} failed: {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5a; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds it (a podiumd that did not stop): detach it anyway.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

pub(crate) async fn add_room(
    admin: &Client,
    request_id: &str,
    name: &str,
) -> Result<(), tonic::Status> {
    admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: request_id.into(),
            conference_id: CONFERENCE.into(),
            name: name.into(),
            capacity: 40,
        })
        .await
        .map(|_| ())
}

async fn rooms(admin: &Client) -> BTreeSet<String> {
    admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conference
        .unwrap()
        .rooms
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_keeps_reads_and_recovers_without_losing_anything() {
    // Declared first, so it is unmounted after podiumd has stopped.
    let disk = Tmpfs::mount("16m");
    let data = disk.path().join("data");
    let mut show = Show::start()
        .data_dir(&data)
        .args(&["--disk-reserve", "1MiB"])
        .session(talk("Open budgets", 2))
        .poll(NewPoll::single_choice(&["Budgets", "Health"]))
        // Its first ballot writes the poll's anonymity key beside the log.
        .poll(NewPoll::single_choice(&["Yes", "No"]).anonymous())
        .attendees(1)
        .await
        .unwrap();
    let ses = show.session_id().to_owned();
    let (admin, voter) = (&show.admin, &show.attendees[0]);
    let (poll, anonymous) = (show.polls[0].clone(), &show.polls[1]);
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    for r in 0..20 {
        let name = format!("Breakout {r}");
        add_room(admin, &Client::request_id(), &name).await.unwrap();
        acknowledged.insert(name);
    }
    voter
        .polls()
        .cast_ballot(ballot(&poll, vec![poll.options[0].id.clone()]))
        .await
        .unwrap();

    let filler = disk.fill();
    // sled writes into space it already holds until it needs more; append until it does.
    let mut refused = None;
    for r in 0..5_000 {
        let name = format!("Overflow {r}");
        match add_room(admin, &Client::request_id(), &name).await {
            Ok(()) => {
                acknowledged.insert(name);
            }
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("appends to a full disk are refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("disk is full"),
        "{}",
        refused.message()
    );

    // Still full: every write is refused with the same clear answer, by every service, and
    // podiumd stays up.
    let again = add_room(admin, &Client::request_id(), "Refused").await;
    assert_eq!(again.unwrap_err().code(), Code::Unavailable);
    let ballot_refused = voter
        .polls()
        .cast_ballot(ballot(&poll, vec![poll.options[1].id.clone()]))
        .await
        .unwrap_err();
    assert_eq!(
        ballot_refused.code(),
        Code::Unavailable,
        "{ballot_refused:?}"
    );
    let key_refused = voter
        .polls()
        .cast_ballot(ballot(anonymous, vec![anonymous.options[0].id.clone()]))
        .await
        .unwrap_err();
    assert_eq!(key_refused.code(), Code::Unavailable, "{key_refused:?}");
    let started = admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: ses.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(started.code(), Code::Unavailable, "{started:?}");
    let asked = voter
        .questions()
        .ask_question(pb::AskQuestionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: ses.clone(),
            text: "Is the budget data open?".into(),
            anonymous: false,
        })
        .await
        .unwrap_err();
    assert_eq!(asked.code(), Code::Unavailable, "{asked:?}");
    assert!(
        show.server.is_running().unwrap(),
        "podiumd exited on a full disk"
    );

    // Reads keep working: the agenda, the results, the feed from the start.
    assert_eq!(rooms(admin).await, acknowledged_with_hall(&acknowledged));
    assert_eq!(results(admin, &poll).await.ballots, 1);
    let mut feed = admin
        .feed()
        .subscribe(feed_request())
        .await
        .unwrap()
        .into_inner();
    loop {
        let item = feed.next().await.unwrap().unwrap();
        if matches!(item.item, Some(pb::subscribe_response::Item::CaughtUp(_))) {
            break;
        }
    }

    // Space returns: appends succeed again (the log reopens its database on the next one).
    std::fs::remove_file(filler).unwrap();
    let request_id = Client::request_id();
    let recovered = async {
        loop {
            match add_room(admin, &request_id, "After the flood").await {
                Ok(()) => return,
                Err(status) if status.code() == Code::Unavailable => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(status) => panic!("unexpected answer after space returned: {status:?}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, recovered)
        .await
        .expect("appends succeed again once space is freed");
    acknowledged.insert("After the flood".into());
    voter
        .polls()
        .cast_ballot(ballot(&poll, vec![poll.options[1].id.clone()]))
        .await
        .unwrap();
    assert!(rooms(admin).await.is_superset(&acknowledged));

    // Nothing acknowledged is lost across a restart.
    show.restart().await.unwrap();
    let admin = &show.admin;
    let after = rooms(admin).await;
    assert!(
        after.is_superset(&acknowledged),
        "lost: {:?}",
        acknowledged.difference(&after).collect::<Vec<_>>()
    );
    let counts: BTreeMap<String, u64> = results(admin, &poll)
        .await
        .options
        .iter()
        .map(|o| (o.option_id.clone(), o.count))
        .collect();
    assert_eq!(counts[&poll.options[1].id], 1, "the last ballot counts");
    show.server.stop(Signal::SIGTERM).await.unwrap();
}

/// A poll's current results: the first message of a results watch.
async fn results(client: &Client, poll: &pb::Poll) -> pb::Results {
    client
        .polls()
        .watch_results(results_request(poll))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .results
        .unwrap()
}

fn acknowledged_with_hall(acknowledged: &BTreeSet<String>) -> BTreeSet<String> {
    let mut all = acknowledged.clone();
    all.insert("Main hall".into());
    all
}

/// How a stream ended: with a status, cleanly without one, or not at all.
#[derive(Debug)]
pub(crate) enum End {
    Status(Code, String),
    Clean,
}

/// Reads `stream` to its end.
pub(crate) async fn read_to_end<T>(mut stream: tonic::Streaming<T>) -> End {
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return End::Clean,
            Err(status) => return End::Status(status.code(), status.message().to_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_thousand_streams_with_unavailable_and_keeps_the_last_append() {
    // A drain timeout longer than the harness waits for the exit: podiumd must stop because
    // every stream ended, not because the timeout cut them.
    let mut show = Show::start()
        .args(&["--drain-timeout", "60"])
        .session(talk("Open budgets", 2))
        .poll(NewPoll::single_choice(&["Budgets", "Health"]))
        .await
        .unwrap();
    let (poll, ses) = (show.polls[0].clone(), show.session_id().to_owned());
    let admin = show.admin.clone();

    // 10 connections × 100 streams, of the four kinds podium serves. Each task reads its
    // stream's first message (so the stream is open and live), reports, then reads to the end.
    const CONNECTIONS: usize = 10;
    const STREAMS: usize = 100;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(CONNECTIONS * STREAMS);
    let mut streams = Vec::new();
    for c in 0..CONNECTIONS {
        let client = show.server.admin().await.unwrap();
        for s in 0..STREAMS {
            let client = client.clone();
            let ready = ready_tx.clone();
            let (poll, ses) = (poll.clone(), ses.clone());
            streams.push(tokio::spawn(async move {
                let kind = (c * STREAMS + s) % 4;
                match kind {
                    0 => {
                        let mut stream = client
                            .feed()
                            .subscribe(feed_request())
                            .await
                            .unwrap()
                            .into_inner();
                        while let Some(item) = stream.message().await.unwrap() {
                            if matches!(item.item, Some(pb::subscribe_response::Item::CaughtUp(_)))
                            {
                                break;
                            }
                        }
                        ready.send(()).await.unwrap();
                        read_to_end(stream).await
                    }
                    1 => {
                        let mut stream = client
                            .polls()
                            .watch_results(results_request(&poll))
                            .await
                            .unwrap()
                            .into_inner();
                        stream.message().await.unwrap().unwrap();
                        ready.send(()).await.unwrap();
                        read_to_end(stream).await
                    }
                    2 => {
                        let mut stream = client
                            .stage()
                            .watch_status(status_request())
                            .await
                            .unwrap()
                            .into_inner();
                        stream.message().await.unwrap().unwrap();
                        ready.send(()).await.unwrap();
                        read_to_end(stream).await
                    }
                    _ => {
                        let mut stream = client
                            .questions()
                            .watch_questions(questions_request(&ses))
                            .await
                            .unwrap()
                            .into_inner();
                        stream.message().await.unwrap().unwrap();
                        ready.send(()).await.unwrap();
                        read_to_end(stream).await
                    }
                }
            }));
        }
    }
    drop(ready_tx);
    for _ in 0..CONNECTIONS * STREAMS {
        tokio::time::timeout(PATIENCE, ready_rx.recv())
            .await
            .expect("every stream opens")
            .expect("a stream task failed before it was ready");
    }

    // A health watcher on its own connection.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", show.server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = health.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let health = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match health.message().await {
                Ok(Some(message)) => seen.push(message.status()),
                Ok(None) => return (seen, None),
                Err(status) => return (seen, Some(status.code())),
            }
        }
    });

    // Acknowledged just before the signal.
    add_room(&admin, &Client::request_id(), "Last words")
        .await
        .unwrap();
    let exit = show.server.stop(Signal::SIGTERM).await.unwrap();
    assert!(exit.success(), "podiumd exited with {exit} on SIGTERM");

    let (seen, end) = tokio::time::timeout(PATIENCE, health)
        .await
        .expect("the health watch ends")
        .unwrap();
    assert!(
        seen.contains(&ServingStatus::NotServing),
        "health watch saw {seen:?}"
    );
    assert_eq!(end, Some(Code::Unavailable), "health watch end");

    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for stream in streams {
        let end = tokio::time::timeout(PATIENCE, stream)
            .await
            .expect("every stream ends")
            .unwrap();
        let key = match end {
            End::Status(Code::Unavailable, message) if message.contains("shutting down") => {
                "UNAVAILABLE".to_owned()
            }
            other => format!("{other:?}"),
        };
        *ends.entry(key).or_default() += 1;
    }
    assert_eq!(
        ends,
        BTreeMap::from([("UNAVAILABLE".to_owned(), CONNECTIONS * STREAMS)]),
        "how the streams ended"
    );

    show.server.start_again().unwrap();
    let admin = show.server.admin().await.unwrap();
    assert!(rooms(&admin).await.contains("Last words"));
}
