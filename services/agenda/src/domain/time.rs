//! Time zones, local availability hours and the slot finder.
//!
//! **podium stores every instant in UTC**; a zone only decides how an instant is shown and
//! whether it falls inside somebody's waking hours. All conversions go through chrono-tz's
//! compiled IANA database, so daylight-saving changes are handled and nothing is fetched.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::AgendaError;

/// Parses an IANA zone name such as `Asia/Phnom_Penh`.
pub fn parse_zone(field: &'static str, name: &str) -> Result<Tz, AgendaError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AgendaError::invalid(
            field,
            "is required, e.g. \"Asia/Phnom_Penh\"",
        ));
    }
    name.parse::<Tz>().map_err(|_| {
        AgendaError::invalid(
            field,
            format!("{name:?} is not an IANA time zone; use a name like \"Asia/Phnom_Penh\" or \"America/New_York\""),
        )
    })
}

/// Local availability, in minutes after local midnight: `from` inclusive, `until` inclusive as
/// an end time (a talk may end exactly at `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub from: u32,
    pub until: u32,
}

impl Default for Hours {
    fn default() -> Self {
        Self {
            from: 8 * 60,
            until: 21 * 60,
        }
    }
}

impl Hours {
    pub fn new(from: u32, until: u32) -> Result<Self, AgendaError> {
        if until > 24 * 60 {
            return Err(AgendaError::invalid(
                "available_until",
                "must be 24:00 at the latest",
            ));
        }
        if from >= until {
            return Err(AgendaError::invalid(
                "available_from",
                format!(
                    "{} must be earlier than available_until {}",
                    hhmm(from),
                    hhmm(until)
                ),
            ));
        }
        Ok(Self { from, until })
    }

    /// Parses "HH:MM" pairs, with the defaults for empty strings.
    pub fn parse(from: &str, until: &str) -> Result<Self, AgendaError> {
        let default = Self::default();
        let from = if from.trim().is_empty() {
            default.from
        } else {
            parse_hhmm("available_from", from)?
        };
        let until = if until.trim().is_empty() {
            default.until
        } else {
            parse_hhmm("available_until", until)?
        };
        Self::new(from, until)
    }

    /// True when `[start, end)` lies on one local day of `zone`, within these hours.
    pub fn contains(&self, zone: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let local_start = start.with_timezone(&zone);
        let local_end = end.with_timezone(&zone);
        let start_minute = local_start.num_seconds_from_midnight() / 60;
        // An end at local midnight counts as 24:00 of the start's day.
        let (end_day, end_seconds) = if local_end.num_seconds_from_midnight() == 0 && end > start {
            (local_end.date_naive().pred_opt(), 24 * 3600)
        } else {
            (
                Some(local_end.date_naive()),
                local_end.num_seconds_from_midnight(),
            )
        };
        end_day == Some(local_start.date_naive())
            && local_start.second() == 0
            && start_minute >= self.from
            && end_seconds <= self.until * 60
    }

    pub fn describe(&self) -> String {
        format!("{}-{}", hhmm(self.from), hhmm(self.until))
    }
}

/// "HH:MM" (24-hour clock, "24:00" allowed) to minutes after midnight.
pub fn parse_hhmm(field: &'static str, text: &str) -> Result<u32, AgendaError> {
    let bad = || {
        AgendaError::invalid(
            field,
            format!("{text:?} is not a time; use HH:MM, e.g. \"08:30\""),
        )
    };
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || text.trim().len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

pub fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// One instant as seen in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonedView {
    pub utc: DateTime<Utc>,
    pub zone: Tz,
    /// RFC 3339 with the zone's offset.
    pub local: String,
    /// "Thu 14 Nov 2024 09:00 +07 (Asia/Phnom_Penh)".
    pub label: String,
}

pub fn zoned(utc: DateTime<Utc>, zone: Tz) -> ZonedView {
    let local = utc.with_timezone(&zone);
    ZonedView {
        utc,
        zone,
        local: local.to_rfc3339(),
        label: format!("{} ({})", local.format("%a %d %b %Y %H:%M %Z"), zone.name()),
    }
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
pub fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, AgendaError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| AgendaError::invalid(field, format!("{text:?} is not a date; use YYYY-MM-DD")))
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
    fn hours_parse_and_reject_nonsense() {
        assert_eq!(
            Hours::parse("", "").unwrap(),
            Hours {
                from: 480,
                until: 1260
            }
        );
        assert_eq!(
            Hours::parse("07:30", "24:00").unwrap(),
            Hours {
                from: 450,
                until: 1440
            }
        );
        assert!(
            Hours::parse("9:00", "17:00").is_err(),
            "one-digit hours are ambiguous"
        );
        assert!(Hours::parse("18:00", "09:00").is_err());
        assert!(Hours::parse("10:61", "12:00").is_err());
    }

    #[test]
    fn the_same_talk_is_inside_one_speakers_hours_and_outside_anothers() {
        // 09:00-09:45 in Phnom Penh is 21:00-21:45 the evening before in New York (EST).
        let start = utc("2024-11-14T02:00:00Z");
        let end = utc("2024-11-14T02:45:00Z");
        let hours = Hours::default();
        assert!(hours.contains(chrono_tz::Asia::Phnom_Penh, start, end));
        assert!(!hours.contains(chrono_tz::America::New_York, start, end));
        // Ending exactly at 21:00 local is fine.
        assert!(hours.contains(
            chrono_tz::America::New_York,
            utc("2024-11-14T01:00:00Z"),
            utc("2024-11-14T02:00:00Z")
        ));
    }

    #[test]
    fn labels_show_local_time_and_zone() {
        let view = zoned(utc("2024-11-14T02:00:00Z"), chrono_tz::Asia::Phnom_Penh);
        assert_eq!(view.local, "2024-11-14T09:00:00+07:00");
        assert_eq!(view.label, "Thu 14 Nov 2024 09:00 +07 (Asia/Phnom_Penh)");
        let ny = zoned(utc("2024-11-14T02:00:00Z"), chrono_tz::America::New_York);
        assert_eq!(ny.label, "Wed 13 Nov 2024 21:00 EST (America/New_York)");
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

    #[test]
    fn a_day_with_a_daylight_saving_change_still_has_its_hours() {
        // New York springs forward on 10 March 2024: 09:00-10:00 local is 13:00-14:00Z.
        let hours = Hours::default();
        assert!(hours.contains(
            chrono_tz::America::New_York,
            utc("2024-03-10T13:00:00Z"),
            utc("2024-03-10T14:00:00Z")
        ));
        assert!(!hours.contains(
            chrono_tz::America::New_York,
            utc("2024-03-10T11:00:00Z"),
            utc("2024-03-10T12:00:00Z")
        ));
    }
}
