//! podium's one policy for text that people type: titles, names, questions, poll answers,
//! comments, reasons, labels. Every service passes such text through [`clean`] (or
//! [`clean_localized`] for text in several languages) before it is stored, so one set of rules
//! decides what reaches the log, every screen and every integrator.
//!
//! The policy, in order:
//!
//! 1. Refused, naming the character and where it is: control characters (C0, DEL, C1; a
//!    multi-line field allows line feed and tab), line breaks in a one-line field, bidirectional
//!    embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069: the "Trojan Source"
//!    characters, which reorder text beyond their own neighbours), deprecated format characters
//!    (U+206A..U+206F, U+FFF9..U+FFFB, U+E0001), noncharacters, private-use characters (they mean
//!    nothing between two parties) and U+FFFD (text already damaged by a wrong decoding).
//!    The bidirectional *marks* LRM, RLM and ALM (U+200E, U+200F, U+061C) are kept: they only
//!    nudge the characters beside them and are how people write numbers and Latin words inside
//!    Arabic, Hebrew or Persian text.
//! 2. Normalised: CR LF, CR, U+2028 and U+2029 become LF; U+FEFF (a byte-order mark pasted
//!    mid-text) is dropped; the text is put in Unicode NFC; leading and trailing white space
//!    and invisible characters are trimmed (a variation selector or emoji tag at the end stays:
//!    it belongs to the character before it); a repeated invisible character ("ZWSP ZWSP ZWSP")
//!    becomes one; three or more line feeds in a row become two.
//! 3. Refused after normalising: more than [`MAX_MARK_RUN`] combining marks in a row ("Zalgo"
//!    text), more than [`MAX_INVISIBLE_RUN`] different invisible characters in a row, emoji
//!    tag characters outside a flag sequence (they can smuggle invisible ASCII), text that is
//!    empty when the field needs text, and text with no visible character at all (only
//!    spaces, zero-width characters, Hangul fillers, the blank Braille cell or lone marks).
//! 4. Lengths are counted after normalising, in characters (Unicode scalar values) and in UTF-8
//!    bytes; both limits hold.
//!
//! Zero-width joiners and non-joiners stay where they are (emoji sequences, Persian, Indic
//! scripts) and so does U+200B, which Khmer, Thai, Lao and Myanmar writers put between words.
//! Unassigned code points are allowed, so emoji newer than podium's Unicode data still pass.

#![forbid(unsafe_code)]

use std::{collections::BTreeMap, fmt};

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{
    CodePointMapData, CodePointMapDataBorrowed, CodePointSetData, CodePointSetDataBorrowed,
};

/// Most combining marks in a row. Real writing stays well below it: a Khmer syllable carries
/// at most a register shifter, a vowel and a sign; Vietnamese in NFC at most one mark; Tibetan
/// stacks and pointed Hebrew around five.
pub const MAX_MARK_RUN: usize = 8;
/// Most invisible characters in a row, once repeats are collapsed. An emoji ZWJ sequence has
/// two ("VS16 ZWJ").
pub const MAX_INVISIBLE_RUN: usize = 4;
/// Most tag characters after a black flag, the cancel tag included (subdivision flags such as
/// England's use six).
const MAX_TAG_RUN: usize = 8;
/// Most languages in one localised text.
pub const MAX_LANGUAGES: usize = 50;

const NFC: ComposingNormalizerBorrowed<'static> = ComposingNormalizerBorrowed::new_nfc();
const IGNORABLE: CodePointSetDataBorrowed<'static> =
    CodePointSetData::new::<DefaultIgnorableCodePoint>();
const CATEGORY: CodePointMapDataBorrowed<'static, GeneralCategory> =
    CodePointMapData::<GeneralCategory>::new();

const BLACK_FLAG: char = '\u{1F3F4}';
const CANCEL_TAG: char = '\u{E007F}';
const BRAILLE_BLANK: char = '\u{2800}';

/// Whether a field is one line or may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// What a field accepts: its length in characters and in bytes, one line or several, and
/// whether it may be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_chars: usize,
    pub max_bytes: usize,
    pub lines: Lines,
    pub required: bool,
}

impl Limit {
    /// A required one-line field of at most `max_chars` characters and three bytes a character,
    /// so that any text of the Basic Multilingual Plane (Khmer, Thai, Arabic, Chinese) that fits
    /// in characters fits in bytes too; text heavy in emoji (four bytes each) meets the byte
    /// limit first.
    pub const fn line(max_chars: usize) -> Self {
        Self {
            max_chars,
            max_bytes: max_chars * 3,
            lines: Lines::One,
            required: true,
        }
    }

    /// Like [`Limit::line`], for a field that may hold several lines.
    pub const fn lines(max_chars: usize) -> Self {
        Self {
            lines: Lines::Many,
            ..Self::line(max_chars)
        }
    }

    /// The same limit with another byte limit.
    pub const fn bytes(self, max_bytes: usize) -> Self {
        Self { max_bytes, ..self }
    }

    /// The same limit, for a field that may be left empty.
    pub const fn optional(self) -> Self {
        Self {
            required: false,
            ..self
        }
    }
}

/// A kind of character that no field accepts (or, for line breaks and tabs, no one-line field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Control,
    LineBreak,
    Tab,
    BidiEmbedding,
    BidiPop,
    BidiOverride,
    BidiIsolate,
    DeprecatedFormat,
    Noncharacter,
    PrivateUse,
    Replacement,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "a control character",
            Self::LineBreak => "a line break",
            Self::Tab => "a tab",
            Self::BidiEmbedding => "a bidirectional embedding",
            Self::BidiPop => "a bidirectional pop",
            Self::BidiOverride => "a bidirectional override",
            Self::BidiIsolate => "a bidirectional isolate",
            Self::DeprecatedFormat => "a deprecated format character",
            Self::Noncharacter => "a noncharacter",
            Self::PrivateUse => "a private-use character",
            Self::Replacement => "the replacement character",
        })
    }
}

/// What is wrong with a text. Positions count characters from 1: in the text as received for
/// a refused character, in the normalised text for runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Empty,
    NothingVisible,
    TooManyChars { chars: usize, max: usize },
    TooManyBytes { bytes: usize, max: usize },
    Forbidden { class: Class, ch: char, at: usize },
    MarkRun { len: usize, at: usize },
    InvisibleRun { len: usize, at: usize },
    LooseTag { ch: char, at: usize },
    NotALanguageTag(String),
    MissingLanguage(String),
    TooManyLanguages(usize),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "is empty"),
            Self::NothingVisible => write!(f, "has no visible characters"),
            Self::TooManyChars { chars, max } => write!(
                f,
                "is {} characters long; at most {} are allowed",
                thousands(*chars),
                thousands(*max)
            ),
            Self::TooManyBytes { bytes, max } => write!(
                f,
                "is {} bytes long in UTF-8; at most {} are allowed",
                thousands(*bytes),
                thousands(*max)
            ),
            Self::Forbidden { class, ch, at } => {
                write!(
                    f,
                    "contains {class} (U+{:04X}) at character {at}",
                    *ch as u32
                )?;
                match class {
                    Class::LineBreak | Class::Tab => write!(f, "; it must be one line"),
                    Class::Replacement => write!(f, "; the text was damaged by a wrong encoding"),
                    _ => Ok(()),
                }
            }
            Self::MarkRun { len, at } => write!(
                f,
                "has {len} combining marks in a row at character {at}; at most {MAX_MARK_RUN} are allowed"
            ),
            Self::InvisibleRun { len, at } => write!(
                f,
                "has {len} invisible characters in a row at character {at}; at most {MAX_INVISIBLE_RUN} are allowed"
            ),
            Self::LooseTag { ch, at } => write!(
                f,
                "contains a tag character (U+{:04X}) at character {at} outside an emoji flag",
                *ch as u32
            ),
            Self::NotALanguageTag(tag) => {
                write!(f, "{tag:?} is not a language tag like \"en\" or \"km\"")
            }
            Self::MissingLanguage(tag) => {
                write!(f, "needs a text in the default language {tag:?}")
            }
            Self::TooManyLanguages(n) => {
                write!(f, "has {n} languages; at most {MAX_LANGUAGES} are allowed")
            }
        }
    }
}

/// A refused text: the field, what part of it when there are several ("the km text", "option
/// 3"), and the problem. Displayed as `title: the km text contains a bidirectional override
/// (U+202E) at character 12`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}", self.message())]
pub struct TextError {
    pub field: &'static str,
    pub subject: Option<String>,
    pub problem: Problem,
}

impl TextError {
    /// Everything after the field name, for services whose errors keep the field apart.
    pub fn message(&self) -> String {
        match &self.subject {
            Some(subject) => format!("{subject} {}", self.problem),
            None => self.problem.to_string(),
        }
    }

    /// Names the part of the field the problem is in, in front of any part named before:
    /// `about("option 2")` on "the km text ..." gives "option 2: the km text ...".
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        let subject = subject.into();
        self.subject = Some(match self.subject.take() {
            Some(inner) => format!("{subject}: {inner}"),
            None => subject,
        });
        self
    }
}

/// Cleans one text for `field` under `limit`, or says what is wrong with it.
pub fn clean(field: &'static str, input: &str, limit: &Limit) -> Result<String, TextError> {
    clean_text(input, limit).map_err(|problem| TextError {
        field,
        subject: None,
        problem,
    })
}

/// Cleans a text in several languages: every key must be a language tag ([`is_language_tag`],
/// trimmed), every text passes [`clean`], and `default_language` must be among them.
pub fn clean_localized(
    field: &'static str,
    texts: impl IntoIterator<Item = (String, String)>,
    default_language: &str,
    limit: &Limit,
) -> Result<BTreeMap<String, String>, TextError> {
    let error = |subject: Option<String>, problem| TextError {
        field,
        subject,
        problem,
    };
    let mut clean = BTreeMap::new();
    for (tag, text) in texts {
        if clean.len() == MAX_LANGUAGES {
            return Err(error(None, Problem::TooManyLanguages(MAX_LANGUAGES + 1)));
        }
        let tag = tag.trim();
        if !is_language_tag(tag) {
            return Err(error(None, Problem::NotALanguageTag(tag.to_owned())));
        }
        let text = clean_text(&text, limit)
            .map_err(|problem| error(Some(format!("the {tag} text")), problem))?;
        clean.insert(tag.to_owned(), text);
    }
    if !clean.contains_key(default_language) {
        return Err(error(
            None,
            Problem::MissingLanguage(default_language.to_owned()),
        ));
    }
    Ok(clean)
}

/// A BCP 47 tag in its common short forms: "en", "km", "zh-Hant", "pt-BR".
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn clean_text(input: &str, limit: &Limit) -> Result<String, Problem> {
    // Refuse a huge text before spending work on it; normalising and trimming can shrink a text,
    // but not by this much unless it is mostly padding.
    let ceiling = limit.max_bytes.saturating_mul(4).saturating_add(64);
    if input.len() > ceiling {
        return Err(Problem::TooManyBytes {
            bytes: input.len(),
            max: limit.max_bytes,
        });
    }
    let mapped = map_characters(input, limit.lines)?;
    let normalised = NFC.normalize(&mapped);
    let text = tidy(&normalised);
    check_runs(&text)?;
    if !text.chars().any(is_visible) {
        return match (text.is_empty(), limit.required) {
            (true, false) => Ok(text),
            (true, true) => Err(Problem::Empty),
            (false, _) => Err(Problem::NothingVisible),
        };
    }
    let chars = text.chars().count();
    if chars > limit.max_chars {
        return Err(Problem::TooManyChars {
            chars,
            max: limit.max_chars,
        });
    }
    if text.len() > limit.max_bytes {
        return Err(Problem::TooManyBytes {
            bytes: text.len(),
            max: limit.max_bytes,
        });
    }
    Ok(text)
}

/// Refuses forbidden characters (positions in the text as received), unifies line breaks and
/// drops U+FEFF. Done before NFC so that a dropped character cannot leave text that NFC would
/// compose differently.
fn map_characters(input: &str, lines: Lines) -> Result<String, Problem> {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().enumerate().peekable();
    while let Some((i, ch)) = chars.next() {
        if let Some(class) = forbidden(ch, lines) {
            return Err(Problem::Forbidden {
                class,
                ch,
                at: i + 1,
            });
        }
        match ch {
            '\u{FEFF}' => {}
            '\r' => {
                if chars.peek().is_some_and(|&(_, next)| next == '\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' => out.push('\n'),
            ch => out.push(ch),
        }
    }
    Ok(out)
}

fn forbidden(ch: char, lines: Lines) -> Option<Class> {
    let class = match ch {
        '\n' | '\r' | '\u{2028}' | '\u{2029}' if lines == Lines::One => Class::LineBreak,
        '\t' if lines == Lines::One => Class::Tab,
        '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\t' => return None,
        ch if ch.is_control() => Class::Control,
        '\u{202A}' | '\u{202B}' => Class::BidiEmbedding,
        '\u{202C}' => Class::BidiPop,
        '\u{202D}' | '\u{202E}' => Class::BidiOverride,
        '\u{2066}'..='\u{2069}' => Class::BidiIsolate,
        '\u{206A}'..='\u{206F}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0001}' => Class::DeprecatedFormat,
        '\u{FFFD}' => Class::Replacement,
        '\u{FDD0}'..='\u{FDEF}' => Class::Noncharacter,
        ch if (ch as u32) & 0xFFFE == 0xFFFE => Class::Noncharacter,
        '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}' => {
            Class::PrivateUse
        }
        _ => return None,
    };
    Some(class)
}

fn is_ignorable(ch: char) -> bool {
    IGNORABLE.contains(ch)
}

fn is_mark(ch: char) -> bool {
    GeneralCategoryGroup::Mark.contains(CATEGORY.get(ch))
}

fn is_tag(ch: char) -> bool {
    ('\u{E0020}'..=CANCEL_TAG).contains(&ch)
}

fn is_variation_selector(ch: char) -> bool {
    matches!(ch, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{180B}'..='\u{180D}' | '\u{180F}')
}

/// Blank or invisible: trimmed from the start of a text, and never enough on its own.
fn is_blank(ch: char) -> bool {
    ch.is_whitespace() || ch == BRAILLE_BLANK || is_ignorable(ch)
}

fn is_visible(ch: char) -> bool {
    !is_blank(ch) && !is_mark(ch)
}

/// Trims, collapses repeated invisible characters and runs of blank lines. Removes only
/// characters of combining class 0 next to others of class 0, so NFC text stays NFC.
fn tidy(text: &str) -> String {
    let text = text.trim_start_matches(is_blank);
    // A variation selector or tag at the end belongs to the character before it ("❤️").
    let text =
        text.trim_end_matches(|ch: char| is_blank(ch) && !is_variation_selector(ch) && !is_tag(ch));
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    let mut newlines = 0;
    for ch in text.chars() {
        let repeated_invisible = previous == Some(ch) && is_ignorable(ch) && !is_tag(ch);
        newlines = if ch == '\n' { newlines + 1 } else { 0 };
        if repeated_invisible || newlines > 2 {
            continue;
        }
        out.push(ch);
        previous = Some(ch);
    }
    out
}

/// Runs of combining marks and of invisible characters, and tag characters outside a flag.
fn check_runs(text: &str) -> Result<(), Problem> {
    let (mut marks, mut marks_at) = (0, 0);
    let (mut invisible, mut invisible_at) = (0, 0);
    let mut tags = 0;
    let mut previous = None;
    for (i, ch) in text.chars().enumerate() {
        let at = i + 1;
        if is_mark(ch) {
            if marks == 0 {
                marks_at = at;
            }
            marks += 1;
            if marks > MAX_MARK_RUN {
                let len = text
                    .chars()
                    .skip(marks_at - 1)
                    .take_while(|&c| is_mark(c))
                    .count();
                return Err(Problem::MarkRun { len, at: marks_at });
            }
        } else {
            marks = 0;
        }
        if is_tag(ch) {
            let follows = match previous {
                Some(BLACK_FLAG) => true,
                Some(p) => is_tag(p) && p != CANCEL_TAG,
                None => false,
            };
            tags += 1;
            if !follows || tags > MAX_TAG_RUN {
                return Err(Problem::LooseTag { ch, at });
            }
        } else {
            if previous.is_some_and(|p| is_tag(p) && p != CANCEL_TAG) {
                return Err(Problem::LooseTag {
                    ch: previous.unwrap_or(CANCEL_TAG),
                    at: at - 1,
                });
            }
            tags = 0;
            if is_ignorable(ch) {
                if invisible == 0 {
                    invisible_at = at;
                }
                invisible += 1;
                if invisible > MAX_INVISIBLE_RUN {
                    let len = text
                        .chars()
                        .skip(invisible_at - 1)
                        .take_while(|&c| is_ignorable(c) && !is_tag(c))
                        .count();
                    return Err(Problem::InvisibleRun {
                        len,
                        at: invisible_at,
                    });
                }
            } else {
                invisible = 0;
            }
        }
        previous = Some(ch);
    }
    match previous {
        Some(p) if is_tag(p) && p != CANCEL_TAG => Err(Problem::LooseTag {
            ch: p,
            at: text.chars().count(),
        }),
        _ => Ok(()),
    }
}

/// 2345 -> "2,345".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests;
