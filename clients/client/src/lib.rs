//! The typed Rust client for podium.
//!
//! ```no_run
//! # async fn demo() -> Result<(), podium_client::ClientError> {
//! use podium_client::{Client, pb};
//! let client = Client::connect("127.0.0.1:50051", Some("<token>".into())).await?;
//! let conference = client
//!     .agenda()
//!     .get_conference(pb::GetConferenceRequest { conference_id: "odc2024".into() })
//!     .await?
//!     .into_inner();
//! # Ok(()) }
//! ```
//!
//! Every stub sends the token as `authorization: Bearer <token>`. [`Client::follow_feed`]
//! follows a conference's event feed across disconnects and server restarts, resuming from the
//! last position it delivered, so the caller sees every event exactly once.

#![forbid(unsafe_code)]

pub mod agent;
mod backup;
mod json;
mod nodes;
mod placeholder;
mod recordings;
mod status;

use std::{str::FromStr, time::Duration};

use futures::{Stream, StreamExt};
pub use podium_proto::v1 as pb;
use podium_proto::v1::{
    access_client::AccessClient, agenda_client::AgendaClient,
    diagnostics_client::DiagnosticsClient, event_feed_client::EventFeedClient,
    playout_client::PlayoutClient, polls_client::PollsClient, presence_client::PresenceClient,
    privacy_client::PrivacyClient, questions_client::QuestionsClient,
    ratings_client::RatingsClient, recordings_client::RecordingsClient, stage_client::StageClient,
};
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

pub use json::{message_to_json, payload_to_json};
pub use nodes::Nodes;
pub use placeholder::{PLACEHOLDER_SIDE, placeholder_mp4};
pub use podium_proto::{LOG_POSITION_HEADER, MIN_POSITION_HEADER, POSITION_UNREACHED_HEADER};
pub use recordings::{Fetched, Progress, TransferError, UPLOAD_CHUNK_BYTES, hash_file, part_path};
pub use status::{StatusUpdate, left_room, taken_off};

/// Why the client could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a valid podium address; use host:port, e.g. 127.0.0.1:50051")]
    BadAddress(String),
    #[error("cannot reach podiumd at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the token contains characters that cannot be sent in a header")]
    BadToken,
    #[error("TLS settings for {address}: {source}")]
    Tls {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("{}", .0.message())]
    Rpc(#[from] Status),
}

/// Adds the bearer token to every request.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// The nodes' channel, with the token on every request.
pub type Authed = InterceptedService<Nodes, Bearer>;

/// A connection to podiumd (one node, or several: see [`Nodes`]) with one token. Cheap to
/// clone; clones share the connections.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Nodes,
    bearer: Bearer,
}

/// How to reach a podiumd that serves TLS (`podiumd --tls-cert ...`).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM certificates of the CA to trust, instead of the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM certificate and its PEM key, for a server that asks for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check the server's certificate against, when it is not the address's host.
    pub domain: Option<String>,
}

impl Tls {
    fn config(self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match self.ca_pem {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_webpki_roots(),
        };
        if let Some((cert, key)) = self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = self.domain {
            config = config.domain_name(domain);
        }
        config
    }
}

/// One item of a followed feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Event(pb::Event),
    /// Everything stored when the (re)subscription started has been delivered.
    CaughtUp(u64),
}

impl Client {
    /// Connects to `address` (`host:port`, `http://host:port`, or `https://host:port` for TLS
    /// checked against the public web roots). Several nodes of one conference are given
    /// separated by commas (`a:50051,b:50051`): calls go to the first that answers, and move to
    /// the next when it fails (see [`Nodes`]).
    pub async fn connect(address: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::connect_with(address, token, None).await
    }

    /// Connects with TLS settings: a private CA, a client certificate for mutual TLS, or the
    /// name the server's certificate carries. With `tls`, a bare `host:port` means `https://`.
    pub async fn connect_with(
        address: &str,
        token: Option<String>,
        tls: Option<&Tls>,
    ) -> Result<Self, ClientError> {
        let addresses: Vec<&str> = address
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        if addresses.is_empty() {
            return Err(ClientError::BadAddress(address.to_owned()));
        }
        let endpoints = addresses
            .iter()
            .map(|a| endpoint(a, tls))
            .collect::<Result<Vec<_>, _>>()?;
        // The first node that answers is used; the others connect when a call first needs them.
        let mut first = None;
        let mut failure = None;
        let mut nodes = Vec::with_capacity(endpoints.len());
        for (i, (address, endpoint)) in addresses.iter().zip(endpoints).enumerate() {
            let channel = if first.is_none() {
                match endpoint.connect().await {
                    Ok(channel) => {
                        first = Some(i);
                        channel
                    }
                    Err(source) => {
                        failure = Some(ClientError::Connect {
                            address: (*address).to_owned(),
                            source,
                        });
                        endpoint.connect_lazy()
                    }
                }
            } else {
                endpoint.connect_lazy()
            };
            nodes.push(((*address).to_owned(), channel));
        }
        let Some(first) = first else {
            return Err(failure.unwrap_or_else(|| ClientError::BadAddress(address.to_owned())));
        };
        Ok(Self {
            channel: Nodes::new(nodes, first),
            bearer: bearer(token)?,
        })
    }

    /// The nodes this client talks to: which one it uses now, and the log position it has seen.
    pub fn nodes(&self) -> &Nodes {
        &self.channel
    }

    /// The same connection with another token.
    pub fn with_token(&self, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Self {
            channel: self.channel.clone(),
            bearer: bearer(token)?,
        })
    }

    pub fn agenda(&self) -> AgendaClient<Authed> {
        AgendaClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn access(&self) -> AccessClient<Authed> {
        AccessClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn presence(&self) -> PresenceClient<Authed> {
        PresenceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// gRPC health (`grpc.health.v1.Health`), which needs no token: load balancers, probes and
    /// `podium health` ask it.
    pub fn health(&self) -> tonic_health::pb::health_client::HealthClient<Nodes> {
        tonic_health::pb::health_client::HealthClient::new(self.channel.clone())
    }

    pub fn diagnostics(&self) -> DiagnosticsClient<Authed> {
        DiagnosticsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn polls(&self) -> PollsClient<Authed> {
        PollsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// Session Q&A: ask, upvote, moderate, list and watch questions.
    pub fn questions(&self) -> QuestionsClient<Authed> {
        QuestionsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// Session ratings: attendees rate, moderators read aggregates.
    pub fn ratings(&self) -> RatingsClient<Authed> {
        RatingsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// A playout bridge's reports of what the program output shows.
    pub fn playout(&self) -> PlayoutClient<Authed> {
        PlayoutClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn stage(&self) -> StageClient<Authed> {
        StageClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn feed(&self) -> EventFeedClient<Authed> {
        EventFeedClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// Recordings; see [`Client::upload_recording_file`] and [`Client::fetch_recording_file`].
    pub fn recordings(&self) -> RecordingsClient<Authed> {
        RecordingsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// A person's data, and erasing them (data-protection requests).
    pub fn privacy(&self) -> PrivacyClient<Authed> {
        PrivacyClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// A fresh request id for a write. Keep it to retry the same write safely.
    ///
    /// A time-ordered UUID (version 7: a millisecond timestamp, then a counter that this process
    /// reseeds at random every millisecond and steps within it, then 32 random bits), so that
    /// the event log's index of event ids is appended to rather than written at random places:
    /// on a log of 1,500,000 events that appends faster and grows less per event (`cargo bench
    /// -p podium-eventlog --bench memory`). Ids made one after the other sort in that order.
    /// Its first digits change only every minute or so; take the last ones where a short unique
    /// name is needed. A request id is not a secret: never use one as a token or a key.
    pub fn request_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// Sends a write with a fresh request id, and sends it again with the same id while the
    /// answer is one a retry may cure ([`retryable`]: the server unreachable, a node that
    /// does not run the status engine right now, an answer that did not come in time), up to
    /// `attempts` times in all with a growing pause. The server carries the write out once and
    /// answers each retry with the first outcome. `send` builds and sends the request for the
    /// id it is given.
    pub async fn send_once<T, F, Fut>(attempts: u32, mut send: F) -> Result<T, Status>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let request_id = Self::request_id();
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match send(request_id.clone()).await {
                Err(status) if retryable(&status) && attempt < attempts => {
                    tracing::debug!(%request_id, attempt, code = ?status.code(), "write not answered; sending it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    /// Follows the conference's event feed from `from_position`, reconnecting with backoff
    /// when the connection or the server goes away and resuming after the last event it
    /// delivered. Ends with an error only for problems a retry cannot fix (a bad token, an
    /// unknown conference, a bad filter).
    pub fn follow_feed(
        &self,
        conference_id: &str,
        from_position: u64,
        types: Vec<String>,
    ) -> impl Stream<Item = Result<FeedItem, Status>> + Send + 'static {
        let client = self.clone();
        let conference_id = conference_id.to_owned();
        async_stream::try_stream! {
            let mut next = from_position;
            let mut backoff = Duration::from_millis(100);
            loop {
                let request = pb::SubscribeRequest {
                    conference_id: conference_id.clone(),
                    from_position: next,
                    types: types.clone(),
                };
                let failure = match client.feed().subscribe(request).await {
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        loop {
                            match stream.next().await {
                                Some(Ok(pb::SubscribeResponse { item: Some(item) })) => {
                                    backoff = Duration::from_millis(100);
                                    match item {
                                        pb::subscribe_response::Item::Event(event) => {
                                            next = event.position + 1;
                                            yield FeedItem::Event(event);
                                        }
                                        pb::subscribe_response::Item::CaughtUp(c) => {
                                            yield FeedItem::CaughtUp(c.position);
                                        }
                                    }
                                }
                                Some(Ok(pb::SubscribeResponse { item: None })) => {}
                                Some(Err(status)) => break status,
                                None => break Status::unavailable("feed ended"),
                            }
                        }
                    }
                    Err(status) => status,
                };
                if !retryable(&failure) {
                    Err(failure)?;
                    return;
                }
                tracing::debug!(next, code = ?failure.code(), message = failure.message(), ?backoff, "feed interrupted, resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The endpoint of one node's address, with TLS when it says `https://` or `tls` is given.
fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Endpoint, ClientError> {
    let uri = match (address.contains("://"), tls) {
        (true, _) => address.to_owned(),
        (false, None) => format!("http://{address}"),
        (false, Some(_)) => format!("https://{address}"),
    };
    let mut endpoint = Endpoint::from_str(&uri)
        .map_err(|_| ClientError::BadAddress(address.to_owned()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if uri.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls.cloned().unwrap_or_default().config())
            .map_err(|source| ClientError::Tls {
                address: address.to_owned(),
                source,
            })?;
    }
    Ok(endpoint)
}

fn bearer(token: Option<String>) -> Result<Bearer, ClientError> {
    let value = match token.filter(|t| !t.trim().is_empty()) {
        Some(token) => Some(
            MetadataValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| ClientError::BadToken)?,
        ),
        None => None,
    };
    Ok(Bearer(value))
}

/// Failures that a reconnect may cure.
pub fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::Client;

    /// The event log's id index is appended to only if request ids sort as they are made.
    #[test]
    fn request_ids_are_uuids_that_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| Client::request_id()).collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a request id is a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id} is not time-ordered");
        }
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "request ids made one after the other must sort in that order"
        );
    }
}
