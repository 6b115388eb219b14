//! The speaker's green-room test from the browser, with no script: the form's POST is answered
//! with `307 Temporary Redirect` to the same address, which the browser sends again at once
//! with the same body. The time from one answer to the next request is one round trip between
//! this browser and podiumd; after [`ROUND_TRIPS`] of them the average is recorded through
//! `Presence/RecordTest`, like the CLI's `podium speaker connect --test`, and the speaker
//! goes back to their page, which shows the figure and the session's pre-flight state.

use axum::{
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use podium_proto::v1::{self as pb, presence_server::Presence as _};
use serde::Deserialize;

use crate::{Web, attendee::on_behalf, forms::accept, reply, session::Visitor};

/// Round trips measured per test, above the 4 that `RecordTest` asks for.
pub const ROUND_TRIPS: u32 = 5;

/// Where the test stands, carried in the redirect's query.
#[derive(Debug, Default, Deserialize)]
pub struct Progress {
    /// Round trips measured so far.
    #[serde(default)]
    n: u32,
    /// When the last answer left podiumd, in microseconds since the Unix epoch.
    #[serde(default)]
    at: u64,
    /// The sum of the round trips measured, in microseconds.
    #[serde(default)]
    sum: u64,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Progress {
    /// The state after one more request arrives at `now`: the first request starts the clock.
    fn step(&self, now: u64) -> Progress {
        if self.at == 0 {
            return Progress {
                n: 0,
                at: now,
                sum: 0,
            };
        }
        Progress {
            n: self.n.saturating_add(1),
            at: now,
            sum: self.sum.saturating_add(now.saturating_sub(self.at)),
        }
    }

    /// The average round trip in whole milliseconds, rounded up so a fast link reads 1, not 0.
    fn average_ms(&self) -> u32 {
        u32::try_from(self.sum.div_ceil(1000 * u64::from(self.n.max(1)))).unwrap_or(u32::MAX)
    }
}

/// `POST /s/test/{session}`: one step of the test.
pub async fn test(
    State(web): State<Web>,
    visitor: Visitor,
    Path(session_id): Path<String>,
    Query(progress): Query<Progress>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = accept(&visitor, &headers, body) {
        return *refused;
    }
    let Some(presence) = &web.services.presence else {
        return reply::error(
            &visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            visitor.text().error_unavailable,
            None,
        );
    };
    let next = progress.step(now_micros());
    if next.n < ROUND_TRIPS {
        let location = format!(
            "/s/test/{}?n={}&at={}&sum={}",
            crate::views::path_segment(&session_id),
            next.n,
            next.at,
            next.sum
        );
        // 307 keeps the method and the body, so every step is a checked POST.
        return visitor.finish(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
        );
    }
    let round_trip_ms = next.average_ms();
    let request = pb::RecordTestRequest {
        session_id: session_id.clone(),
        figures: Some(pb::LinkFigures {
            round_trip_ms,
            ..Default::default()
        }),
        samples: next.n,
        agent: "podium speaker page".to_owned(),
    };
    match presence.record_test(on_behalf(&visitor, request)).await {
        Ok(_) => reply::see_other(
            &visitor,
            &format!(
                "/s/?tested={}&ms={round_trip_ms}#session-{}",
                crate::views::path_segment(&session_id),
                crate::views::path_segment(&session_id)
            ),
        ),
        Err(status) => reply::refused(&visitor, &status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_starts_the_clock_and_each_next_one_adds_a_round_trip() {
        let start = Progress::default().step(1_000_000);
        assert_eq!((start.n, start.at, start.sum), (0, 1_000_000, 0));
        let one = start.step(1_040_000);
        assert_eq!((one.n, one.sum), (1, 40_000));
        let two = one.step(1_100_000);
        assert_eq!((two.n, two.sum), (2, 100_000));
        assert_eq!(two.average_ms(), 50);
        // Under a millisecond on loopback reads as 1 ms, not as a perfect 0.
        assert_eq!(
            Progress {
                n: 5,
                at: 0,
                sum: 900
            }
            .average_ms(),
            1
        );
    }
}
