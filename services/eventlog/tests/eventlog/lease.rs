//! The status engine's lease on a real JetStream cluster: one node holds it, the others reach
//! it through it, and it moves when its holder stops renewing it or releases it.

use std::time::Duration;

use podium_eventlog::{EventLogError, Lease, NatsEventLog, NatsLease, NatsOptions, Term};
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use podium_natscluster::NatsCluster;

use crate::helpers::{cluster, runtime};

/// podiumd's default. A shorter one fails on a loaded 2-core machine for the wrong reason: a
/// first write to a new replicated bucket can take longer than a second there, and a hold whose
/// taking write took longer than its time-to-live is rightly not valid.
const TTL: Duration = Duration::from_secs(3);

/// Waits until `rx` holds a value `done` accepts, and returns it.
async fn until(
    mut rx: watch::Receiver<Option<Term>>,
    done: impl Fn(&Option<Term>) -> bool,
) -> Option<Term> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let value = rx.borrow_and_update().clone();
            if done(&value) {
                return value;
            }
            rx.changed().await.expect("the lease keeps running");
        }
    })
    .await
    .expect("the lease reached the state in time")
}

/// The event log on `cluster`, under a prefix of its own.
async fn open(cluster: &NatsCluster) -> NatsEventLog {
    NatsEventLog::open(NatsOptions {
        servers: cluster.urls(),
        monitors: cluster.monitor_urls(),
        prefix: format!("t{}", Uuid::new_v4().simple()),
        ..NatsOptions::default()
    })
    .await
    .expect("open the event log on JetStream")
}

/// Waits until `node` sees `term` held (it reads the lease every 200 ms).
async fn sees(node: &NatsLease, term: &Term) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.holder().as_ref() != Some(term) {
        assert!(
            Instant::now() < deadline,
            "{} never saw term {} held",
            node.node(),
            term.number
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node(log: &NatsEventLog, name: &str) -> NatsLease {
    log.lease(name.into(), TTL, 3)
        .await
        .expect("the lease's bucket opens")
}

#[test]
fn one_node_holds_the_lease_the_others_reach_it_and_it_moves_when_the_holder_stops() {
    let cluster = cluster();
    runtime().block_on(async {
        let log = open(&cluster).await;

        let a = node(&log, "node-a").await;
        let first = until(a.held(), Option::is_some).await.expect("a holds");
        assert_eq!((first.node.as_str(), first.number), ("node-a", 1));
        assert!(a.valid());
        let (b, c) = (node(&log, "node-b").await, node(&log, "node-c").await);
        for other in [&b, &c] {
            sees(other, &first).await;
            // Held by another for longer than a time-to-live: renewed, never taken.
            assert_eq!(*other.held().borrow(), None);
        }
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(*a.held().borrow(), Some(first.clone()));
        assert_eq!(*b.held().borrow(), None);

        // What b tells and what c asks reach a, in order, and c gets a's answer.
        let mut deliveries = a.deliveries().expect("the deliveries, once");
        assert!(a.deliveries().is_none());
        b.tell("heartbeat".into()).await.expect("told");
        let asked = tokio::spawn(async move {
            let answer = c.ask("switch".into()).await;
            (c, answer)
        });
        let told = deliveries.recv().await.expect("delivered");
        assert_eq!(
            (&told.payload[..], told.reply.is_none()),
            (&b"heartbeat"[..], true)
        );
        let question = deliveries.recv().await.expect("delivered");
        assert_eq!(&question.payload[..], b"switch");
        let reply = question.reply.expect("a question waits for its answer");
        reply.send("switched".into()).expect("answered");
        let (c, answer) = asked.await.expect("the asker ran");
        assert_eq!(&answer.expect("answered")[..], b"switched");

        // a stops, as a killed node does: nothing renews its term. One of b and c takes the
        // next term; the other sees it.
        drop(a);
        let stopped = Instant::now();
        let second = tokio::select! {
            held = until(b.held(), Option::is_some) => held,
            held = until(c.held(), Option::is_some) => held,
        }
        .expect("taken");
        println!(
            "lease taken over {} ms after its holder stopped (time-to-live {} ms)",
            stopped.elapsed().as_millis(),
            TTL.as_millis()
        );
        assert_eq!(second.number, 2);
        tokio::time::sleep(TTL * 2).await;
        let (holder, other) = if second.node == "node-b" {
            (&b, &c)
        } else {
            (&c, &b)
        };
        assert_eq!(*holder.held().borrow(), Some(second.clone()));
        assert_eq!(*other.held().borrow(), None, "two holders at once");
        assert_eq!(other.holder(), Some(second.clone()));

        // The holder releases it (a clean stop): the other takes the next term without waiting
        // for it to run out, and the releaser no longer acts on it.
        let released = Instant::now();
        holder.release().await;
        assert!(!holder.valid());
        let third = until(other.held(), Option::is_some).await.expect("taken");
        println!(
            "released lease taken {} ms after the release",
            released.elapsed().as_millis()
        );
        assert_eq!(third.number, 3);
        assert_eq!(third.node, other.node());
    });
}

/// A command forwarded to the holder waits for the holder's answer as long as the holder may
/// take over it (an append that retries), not the NATS client's 3 s; an answer that never
/// comes says the command may still take effect, rather than that nothing was done.
#[test]
fn an_asker_waits_for_a_slow_holder_and_is_told_when_no_answer_comes() {
    let cluster = cluster();
    runtime().block_on(async {
        let log = open(&cluster).await;
        let a = node(&log, "node-a").await;
        let held = until(a.held(), Option::is_some).await.expect("a holds");
        let b = node(&log, "node-b").await;
        sees(&b, &held).await;
        let mut deliveries = a.deliveries().expect("the deliveries");
        let b = std::sync::Arc::new(b);

        // a answers after 5 s.
        let asker = b.clone();
        let asked = tokio::spawn(async move { asker.ask("switch".into()).await });
        let question = deliveries.recv().await.expect("delivered");
        tokio::time::sleep(Duration::from_secs(5)).await;
        question
            .reply
            .expect("waits for its answer")
            .send("switched".into())
            .expect("answered");
        let answer = asked.await.expect("the asker ran");
        assert_eq!(&answer.expect("answered")[..], b"switched");

        // a hears the next one and never answers.
        let asker = b.clone();
        let asked = tokio::spawn(async move { asker.ask("end".into()).await });
        let unanswered = deliveries.recv().await.expect("delivered");
        match asked.await.expect("the asker ran") {
            Err(EventLogError::Unanswered(message)) => assert!(
                message.contains("node-a") && message.contains("may still take effect"),
                "{message}"
            ),
            other => panic!("not unanswered: {other:?}"),
        }
        drop(unanswered);
    });
}

/// The log can hold a later term than the lease's key: the key was deleted, or the cluster
/// restored without the lease's bucket, and the terms began again at 1. Told so, the holder
/// gives the lease up, recorded as released at the log's term, and the next holder passes it.
#[test]
fn a_holder_outranked_by_the_log_gives_the_lease_up_and_the_next_term_passes_the_log() {
    let cluster = cluster();
    runtime().block_on(async {
        let log = open(&cluster).await;
        let a = node(&log, "node-a").await;
        let first = until(a.held(), Option::is_some).await.expect("a holds");
        assert_eq!(first.number, 1);

        // A term no later than the one held changes nothing.
        a.outranked(1);
        tokio::time::sleep(TTL).await;
        assert_eq!(*a.held().borrow(), Some(first.clone()));
        assert!(a.valid());

        // The log shows term 7: a gives the lease up, and takes it again, at once, as term 8.
        a.outranked(7);
        let next = until(a.held(), |t| t.as_ref().is_some_and(|t| t.number != 1))
            .await
            .expect("held again");
        assert_eq!((next.node.as_str(), next.number), ("node-a", 8));
        let b = node(&log, "node-b").await;
        sees(&b, &next).await;
    });
}

/// A renewal that timed out at the holder may still land: the holder's next renewal, sent with
/// the revision before it, is then refused as a wrong revision. That is this node's own write,
/// not another node's take, and the holder keeps its term.
#[test]
fn a_renewal_that_landed_after_it_timed_out_does_not_cost_the_holder_its_term() {
    let cluster = cluster();
    runtime().block_on(async {
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let log = NatsEventLog::open(NatsOptions {
            servers: cluster.urls(),
            monitors: cluster.monitor_urls(),
            prefix: prefix.clone(),
            ..NatsOptions::default()
        })
        .await
        .expect("open the event log on JetStream");
        let a = node(&log, "node-a").await;
        let first = until(a.held(), Option::is_some).await.expect("a holds");

        // The late renewal: the holder's own value, written behind its back, so the revision
        // its next renewal is sent with is one behind.
        let client = async_nats::connect(cluster.url(0)).await.unwrap();
        let bucket = async_nats::jetstream::new(client)
            .get_key_value(format!("{prefix}-lease"))
            .await
            .expect("the lease's bucket");
        // (a's own renewal may land between the read and the write: then read again.)
        let mut landed = false;
        for _ in 0..10 {
            let entry = bucket
                .entry("status-engine")
                .await
                .unwrap()
                .expect("the held key");
            assert_eq!(&entry.value[..], b"1 node-a");
            if bucket
                .update("status-engine", entry.value, entry.revision)
                .await
                .is_ok()
            {
                landed = true;
                break;
            }
        }
        assert!(landed, "the late renewal never landed");

        // Renewed every third of a time-to-live: six renewals later, still the same term.
        let renewed = bucket
            .entry("status-engine")
            .await
            .unwrap()
            .unwrap()
            .revision;
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(
            *a.held().borrow(),
            Some(first.clone()),
            "a gave its term up"
        );
        assert!(a.valid());
        let now = bucket.entry("status-engine").await.unwrap().unwrap();
        assert_eq!(&now.value[..], b"1 node-a");
        assert!(now.revision > renewed, "a stopped renewing");
    });
}
