//! What the templates show, built from the services' messages: localised text with its
//! language, times in the conference's zone, polls with their controls and results with the
//! numbers written out.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, Locale, Utc};
use podium_proto::v1 as pb;

use crate::i18n::Lang;

/// A text from a `LocalizedText` in the reader's language when it exists, else in the
/// conference's default language, with the tag of the language it is in.
pub fn localized(
    text: Option<&pb::LocalizedText>,
    lang: Lang,
    fallback: &str,
) -> (String, Option<String>) {
    let Some(text) = text else {
        return (String::new(), None);
    };
    for tag in [lang.tag(), fallback] {
        if let Some(value) = text.text.get(tag) {
            return (value.clone(), Some(tag.to_owned()));
        }
    }
    let first = text.text.iter().min_by_key(|(tag, _)| tag.as_str());
    first.map_or((String::new(), None), |(tag, value)| {
        (value.clone(), Some(tag.clone()))
    })
}

/// `lang` attribute for content: only when it differs from the page's language.
fn attribute(tag: Option<String>, page: Lang) -> Option<String> {
    tag.filter(|t| t != page.tag())
}

/// How a wall time names its day and month in the reader's language: the `chrono` day and
/// month fields, and the locale.
fn names(lang: Lang) -> (&'static str, &'static str, Locale) {
    match lang {
        Lang::En => ("%a", "%b", Locale::en_GB),
        // Khmer's abbreviated names are a letter or a numeral (ស is both Saturday and
        // Sunday, ១១ is November): the full names read better.
        Lang::Km => ("%A", "%B", Locale::km_KH),
    }
}

/// A wall time in the reader's language: the day and month by their names in it.
fn wall_time(time: &DateTime<FixedOffset>, lang: Lang) -> String {
    let (day, month, locale) = names(lang);
    time.format_localized(&format!("{day} %d {month} %H:%M"), locale)
        .to_string()
}

/// The days of the week from Sunday, as [`wall_time`] names them, comma-separated: the page's
/// script writes a time in the reader's own zone with them, whatever locales the browser has.
/// Written once per language.
pub fn day_names(lang: Lang) -> &'static str {
    static DAYS: LazyLock<[String; 2]> = LazyLock::new(|| Lang::ALL.map(write_day_names));
    &DAYS[Lang::ALL.iter().position(|&l| l == lang).unwrap_or(0)]
}

fn write_day_names(lang: Lang) -> String {
    let (day, _, locale) = names(lang);
    // 7 January 2024 was a Sunday.
    let sunday = chrono::NaiveDate::from_ymd_opt(2024, 1, 7).expect("a date");
    (0..7)
        .map(|i| {
            (sunday + chrono::Days::new(i))
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .format_localized(day, locale)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A start and an end as wall times of the zone they are given in, in the reader's language.
/// The end is only a time when it falls on the start's day there, and carries its own day when
/// the span crosses midnight.
pub fn wall_span(
    start: Option<&pb::ZonedTime>,
    end: Option<&pb::ZonedTime>,
    lang: Lang,
) -> (String, String) {
    let wall =
        |t: Option<&pb::ZonedTime>| t.and_then(|t| DateTime::parse_from_rfc3339(&t.local).ok());
    let (start, end) = (wall(start), wall(end));
    let end_text = match (start, end) {
        (Some(s), Some(e)) if s.date_naive() == e.date_naive() => e.format("%H:%M").to_string(),
        (_, Some(e)) => wall_time(&e, lang),
        (_, None) => String::new(),
    };
    let start_text = start.map(|s| wall_time(&s, lang)).unwrap_or_default();
    (start_text, end_text)
}

/// One session in a list.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: String,
    pub title: String,
    pub lang: Option<String>,
    pub room: String,
    pub room_id: String,
    pub start_utc: String,
    pub start_local: String,
    pub end_local: String,
    pub zone: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl SessionView {
    pub fn new(session: &pb::Session, lang: Lang, default_language: &str) -> Self {
        let (title, title_lang) = localized(session.title.as_ref(), lang, default_language);
        let instant = |time: Option<&pb::ZonedTime>| {
            time.and_then(|t| t.utc.as_ref())
                .and_then(|ts| DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32))
        };
        let start = instant(session.start.as_ref());
        let (start_local, end_local) =
            wall_span(session.start.as_ref(), session.end.as_ref(), lang);
        Self {
            id: session.id.clone(),
            title,
            lang: attribute(title_lang, lang),
            room: session.room_name.clone(),
            room_id: session.room_id.clone(),
            start_utc: start.map(|s| s.to_rfc3339()).unwrap_or_default(),
            start_local,
            end_local,
            zone: session
                .start
                .as_ref()
                .map(|t| t.time_zone.clone())
                .unwrap_or_default(),
            start,
            end: instant(session.end.as_ref()),
        }
    }

    pub fn is_on(&self, now: DateTime<Utc>) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s <= now && now < e)
    }

    pub fn has_started(&self, now: DateTime<Utc>) -> bool {
        self.start.is_some_and(|s| s <= now)
    }
}

/// Which controls a poll needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    Single,
    Multiple,
    Rating,
    Words,
    Text,
}

#[derive(Debug, Clone)]
pub struct OptionView {
    pub id: String,
    pub label: String,
}

/// One poll with its form and, when visible, its results.
#[derive(Debug, Clone)]
pub struct PollView {
    pub id: String,
    /// Empty for a conference-wide poll.
    pub session_id: String,
    pub label: String,
    pub lang: Option<String>,
    pub kind: PollKind,
    pub options: Vec<OptionView>,
    pub max_choices: u32,
    pub scale_min: i32,
    pub scale_max: i32,
    pub scale: Vec<i32>,
    pub max_chars: usize,
    pub open: bool,
    pub locked: bool,
    pub results: Option<ResultsView>,
    /// Made for this rendering of the form: sending it twice counts once.
    pub ballot_id: String,
}

impl PollView {
    pub fn new(poll: &pb::Poll, results: Option<&pb::Results>, lang: Lang) -> Self {
        use podium_feedback::domain::poll::{MAX_TEXT_CHARS, MAX_WORDS_CHARS};
        let kind = match pb::PollKind::try_from(poll.kind).unwrap_or_default() {
            pb::PollKind::MultipleChoice => PollKind::Multiple,
            pb::PollKind::Rating => PollKind::Rating,
            pb::PollKind::WordCloud => PollKind::Words,
            pb::PollKind::OpenText => PollKind::Text,
            pb::PollKind::SingleChoice | pb::PollKind::Unspecified => PollKind::Single,
        };
        let label_lang = poll
            .question
            .as_ref()
            .and_then(|q| q.text.iter().find(|(_, v)| **v == poll.label))
            .map(|(tag, _)| tag.clone());
        Self {
            id: poll.id.clone(),
            session_id: poll.session_id.clone(),
            label: poll.label.clone(),
            lang: attribute(label_lang, lang),
            kind,
            options: poll
                .options
                .iter()
                .map(|o| OptionView {
                    id: o.id.clone(),
                    label: o.label.clone(),
                })
                .collect(),
            max_choices: poll.max_choices.max(1),
            scale_min: poll.scale_min,
            scale_max: poll.scale_max,
            scale: (poll.scale_min..=poll.scale_max).collect(),
            max_chars: if kind == PollKind::Words {
                MAX_WORDS_CHARS
            } else {
                MAX_TEXT_CHARS
            },
            open: poll.state == pb::PollState::Open as i32,
            locked: poll.lock_ballots,
            results: results.map(|r| ResultsView::new(r, poll)),
            ballot_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CountView {
    pub label: String,
    pub count: u64,
    pub percent: u64,
}

#[derive(Debug, Clone)]
pub struct RatingView {
    pub mean: String,
    pub buckets: Vec<CountView>,
}

/// Results with every number written out: bars are decoration, hidden from screen readers.
#[derive(Debug, Clone)]
pub struct ResultsView {
    pub ballots: u64,
    /// The bars' scale: at least 1, so an empty poll draws empty bars.
    pub ballots_for_bars: u64,
    pub options: Vec<CountView>,
    pub rating: Option<RatingView>,
    pub words: Vec<CountView>,
    pub texts: Vec<String>,
}

impl ResultsView {
    pub fn new(results: &pb::Results, poll: &pb::Poll) -> Self {
        let ballots = results.ballots;
        let percent = |count: u64| (count * 100).checked_div(ballots).unwrap_or(0);
        let count = |label: String, count: u64| CountView {
            label,
            count,
            percent: percent(count),
        };
        let rating = results
            .rating
            .as_ref()
            .filter(|r| r.count > 0)
            .map(|r| RatingView {
                mean: format!("{:.1}", r.mean),
                buckets: r
                    .distribution
                    .iter()
                    .enumerate()
                    .map(|(i, n)| count((poll.scale_min + i as i32).to_string(), *n))
                    .collect(),
            });
        Self {
            ballots,
            ballots_for_bars: ballots.max(1),
            options: results
                .options
                .iter()
                .map(|o| count(o.label.clone(), o.count))
                .collect(),
            rating,
            words: results
                .words
                .iter()
                .map(|w| count(w.word.clone(), w.count))
                .collect(),
            // Open-text answers whose poll does not let them be shown stay off every page, even
            // a staff member's projector: only the moderators' own tools read them.
            texts: if poll.publishable {
                results.texts.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// One question as its reader sees it.
#[derive(Debug, Clone)]
pub struct QuestionView {
    pub id: String,
    pub text: String,
    pub author: String,
    pub anonymous: bool,
    pub votes: u64,
    pub mine: bool,
    pub upvoted: bool,
    pub state: &'static str,
    pub reason: Option<String>,
    /// What a moderator may do with it now (the feedback service's rules): the console offers
    /// only these.
    pub moves: QuestionMoves,
}

/// The moderations a question's state allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuestionMoves {
    pub publish: bool,
    pub answer: bool,
    pub pin: bool,
    pub unpin: bool,
    pub dismiss: bool,
}

impl QuestionMoves {
    fn of(state: pb::QuestionState, pinned: bool) -> Self {
        use pb::QuestionState as S;
        Self {
            publish: matches!(state, S::Pending | S::Dismissed | S::Unspecified),
            answer: matches!(state, S::Pending | S::Published | S::Unspecified),
            pin: matches!(state, S::Published | S::Answered) && !pinned,
            unpin: pinned,
            dismiss: state != S::Dismissed,
        }
    }
}

impl QuestionView {
    pub fn new(question: &pb::Question, lang: Lang) -> Self {
        let t = lang.text();
        let kind = pb::QuestionState::try_from(question.state).unwrap_or_default();
        let state = match kind {
            pb::QuestionState::Published => t.state_published,
            pb::QuestionState::Answered => t.state_answered,
            pb::QuestionState::Dismissed => t.state_dismissed,
            pb::QuestionState::Pending | pb::QuestionState::Unspecified => t.state_pending,
        };
        Self {
            id: question.id.clone(),
            text: question.text.clone(),
            author: question.author_name.clone(),
            anonymous: question.anonymous,
            votes: question.votes,
            mine: question.mine,
            upvoted: question.upvoted,
            state,
            reason: Some(question.reason.clone()).filter(|r| !r.is_empty()),
            moves: QuestionMoves::of(kind, question.pinned),
        }
    }
}

/// The page's one live stream (see [`crate::live`]): the results of `polls`, and each of
/// `more` (`("questions", session)`, `("pinned", session)`); empty when there is nothing to
/// follow.
pub fn live_url(polls: &[PollView], more: &[(&str, &str)]) -> String {
    let query: Vec<String> = polls
        .iter()
        .map(|p| format!("poll={}", path_segment(&p.id)))
        .chain(
            more.iter()
                .map(|(name, id)| format!("{name}={}", path_segment(id))),
        )
        .collect();
    if query.is_empty() {
        return String::new();
    }
    format!("/live/results?{}", query.join("&"))
}

/// Everything but RFC 3986's unreserved characters is escaped in a path segment or query value.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id as one path segment or query value of a URL podium writes.
pub fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str) -> pb::ZonedTime {
        pb::ZonedTime {
            local: local.into(),
            time_zone: "Asia/Phnom_Penh".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_span_is_written_in_the_readers_language_and_crosses_midnight_with_its_day() {
        let (start, end) = (
            at("2024-11-14T09:00:00+07:00"),
            at("2024-11-14T09:45:00+07:00"),
        );
        assert_eq!(
            wall_span(Some(&start), Some(&end), Lang::En),
            ("Thu 14 Nov 09:00".to_owned(), "09:45".to_owned())
        );
        let (khmer, _) = wall_span(Some(&start), Some(&end), Lang::Km);
        assert_eq!(khmer, "ថ្ងៃ\u{200b}ព្រហស្បតិ៍ 14 វិច្ឆិកា 09:00");

        let late = at("2024-11-14T23:30:00+07:00");
        let after = at("2024-11-15T00:15:00+07:00");
        assert_eq!(
            wall_span(Some(&late), Some(&after), Lang::En),
            ("Thu 14 Nov 23:30".to_owned(), "Fri 15 Nov 00:15".to_owned())
        );
        assert_eq!(
            wall_span(None, None, Lang::En),
            (String::new(), String::new())
        );
    }

    #[test]
    fn a_question_offers_the_moderations_its_state_allows() {
        use pb::QuestionState as S;
        let moves = |state, pinned| {
            let m = QuestionMoves::of(state, pinned);
            (m.publish, m.answer, m.pin, m.unpin, m.dismiss)
        };
        assert_eq!(moves(S::Pending, false), (true, true, false, false, true));
        assert_eq!(moves(S::Published, false), (false, true, true, false, true));
        assert_eq!(moves(S::Published, true), (false, true, false, true, true));
        assert_eq!(moves(S::Answered, false), (false, false, true, false, true));
        assert_eq!(
            moves(S::Dismissed, false),
            (true, false, false, false, false)
        );
    }

    #[test]
    fn the_days_for_the_reader_s_own_zone_start_on_sunday_named_as_wall_times_name_them() {
        let en = day_names(Lang::En);
        assert_eq!(en, "Sun,Mon,Tue,Wed,Thu,Fri,Sat");
        let km: Vec<String> = day_names(Lang::Km).split(',').map(str::to_owned).collect();
        assert_eq!(km.len(), 7);
        // Thursday, as the span above names it in Khmer.
        let (start, _) = wall_span(Some(&at("2024-11-14T09:00:00+07:00")), None, Lang::Km);
        assert!(start.starts_with(&format!("{} ", km[4])), "{start} {km:?}");
        assert!(km.iter().all(|d| !d.is_empty() && !d.contains(',')));
    }
}
