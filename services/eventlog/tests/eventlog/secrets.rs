//! The secrets podiumd nodes share, on a real JetStream cluster: two nodes get one value,
//! each sees the other's writes, a node given another cluster key is refused, and an erased
//! secret is gone from every server's disk and never comes back.

use std::{path::Path, time::Duration};

use podium_eventlog::{NatsEventLog, NatsOptions, Secret, SharedSecrets};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{cluster, runtime};

const KEY: [u8; 32] = [7; 32];

/// True when some message block of the stream `stream` on the server whose storage is `store`
/// holds `bytes`.
fn on_disk(store: &Path, stream: &str, bytes: &[u8]) -> bool {
    let dir = store.join("jetstream/$G/streams").join(stream).join("msgs");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .any(|block| block.windows(bytes.len()).any(|w| w == bytes))
}

#[test]
fn nodes_share_secrets_sealed_and_an_erased_one_is_gone_for_good() {
    let cluster = cluster();
    runtime().block_on(async {
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let open = || async {
            NatsEventLog::open(NatsOptions {
                servers: cluster.urls(),
                monitors: cluster.monitor_urls(),
                prefix: prefix.clone(),
                ..NatsOptions::default()
            })
            .await
            .expect("open the event log on JetStream")
        };
        let (log_a, log_b) = (open().await, open().await);
        let a: SharedSecrets = log_a.secrets(&KEY, 3).await.expect("a opens the secrets");
        let b = log_b.secrets(&KEY, 3).await.expect("b opens the secrets");

        // Two nodes that create one secret at once get the same value.
        let name = "poll-key/conference 1/poll.1";
        let (from_a, from_b) = tokio::join!(
            a.get_or_create(name, || b"made by a".to_vec()),
            b.get_or_create(name, || b"made by b".to_vec()),
        );
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        assert_eq!(from_a, from_b);
        assert!(matches!(&from_a, Secret::Value(v) if v == b"made by a" || v == b"made by b"));

        // What a writes reaches b's memory without b asking.
        assert_eq!(a.get("ring").await.unwrap(), None);
        let written = a
            .write("ring", &Secret::Value(b"ring 1".to_vec()), None)
            .await
            .unwrap();
        let written = written.expect("nobody else wrote the ring");
        assert_eq!(
            b.write("ring", &Secret::Value(b"stale".to_vec()), None)
                .await
                .unwrap(),
            None,
            "a write that expects no value loses to one that is there"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.cached("ring") != Some(Secret::Value(b"ring 1".to_vec())) {
            assert!(Instant::now() < deadline, "b never saw a's ring");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.get("ring").await.unwrap().map(|(_, r)| r), Some(written));

        // The servers hold it sealed: the raw value does not contain the secret.
        let client = async_nats::connect(cluster.url(0)).await.unwrap();
        let bucket = async_nats::jetstream::new(client)
            .get_key_value(format!("{prefix}-secrets"))
            .await
            .unwrap();
        let key = "poll-key/conference=201/poll=2E1";
        let sealed = bucket
            .get(key)
            .await
            .unwrap()
            .expect("stored under its escaped name");
        assert!(
            !sealed
                .windows(9)
                .any(|w| w == b"made by a" || w == b"made by b")
        );
        let stream = format!("KV_{prefix}-secrets");
        for server in 0..cluster.len() {
            assert!(
                on_disk(&cluster.store_dir(server), &stream, &sealed),
                "server {server} holds the sealed value before the erasure"
            );
        }

        // Erased on b: every node sees it erased, nobody can create it again, and the sealed
        // value is overwritten on every server's disk.
        assert!(b.erase(name).await.unwrap());
        assert!(!b.erase(name).await.unwrap(), "erased once");
        // a hears of it without asking.
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.cached(name) != Some(Secret::Erased) {
            assert!(Instant::now() < deadline, "a never saw the erasure");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            a.get(name).await.unwrap().map(|(s, _)| s),
            Some(Secret::Erased)
        );
        assert_eq!(
            a.get_or_create(name, || b"again".to_vec()).await.unwrap(),
            Secret::Erased
        );
        assert_eq!(b.cached(name), Some(Secret::Erased));
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in 0..cluster.len() {
            while on_disk(&cluster.store_dir(server), &stream, &sealed) {
                assert!(
                    Instant::now() < deadline,
                    "server {server} still holds the erased secret"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        // A node given another cluster key is refused, and says why.
        let error = log_b.secrets(&[8; 32], 3).await.expect_err("refused");
        assert!(error.to_string().contains("--cluster-key-file"), "{error}");
    });
}
