//! Rate limits per authenticated principal (ballots, questions, upvotes) and per client address
//! for joining, which has no principal yet. A refusal is RESOURCE_EXHAUSTED with a
//! `google.rpc.RetryInfo` detail and the wait in its message. Keys are the token's principal id
//! or the TCP peer's address, never anything a client writes in a header.
//!
//! Memory is bounded: a sweeper forgets keys whose bucket is full again, and each limiter holds
//! at most `max_keys` keys; past that, new keys are refused until the sweeper frees room.

use std::{
    hash::Hash,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DashMapStateStore,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What a principal does that is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ballot,
    Question,
    Upvote,
}

/// Each limit as a number per minute, which is also the burst allowed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub ballots_per_minute: NonZeroU32,
    pub questions_per_minute: NonZeroU32,
    pub upvotes_per_minute: NonZeroU32,
    pub joins_per_minute: NonZeroU32,
    /// Keys each limiter remembers at most.
    pub max_keys: usize,
}

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Limiter<K: Hash + Eq + Clone, C: Clock> {
    what: &'static str,
    per_minute: NonZeroU32,
    limiter: Keyed<K, C>,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Limiter<K, C> {
    fn new(what: &'static str, per_minute: NonZeroU32, clock: &C) -> Self {
        Self {
            what,
            per_minute,
            limiter: RateLimiter::new(
                Quota::per_minute(per_minute),
                DashMapStateStore::default(),
                clock.clone(),
            ),
        }
    }

    fn check(&self, key: &K, max_keys: usize, clock: &C) -> Result<(), Status> {
        if self.limiter.len() >= max_keys {
            self.limiter.retain_recent();
            if self.limiter.len() >= max_keys {
                return Err(refusal(
                    format!(
                        "podiumd is tracking too many clients sending {}; retry shortly",
                        self.what
                    ),
                    Duration::from_secs(1),
                ));
            }
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(clock.now());
            refusal(
                format!(
                    "too many {}: at most {} a minute; retry in {:.1} s",
                    self.what,
                    self.per_minute,
                    // Rounded up: "retry in 0.0 s" would invite a retry that is refused again.
                    (wait.as_secs_f64() * 10.0).ceil() / 10.0
                ),
                wait,
            )
        })
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }
}

fn refusal(message: String, wait: Duration) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(wait)),
    )
}

/// The metric counting refusals, by action ("ballot", "question", "upvote", "join").
pub const RATE_LIMITED: &str = "podium_rate_limited_total";

/// The rate limiters of one podiumd, shared by the services.
pub struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    max_keys: usize,
    ballots: Limiter<String, C>,
    questions: Limiter<String, C>,
    upvotes: Limiter<String, C>,
    joins: Limiter<IpAddr, C>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("keys", &self.keys())
            .finish()
    }
}

impl RateLimits {
    pub fn new(rates: Rates) -> Arc<Self> {
        Arc::new(Self::with_clock(rates, DefaultClock::default()))
    }

    /// Forgets idle keys every `every`, until the last handle is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                limits.sweep();
            }
        });
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(rates: Rates, clock: C) -> Self {
        Self {
            max_keys: rates.max_keys,
            ballots: Limiter::new("ballots", rates.ballots_per_minute, &clock),
            questions: Limiter::new("questions", rates.questions_per_minute, &clock),
            upvotes: Limiter::new("upvotes", rates.upvotes_per_minute, &clock),
            joins: Limiter::new("joins from this address", rates.joins_per_minute, &clock),
            clock,
        }
    }

    /// One `action` by the principal `principal_id`.
    pub fn check(&self, action: Action, principal_id: &str) -> Result<(), Status> {
        let (limiter, label) = match action {
            Action::Ballot => (&self.ballots, "ballot"),
            Action::Question => (&self.questions, "question"),
            Action::Upvote => (&self.upvotes, "upvote"),
        };
        limiter
            .check(&principal_id.to_owned(), self.max_keys, &self.clock)
            .inspect_err(|_| metrics::counter!(RATE_LIMITED, "action" => label).increment(1))
    }

    /// One join from the TCP peer `peer` (unknown in-process: one shared key). An IPv6 client
    /// is keyed by its /64 network, which one host usually has whole.
    pub fn check_join(&self, peer: Option<SocketAddr>) -> Result<(), Status> {
        let key = match peer.map(|p| p.ip().to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
            Some(v4) => v4,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        self.joins
            .check(&key, self.max_keys, &self.clock)
            .inspect_err(|_| metrics::counter!(RATE_LIMITED, "action" => "join").increment(1))
    }

    /// Forgets keys whose bucket has filled up again.
    pub fn sweep(&self) {
        self.ballots.sweep();
        self.questions.sweep();
        self.upvotes.sweep();
        self.joins.sweep();
    }

    /// Keys remembered, over all limiters.
    pub fn keys(&self) -> usize {
        self.ballots.len() + self.questions.len() + self.upvotes.len() + self.joins.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use tonic_types::StatusExt;

    use super::*;

    fn rates(per_minute: u32, max_keys: usize) -> Rates {
        let n = NonZeroU32::new(per_minute).unwrap();
        Rates {
            ballots_per_minute: n,
            questions_per_minute: n,
            upvotes_per_minute: n,
            joins_per_minute: n,
            max_keys,
        }
    }

    #[test]
    fn a_principal_gets_its_burst_then_waits_with_a_hint_and_others_are_not_affected() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(rates(6, 100), clock.clone());
        for _ in 0..6 {
            limits.check(Action::Ballot, "att-dara").unwrap();
        }
        let refused = limits.check(Action::Ballot, "att-dara").unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("too many ballots"),
            "{}",
            refused.message()
        );
        let retry = refused
            .get_details_retry_info()
            .unwrap()
            .retry_delay
            .unwrap();
        assert_eq!(retry, Duration::from_secs(10));

        // Another principal, and another action of the same principal, have their own buckets.
        limits.check(Action::Ballot, "att-sokha").unwrap();
        limits.check(Action::Question, "att-dara").unwrap();

        clock.advance(Duration::from_secs(10));
        limits.check(Action::Ballot, "att-dara").unwrap();
        assert!(limits.check(Action::Ballot, "att-dara").is_err());

        // 40 ms before the next ballot is allowed, the message says 0.1 s, never 0.0 s.
        clock.advance(Duration::from_millis(9_960));
        let refused = limits.check(Action::Ballot, "att-dara").unwrap_err();
        assert!(
            refused.message().ends_with("retry in 0.1 s"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn joins_are_keyed_by_address_and_an_ipv6_host_by_its_network() {
        let limits = RateLimits::with_clock(rates(1, 100), FakeRelativeClock::default());
        let peer = |text: &str| Some(text.parse::<SocketAddr>().unwrap());
        limits.check_join(peer("192.0.2.1:5000")).unwrap();
        assert!(limits.check_join(peer("192.0.2.1:5001")).is_err());
        limits.check_join(peer("192.0.2.2:5000")).unwrap();
        limits.check_join(peer("[2001:db8::1]:5000")).unwrap();
        assert!(limits.check_join(peer("[2001:db8::ffff]:5000")).is_err());
        limits.check_join(peer("[2001:db8:0:1::1]:5000")).unwrap();
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(rates(60, 3), clock.clone());
        for id in ["a", "b", "c"] {
            limits.check(Action::Upvote, id).unwrap();
        }
        // Full of keys still in use: a new key is refused rather than remembered.
        let refused = limits.check(Action::Upvote, "d").unwrap_err();
        assert!(
            refused.message().contains("too many clients"),
            "{}",
            refused.message()
        );
        assert_eq!(limits.keys(), 3);

        // Once their buckets are full again (governor keeps a key one refill period longer),
        // they are forgotten: at once when room is needed, or by the sweep.
        clock.advance(Duration::from_secs(2));
        limits.check(Action::Upvote, "d").unwrap();
        assert_eq!(limits.keys(), 1);
        clock.advance(Duration::from_secs(2));
        limits.sweep();
        assert_eq!(limits.keys(), 0);
    }
}
