//! The agenda's own time rules: zone names, dates, and the slot finder.
//!
//! **podium stores every instant in UTC**; a zone only decides how an instant is shown and
//! whether it falls inside somebody's waking hours. Local hours and zoned labels are shared
//! with the status service, so they live in [`podium_core::time`]; what only the agenda needs
//! stays here.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use podium_core::{Hours, InvalidField};

/// Parses an IANA zone name such as `Asia/Phnom_Penh`.
pub fn parse_zone(field: &'static str, name: &str) -> Result<Tz, InvalidField> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InvalidField::new(
            field,
            "is required, e.g. \"Asia/Phnom_Penh\"",
        ));
    }
    name.parse::<Tz>().map_err(|_| {
        InvalidField::new(
            field,
            format!("{name:?} is not an IANA time zone; use a name like \"Asia/Phnom_Penh\" or \"America/New_York\""),
        )
    })
}

/// Local midnight at the start of `date` in `zone`, in UTC (the first instant of the day when
/// daylight saving skips midnight).
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let naive = date.and_time(NaiveTime::MIN);
    match zone.from_local_datetime(&naive).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // Midnight does not exist that day: the day starts an hour later.
        None => (zone.from_utc_datetime(&naive) + Duration::hours(1)).with_timezone(&Utc),
    }
}

/// Parses "YYYY-MM-DD".
pub fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, InvalidField> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| InvalidField::new(field, format!("{text:?} is not a date; use YYYY-MM-DD")))
}

/// What the slot finder searches.
#[derive(Debug, Clone)]
pub struct SlotQuery<'a> {
    /// The conference's zone, in which the dates are days.
    pub zone: Tz,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub duration: Duration,
    pub step: Duration,
    /// Each speaker's zone and hours.
    pub speakers: Vec<(Tz, Hours)>,
    /// Intervals already taken by a speaker or the room.
    pub busy: &'a [(DateTime<Utc>, DateTime<Utc>)],
    pub limit: usize,
}

/// Candidate starts every `step` from the first day's local midnight; a slot is kept when it is
/// within every speaker's hours and overlaps nothing busy.
pub fn suggest_slots(query: &SlotQuery<'_>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut slots = Vec::new();
    let Some(last_day) = query.to_date.succ_opt() else {
        return slots;
    };
    let first = start_of_day(query.from_date, query.zone);
    let stop = start_of_day(last_day, query.zone);
    let mut start = first;
    while start + query.duration <= stop && slots.len() < query.limit {
        let end = start + query.duration;
        let fits = query
            .speakers
            .iter()
            .all(|(zone, hours)| hours.contains(*zone, start, end))
            && !query
                .busy
                .iter()
                .any(|(b_start, b_end)| overlaps(start, end, *b_start, *b_end));
        if fits {
            slots.push((start, end));
        }
        start += query.step;
    }
    slots
}

pub fn overlaps(
    a_start: DateTime<Utc>,
    a_end: DateTime<Utc>,
    b_start: DateTime<Utc>,
    b_end: DateTime<Utc>,
) -> bool {
    a_start < b_end && b_start < a_end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn unknown_zone_names_the_field() {
        let err = parse_zone("time_zone", "Asia/Phnom_Pen").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("time_zone: \"Asia/Phnom_Pen\" is not an IANA time zone")
        );
        assert_eq!(
            parse_zone("time_zone", "Asia/Phnom_Penh").unwrap(),
            chrono_tz::Asia::Phnom_Penh
        );
    }

    #[test]
    fn slots_fall_inside_every_speakers_hours_and_avoid_busy_times() {
        // Phnom Penh (UTC+7) 08:00-21:00 and Paris (UTC+1 in November) 08:00-21:00 overlap
        // from 14:00 to 21:00 Phnom Penh time.
        let busy = [(utc("2024-11-14T07:00:00Z"), utc("2024-11-14T08:00:00Z"))];
        let query = SlotQuery {
            zone: chrono_tz::Asia::Phnom_Penh,
            from_date: NaiveDate::from_ymd_opt(2024, 11, 14).unwrap(),
            to_date: NaiveDate::from_ymd_opt(2024, 11, 14).unwrap(),
            duration: Duration::minutes(60),
            step: Duration::minutes(60),
            speakers: vec![
                (chrono_tz::Asia::Phnom_Penh, Hours::default()),
                (chrono_tz::Europe::Paris, Hours::default()),
            ],
            busy: &busy,
            limit: 100,
        };
        let slots = suggest_slots(&query);
        let starts: Vec<String> = slots
            .iter()
            .map(|(s, _)| {
                s.with_timezone(&chrono_tz::Asia::Phnom_Penh)
                    .format("%H:%M")
                    .to_string()
            })
            .collect();
        // 14:00 is busy (07:00Z); the last one-hour slot ends at 21:00.
        assert_eq!(
            starts,
            ["15:00", "16:00", "17:00", "18:00", "19:00", "20:00"]
        );
    }
}
