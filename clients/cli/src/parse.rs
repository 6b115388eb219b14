//! Parsers for values people type on the command line that more than one command reads:
//! localised titles (`--title km=...`) and times in the conference's zone. They live apart from
//! the commands so that each rule has one home and its tests.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use podium_client::pb;

/// `--title "Text"` is the default language; `--title km=Text` another; one value may also
/// hold several, `en=Open budgets;km=ថវិកាបើកចំហ`.
pub fn localized(values: &[String], default_language: &str) -> anyhow::Result<pb::LocalizedText> {
    let mut text = HashMap::new();
    for value in values {
        // Only a language tag before `=` splits the value, so "E=mc2" stays one title; the tag
        // rule is the one the server cleans titles with, so what splits here is accepted there.
        let tagged: Option<Vec<(&str, &str)>> = value
            .split(';')
            .map(|part| {
                part.split_once('=')
                    .filter(|(lang, _)| podium_text::is_language_tag(lang))
            })
            .collect();
        let pairs = tagged.unwrap_or_else(|| vec![(default_language, value.as_str())]);
        for (lang, t) in pairs {
            if text.insert(lang.to_owned(), t.to_owned()).is_some() {
                bail!("language {lang} is given twice");
            }
        }
    }
    Ok(pb::LocalizedText { text })
}

/// RFC 3339 with an offset, or a wall-clock time in `zone` ("2024-11-14 09:00").
pub fn time(text: &str, zone: Tz) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| anyhow!("{text:?} is not a time; use \"2024-11-14 09:00\" or RFC 3339"))?;
    // A wall-clock time skipped or repeated by a daylight-saving change has no one instant;
    // refusing it beats guessing which the organiser meant.
    zone.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            anyhow!(
                "{text} does not exist or is ambiguous in {} (a daylight-saving change)",
                zone.name()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_take_a_language_prefix() {
        let t = localized(
            &["Open Data Conference".into(), "km=សន្និសីទទិន្នន័យបើកចំហ".into()],
            "en",
        )
        .unwrap();
        assert_eq!(t.text["en"], "Open Data Conference");
        assert_eq!(t.text["km"], "សន្និសីទទិន្នន័យបើកចំហ");
        assert!(localized(&["A".into(), "en=B".into()], "en").is_err());
        // Not a tag: the whole value is the default language's text.
        let t = localized(&["E=mc2 for data".into()], "en").unwrap();
        assert_eq!(t.text["en"], "E=mc2 for data");
    }

    #[test]
    fn wall_clock_times_are_read_in_the_conference_zone() {
        let pp = chrono_tz::Asia::Phnom_Penh;
        assert_eq!(
            time("2024-11-14 09:00", pp).unwrap().to_rfc3339(),
            "2024-11-14T02:00:00+00:00"
        );
        assert_eq!(
            time("2024-11-14T09:00:00Z", pp).unwrap().to_rfc3339(),
            "2024-11-14T09:00:00+00:00"
        );
        assert!(time("14/11/2024", pp).is_err());
        // 02:30 does not exist in New York on 10 March 2024.
        assert!(time("2024-03-10 02:30", chrono_tz::America::New_York).is_err());
    }
}
