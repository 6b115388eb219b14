//! podiumd as a library: [`Podium::open`] opens the event log, bootstraps the token keys and
//! replays the read models; [`Podium::serve`] wires the services, authentication, health and
//! reflection onto an already-bound listener and serves until a shutdown future completes. The
//! binary only parses configuration, sets up tracing and binds, so tests can run a whole server
//! in-process.

#![forbid(unsafe_code)]

pub mod backup;
pub mod config;
mod diagnostics;
mod error;
mod feed;
mod feedback_parts;
mod grpc_web;
mod health;
#[macro_use]
mod limits;
mod listener;
pub mod log_store;
pub mod malloc;
pub mod metrics;
mod positions;
mod privacy;
mod read_models;
mod revocation;
mod status_parts;
pub mod synthetic;

use feedback_parts::FeedbackParts;
pub use log_store::{LogChoice, LogFlags, LogStore};
pub use read_models::ReadModels;
use status_parts::StatusParts;

use std::{future::Future, sync::Arc, time::Instant};

use podium_access::{AccessService, Authenticator, Directory, TokenKeys};
use podium_agenda::{AgendaService, AgendaStore};
use podium_eventlog::{
    EventLog, FollowerHandle, Projector,
    personal::{self, KEYS_FILE, PersonalKeys, SealingLog},
};
use podium_feedback::{PollsService, QuestionsService, RatingsService};
use podium_proto::v1::privacy_server::PrivacyServer;
use podium_proto::v1::questions_server::QuestionsServer;
use podium_proto::v1::ratings_server::RatingsServer;
use podium_proto::v1::recordings_server::RecordingsServer;
use podium_proto::v1::{
    access_server::AccessServer, agenda_server::AgendaServer, event_feed_server::EventFeedServer,
};
use podium_proto::v1::{diagnostics_server::DiagnosticsServer, polls_server::PollsServer};
use podium_proto::v1::{
    playout_server::PlayoutServer, presence_server::PresenceServer, stage_server::StageServer,
};
use podium_status::RecordingsService;
use podium_status::{PlayoutService, PresenceService, StageService};
use tokio::{net::TcpListener, sync::watch};
use tonic::{
    server::NamedService, service::interceptor::InterceptedService, transport::server::TcpIncoming,
};

pub use config::{Command, Config, LogFormat, ServiceName};
pub use diagnostics::DiagnosticsService;
pub use error::ServerError;
pub use feed::FeedService;
pub use privacy::PrivacyService;

/// Where read models' snapshots live, under the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Read models are snapshotted again after this many events. What a start-up replays is the
/// tail past the last snapshot, so its cost is bounded by events, not by time: a quiet day
/// needs no new snapshot, a vote storm needs them often. At the replay speed of a release
/// build (well over 100,000 events a second) a tail of this size stays within the second
/// start-up may take even after a crash (no shutdown snapshot), while writing a snapshot (a
/// pause of the follower while the models are encoded, then one file per model, fsynced)
/// happens rarely enough not to count.
pub const SNAPSHOT_EVERY: u64 = 100_000;

/// podium's state, opened and replayed, ready to serve.
pub struct Podium {
    config: Config,
    store: LogStore,
    log: Arc<dyn EventLog>,
    follower: FollowerHandle,
    keys: Arc<TokenKeys>,
    /// The per-person keys that seal personal data in the log.
    personal: Arc<PersonalKeys>,
    /// Where sealing began: events below may hold plain personal data.
    sealed_from: u64,
    directory: Projector<Directory>,
    agenda: Option<AgendaStore>,
    status: Option<StatusParts>,
    feedback: Option<FeedbackParts>,
    /// When `open` began, for the node's uptime.
    started: Instant,
}

impl Podium {
    /// Opens the log in the data directory, loads or creates the token keys (writing the admin
    /// token file on first start) and replays the read models.
    pub async fn open(config: Config) -> Result<Self, ServerError> {
        let started = Instant::now();
        // Before anything records: the log's head and the recordings' bytes are set on opening.
        metrics::install();
        let store = LogStore::open(&config).await?;
        let raw = store.log();
        let secrets = store.secrets(&config).await?;
        let keys_path = config.data_dir.join(KEYS_FILE);
        let mut personal = PersonalKeys::load(&keys_path).map_err(|e| {
            ServerError::Personal(format!("cannot open {}: {e}", keys_path.display()))
        })?;
        if let Some(shared) = &secrets {
            personal = personal.with_shared(shared.clone());
            // What this node sealed while it ran alone opens on every node.
            let shared_now = personal.share_file_keys().await?;
            if shared_now > 0 {
                tracing::info!(
                    keys = shared_now,
                    "gave the cluster this node's personal keys"
                );
            }
        }
        let personal = Arc::new(personal);
        // Every service writes through it: personal fields are sealed before they are stored.
        let sealed_from = personal::sealed_from(&config.data_dir, raw.head()).map_err(|e| {
            ServerError::Personal(format!("cannot record where sealing began: {e}"))
        })?;
        let log: Arc<dyn EventLog> = Arc::new(SealingLog::new(raw, personal.clone()));

        let admin = config.admin_token.clone();
        let bootstrap = match &secrets {
            Some(shared) => {
                TokenKeys::bootstrap_shared(&config.data_dir, admin, shared.clone()).await
            }
            None => TokenKeys::bootstrap(&config.data_dir, admin),
        }
        .map_err(|source| ServerError::Keys {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        match &bootstrap.admin_token_file {
            Some(path) => {
                tracing::info!(path = %path.display(), "admin token file (readable by its owner only)")
            }
            None => tracing::info!("admin token set by configuration"),
        }
        let keys = Arc::new(bootstrap.keys);
        keys.follow_shared();

        let models = ReadModels::follow(
            log.clone(),
            personal.clone(),
            Some(config.data_dir.join(SNAPSHOT_DIR)),
            SNAPSHOT_EVERY,
            |service| config.runs(service),
        )
        .await?;
        let ReadModels {
            follower,
            directory,
            tokens,
            agenda,
            status: status_model,
            feedback: feedback_model,
        } = models;
        keys.watch_revocations(tokens);

        let status = match status_model {
            Some(model) => Some(StatusParts::open(&config, &store, log.clone(), model).await?),
            None => None,
        };
        let feedback = match feedback_model {
            Some(model) => Some(FeedbackParts::open(&config, secrets.as_ref(), model).await?),
            None => None,
        };
        tracing::info!(
            events = log.head(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read models ready"
        );
        Ok(Self {
            config,
            store,
            log,
            follower,
            keys,
            personal,
            sealed_from,
            directory,
            agenda,
            status,
            feedback,
            started,
        })
    }

    /// Serves podium on `listener` until `shutdown` completes, then sets health to NOT_SERVING,
    /// ends open streams with a status, drains and flushes the log.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Self {
            config,
            store,
            log,
            follower,
            keys,
            personal,
            sealed_from,
            directory,
            agenda,
            status,
            feedback,
            started,
        } = self;
        let auth = Authenticator::new(keys.clone());
        let limits = config.transport.clone();
        let rates = podium_access::RateLimits::new(config.rates.rates());
        rates.spawn_sweeper(std::time::Duration::from_secs(60));
        let (stop_tx, stop_rx) = watch::channel(false);
        let health = tonic_health::server::HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            health::DrainingHealth::new(health.clone(), stop_rx.clone()),
        );
        // Both reflection versions: grpcurl and older tools ask v1alpha, newer ones v1.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(limits::DESCRIPTORS[0])
                .register_encoded_file_descriptor_set(limits::DESCRIPTORS[1])
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let access_service = Arc::new(
            AccessService::new(keys.clone(), directory.clone(), log.clone())
                .with_rate_limits(rates.clone())
                .with_attendee_margin(std::time::Duration::from_secs(
                    config.attendee_token_margin_hours.saturating_mul(3600),
                )),
        );
        let access = config
            .runs(ServiceName::Access)
            .then(|| limited!(shared AccessServer, access_service.clone(), limits, auth));
        let privacy_service = Arc::new(privacy::PrivacyService {
            log: log.clone(),
            personal: personal.clone(),
            tokens: keys.clone(),
            directory: directory.clone(),
            agenda: agenda.clone(),
            feedback: feedback.as_ref().map(|parts| parts.model.clone()),
            follower: Some(follower.clone()),
            sealed_from,
        });
        let privacy = config
            .runs(ServiceName::Access)
            .then(|| limited!(shared PrivacyServer, privacy_service.clone(), limits, auth));
        // Read-your-writes across nodes: every read model of this node moves with its follower.
        // The pages are reached over https (their cookies, and the position's, marked Secure).
        let pages_secure = config.tls.tls_cert.is_some()
            || config
                .public_url
                .as_deref()
                .is_some_and(podium_web::secure_origin);
        // The pages' cookies are named in the scope a --public-url fixes (its port).
        let cookie_scope = config
            .public_url
            .as_deref()
            .map(podium_web::session::CookieScope::of_public_url);
        let positions =
            positions::PositionLayer::new(log.clone(), follower.applied(), pages_secure)
                .with_cookie_scope(cookie_scope);
        let agenda_service = agenda.map(|store| Arc::new(AgendaService::new(store)));
        let agenda = agenda_service
            .clone()
            .map(|service| limited!(shared AgendaServer, service, limits, auth));
        let feed = config.runs(ServiceName::Feed).then(|| {
            limited!(
                EventFeedServer,
                FeedService::new(
                    log.clone(),
                    directory.clone(),
                    personal.clone(),
                    stop_rx.clone()
                ),
                limits,
                auth
            )
        });
        let stage_service = status.as_ref().map(|parts| {
            Arc::new(StageService::new(
                parts.engine.clone(),
                parts.model.clone(),
                log.clone(),
                stop_rx.clone(),
            ))
        });
        let presence_service = status.as_ref().map(|parts| {
            Arc::new(PresenceService::new(
                parts.engine.clone(),
                parts.model.clone(),
                log.clone(),
                stop_rx.clone(),
            ))
        });
        let playout = status.as_ref().map(|parts| {
            limited!(
                PlayoutServer,
                PlayoutService::new(
                    parts.engine.clone(),
                    parts.model.clone(),
                    log.clone(),
                    stop_rx.clone(),
                    config.reconnect_grace,
                ),
                limits,
                auth
            )
        });
        let presence = presence_service
            .clone()
            .map(|service| limited!(shared PresenceServer, service, limits, auth));
        let stage = stage_service
            .clone()
            .map(|service| limited!(shared StageServer, service, limits, auth));
        // Upload chunks are up to 4 MiB: their own, larger limit.
        let recordings = status.as_ref().map(|parts| {
            InterceptedService::new(
                RecordingsServer::new(
                    RecordingsService::new(
                        log.clone(),
                        parts.model.clone(),
                        parts.recordings.clone(),
                    )
                    .with_shutdown(stop_rx.clone()),
                )
                .max_decoding_message_size(limits.max_upload_message_bytes as usize)
                .max_encoding_message_size(limits.max_response_bytes as usize),
                auth.clone(),
            )
        });
        // Health per gRPC service name, as generic health checkers ask for them.
        let mut served: Vec<&'static str> = Vec::new();
        if access.is_some() {
            served.push(<AccessServer<AccessService> as NamedService>::NAME);
        }
        if agenda.is_some() {
            served.push(<AgendaServer<AgendaService> as NamedService>::NAME);
        }
        if feed.is_some() {
            served.push(<EventFeedServer<FeedService> as NamedService>::NAME);
        }
        if status.is_some() {
            served.push(<PresenceServer<PresenceService> as NamedService>::NAME);
            served.push(<StageServer<StageService> as NamedService>::NAME);
            served.push(<PlayoutServer<PlayoutService> as NamedService>::NAME);
            served.push(<RecordingsServer<RecordingsService> as NamedService>::NAME);
        }
        // Lives until `serve` returns: the publishers end with it.
        let feedback_services = feedback
            .as_ref()
            .map(|parts| parts.services(&log, &stop_rx, &rates, &keys))
            .transpose()?;
        let questions_service = feedback_services.as_ref().map(|s| s.questions.clone());
        let questions = questions_service
            .clone()
            .map(|service| limited!(shared QuestionsServer, service, limits, auth));
        if questions.is_some() {
            served.push(<QuestionsServer<QuestionsService> as NamedService>::NAME);
        }
        let ratings_service = feedback_services.as_ref().map(|s| s.ratings.clone());
        let ratings = ratings_service
            .clone()
            .map(|service| limited!(shared RatingsServer, service, limits, auth));
        if ratings.is_some() {
            served.push(<RatingsServer<RatingsService> as NamedService>::NAME);
        }
        let voter_keys = feedback.as_ref().map(|parts| parts.keys.clone());
        let polls_service = feedback_services.as_ref().map(|s| s.polls.clone());
        let polls = polls_service
            .clone()
            .map(|service| limited!(shared PollsServer, service, limits, auth));
        // The pages need the attendee's services; a node that runs only some (a status-only
        // node, for example) serves gRPC alone.
        let pages = match (
            agenda_service,
            polls_service,
            questions_service,
            ratings_service,
        ) {
            (Some(agenda), Some(polls), Some(questions), Some(ratings))
                if config.runs(ServiceName::Access) =>
            {
                let web = podium_web::Web::new(
                    podium_web::Services {
                        keys: keys.clone(),
                        access: access_service.clone(),
                        agenda,
                        polls,
                        questions,
                        ratings,
                        stage: stage_service,
                        presence: presence_service,
                        privacy: privacy_service.clone(),
                    },
                    pages_secure,
                )
                .with_public_url(config.public_url.clone())
                .with_live_stream_limit(config.transport.max_page_streams as usize);
                web.router()
            }
            _ => axum::Router::new().fallback(grpc_web::grpc_unimplemented),
        };
        let pages = metrics::route(pages, status.as_ref().map(|parts| parts.model.clone()));
        if polls.is_some() {
            served.push(<PollsServer<PollsService> as NamedService>::NAME);
        }
        let rpc_metrics = metrics::RpcMetricsLayer::new(&limits::DESCRIPTORS)
            .map_err(limits::descriptor_error)?;
        let diagnostics = limited!(
            DiagnosticsServer,
            diagnostics::DiagnosticsService::new(diagnostics::NodeFacts {
                started,
                log: log.clone(),
                log_backend: store.backend(),
                applied: Some(directory.applied()),
                streams: rpc_metrics.clone(),
                data_dir: config.data_dir.clone(),
                disk_reserve: config.disk_reserve,
                voter_keys,
                token_keys: keys.clone(),
                personal: personal.clone(),
                recordings: status.as_ref().map(|parts| parts.recordings.clone()),
                stop: stop_rx.clone(),
                lease: status
                    .as_ref()
                    .and_then(|parts| parts.lease.clone())
                    .map(|l| l as Arc<dyn podium_eventlog::Lease>),
            })
            .with_runtimes(
                feedback_services
                    .iter()
                    .map(|s| s.publishing_runtime())
                    .collect()
            ),
            limits,
            auth
        );
        served.push(<DiagnosticsServer<diagnostics::DiagnosticsService> as NamedService>::NAME);
        if privacy.is_some() {
            served.push(<PrivacyServer<privacy::PrivacyService> as NamedService>::NAME);
        }
        for name in &served {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }

        let address = listener.local_addr().ok();
        let (serve_stop_tx, serve_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let calls = listener::Calls::default();
        let guard = limits::GuardLayer::new(
            limits.max_concurrent_requests as usize,
            limits.request_timeout,
            usize::try_from(limits.max_header_list_bytes).unwrap_or(usize::MAX),
            &limits::DESCRIPTORS,
        )
        .map_err(limits::descriptor_error)?
        .with_calls(calls.clone());
        let revocation = revocation::RevocationLayer::new(keys.clone(), &limits::DESCRIPTORS)
            .map_err(limits::descriptor_error)?
            .with_cookie_scope(cookie_scope);
        // TLS and the first-request watch, below hyper; a bad certificate stops podiumd here.
        let admission = listener::Admission {
            tls: listener::server_tls(&config)?,
            handshake_timeout: config.tls.tls_handshake_timeout,
            first_request_timeout: limits.first_request_timeout,
            stop: stop_rx.clone(),
            calls,
        };
        let builder = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_max_local_error_reset_streams(Some(
                limits.max_local_error_reset_streams as usize,
            ))
            // The guard answers metadata over the limit as gRPC does; HTTP/2's own, looser
            // limit stops only the grossly oversized.
            .http2_max_header_list_size(
                u32::try_from(limits.max_header_list_bytes * limits::HEADER_LIST_SLACK)
                    .unwrap_or(u32::MAX),
            )
            .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout));
        // gRPC-Web is translated to gRPC before anything else sees it, so browsers' calls get the
        // same limits and checks; HTTP/1.1 is accepted for browsers and gRPC-Web.
        let server = builder
            .accept_http1(true)
            .layer(grpc_web::GrpcWebForBrowsers)
            .layer(positions)
            .layer(rpc_metrics)
            .layer(guard)
            .layer(revocation)
            .add_routes(tonic::service::Routes::from(pages))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_optional_service(access)
            .add_optional_service(privacy)
            .add_optional_service(agenda)
            .add_optional_service(feed)
            .add_optional_service(presence)
            .add_optional_service(stage)
            .add_optional_service(playout)
            .add_optional_service(polls)
            .add_optional_service(questions)
            .add_optional_service(ratings)
            .add_service(diagnostics)
            .add_optional_service(recordings)
            // No Nagle: status changes and results are small messages that must leave at once.
            .serve_with_incoming_shutdown(
                listener::incoming(
                    TcpIncoming::from(listener)
                        .with_nodelay(Some(true))
                        .with_keepalive(Some(limits.tcp_keepalive)),
                    admission,
                ),
                async {
                    let _ = serve_stop_rx.await;
                },
            );
        let mut server = tokio::spawn(server);
        tracing::info!(address = ?address, services = ?config.services, "podiumd serving");

        let result = tokio::select! {
            result = &mut server => {
                // The server stopped on its own: a transport failure.
                Some(result)
            }
            () = shutdown => None,
        };
        let outcome = match result {
            Some(ended) => health::server_ended(ended),
            None => {
                tracing::info!("shutting down: health NOT_SERVING, ending open streams");
                for name in std::iter::once("").chain(served.iter().copied()) {
                    health
                        .set_service_status(name, tonic_health::ServingStatus::NotServing)
                        .await;
                }
                let _ = stop_tx.send(true);
                let _ = serve_stop_tx.send(());
                match tokio::time::timeout(config.drain_timeout, &mut server).await {
                    Ok(ended) => health::server_ended(ended),
                    Err(_) => {
                        // Streams were told to end; what is left is connections whose clients
                        // did not close after GOAWAY. Nothing is lost by cutting them.
                        tracing::warn!(
                            timeout_ms = config.drain_timeout.as_millis() as u64,
                            "connections still open after the drain timeout; closing them"
                        );
                        server.abort();
                        Ok(())
                    }
                }
            }
        };
        // A clean stop leaves a snapshot of every read model, so that the next start replays
        // nothing but what comes after. Failing to write one costs the next start time, not data.
        if let Err(error) = follower.snapshot().await {
            tracing::warn!(%error, "read models not snapshotted at shutdown");
        }
        // Another node takes the status engine over at once, not after the lease runs out.
        if let Some(lease) = status.as_ref().and_then(|parts| parts.lease.as_ref()) {
            lease.release().await;
        }
        // Whatever happened above, every acknowledged append is already durable; closing flushes
        // and stops the writer cleanly.
        store.close()?;
        tracing::info!("event log flushed and closed");
        outcome
    }
}
