//! Conversions between `google.protobuf.Timestamp` and the instants podium computes with
//! (`chrono::DateTime<Utc>` and Unix milliseconds). Instants are UTC everywhere.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// The timestamp of an instant.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9, so it fits.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The timestamp of an instant given in Unix milliseconds.
pub fn timestamp_from_millis(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The instant of a timestamp; `None` when it is missing or outside chrono's range.
pub fn instant(t: &Option<Timestamp>) -> Option<DateTime<Utc>> {
    let t = t.as_ref()?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// Unix milliseconds of a timestamp; 0 when it is missing, saturating at the ends.
pub fn millis(t: &Option<Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_millis_round_trip() {
        let at = DateTime::parse_from_rfc3339("2024-11-14T02:00:00.250Z")
            .unwrap()
            .to_utc();
        let t = timestamp(at);
        assert_eq!(instant(&Some(t)), Some(at));
        assert_eq!(millis(&Some(t)), at.timestamp_millis());
        assert_eq!(timestamp_from_millis(at.timestamp_millis()), t);
        assert_eq!(
            timestamp_from_millis(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
        assert_eq!(millis(&None), 0);
        assert_eq!(instant(&None), None);
    }
}
