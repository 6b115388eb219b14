//! How an instant is shown and whether it suits a person: zoned labels and local hours.
//!
//! **podium stores every instant in UTC**; a zone only decides how an instant is shown and
//! whether it falls inside somebody's waking hours. The agenda shows sessions and checks
//! speakers' hours with these; the status service does the same in its pre-flight report, so
//! both must agree to the character. All conversions go through chrono-tz's compiled IANA
//! database, so daylight-saving changes are handled and nothing is fetched.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::InvalidField;

/// Local availability, in minutes after local midnight: `from` inclusive, `until` inclusive as
/// an end time (a talk may end exactly at `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    pub fn new(from: u32, until: u32) -> Result<Self, InvalidField> {
        if until > 24 * 60 {
            return Err(InvalidField::new(
                "available_until",
                "must be 24:00 at the latest",
            ));
        }
        if from >= until {
            return Err(InvalidField::new(
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
    pub fn parse(from: &str, until: &str) -> Result<Self, InvalidField> {
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

    /// Why a session from `start` to `end` does not fit these hours in `zone`: which end is
    /// outside them, said as the person would read it ("starts Wed 06:30", "ends Wed 22:01",
    /// "ends Thu 00:30, the next day"); `None` when it fits. The agenda's warnings and the
    /// pre-flight report both say it this way.
    pub fn conflict(&self, zone: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Conflict> {
        if self.contains(zone, start, end) {
            return None;
        }
        let (local_start, local_end) = (start.with_timezone(&zone), end.with_timezone(&zone));
        let start_minute = local_start.num_seconds_from_midnight() / 60;
        let starts = |text: String| {
            Some(Conflict {
                ends: false,
                text: format!("starts {text}"),
            })
        };
        if start_minute < self.from || start_minute >= self.until {
            return starts(local_start.format("%a %H:%M").to_string());
        }
        if local_start.second() != 0 {
            return starts(format!(
                "{}, not on a whole minute",
                local_start.format("%a %H:%M:%S")
            ));
        }
        // An end at local midnight is 24:00 of the start's day, which `contains` allows.
        let next_day = local_end.date_naive() != local_start.date_naive()
            && !(local_end.num_seconds_from_midnight() == 0
                && local_end.date_naive().pred_opt() == Some(local_start.date_naive()));
        let text = if next_day {
            format!("ends {}, the next day", local_end.format("%a %H:%M"))
        } else {
            format!("ends {}", local_end.format("%a %H:%M"))
        };
        Some(Conflict { ends: true, text })
    }
}

/// Which end of a session lies outside a person's hours ([`Hours::conflict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The end is outside (the start is within).
    pub ends: bool,
    /// What the person reads: "starts Wed 06:30", "ends Thu 00:30, the next day".
    pub text: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// "HH:MM" (24-hour clock, "24:00" allowed) to minutes after midnight.
pub fn parse_hhmm(field: &'static str, text: &str) -> Result<u32, InvalidField> {
    let bad = || {
        InvalidField::new(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_names_the_end_that_is_outside() {
        let hours = Hours::new(7 * 60, 22 * 60).unwrap();
        let taipei: Tz = "Asia/Taipei".parse().unwrap();
        let at = |t: &str| utc(t);
        // 21:30 to 22:01 in Taipei (UTC+8): the start is inside, the end is not.
        assert_eq!(
            hours.conflict(
                taipei,
                at("2024-11-13T13:30:00Z"),
                at("2024-11-13T14:01:00Z")
            ),
            Some(Conflict {
                ends: true,
                text: "ends Wed 22:01".to_owned()
            })
        );
        assert_eq!(
            hours.conflict(
                taipei,
                at("2024-11-12T22:30:00Z"),
                at("2024-11-12T23:30:00Z")
            ),
            Some(Conflict {
                ends: false,
                text: "starts Wed 06:30".to_owned()
            })
        );
        assert_eq!(
            hours.conflict(
                taipei,
                at("2024-11-13T13:30:00Z"),
                at("2024-11-13T16:30:00Z")
            ),
            Some(Conflict {
                ends: true,
                text: "ends Thu 00:30, the next day".to_owned()
            })
        );
        assert_eq!(
            hours.conflict(
                taipei,
                at("2024-11-13T13:00:00Z"),
                at("2024-11-13T14:00:00Z")
            ),
            None
        );
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
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
