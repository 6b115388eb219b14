//! The one language fallback for text kept in several languages (`podium.v1.LocalizedText`,
//! and the maps the read models hold): the reader's language, else the conference's default
//! language, else the text of the smallest language tag, so the choice never depends on a
//! hash map's order.

use std::collections::{BTreeMap, HashMap};

/// Text kept per language tag.
pub trait Translations {
    /// The text in exactly `language`, if there is one.
    fn in_language(&self, language: &str) -> Option<&str>;

    /// The text of the smallest language tag, if there is any text.
    fn first(&self) -> Option<&str>;

    /// The text for a reader of `language` (none: the reader asked for no language), falling
    /// back to `default_language`, then to any text; empty if there is none.
    fn pick(&self, language: Option<&str>, default_language: &str) -> &str {
        language
            .and_then(|l| self.in_language(l))
            .or_else(|| self.in_language(default_language))
            .or_else(|| self.first())
            .unwrap_or("")
    }
}

impl Translations for BTreeMap<String, String> {
    fn in_language(&self, language: &str) -> Option<&str> {
        self.get(language).map(String::as_str)
    }

    fn first(&self) -> Option<&str> {
        self.values().next().map(String::as_str)
    }
}

impl Translations for HashMap<String, String> {
    fn in_language(&self, language: &str) -> Option<&str> {
        self.get(language).map(String::as_str)
    }

    fn first(&self) -> Option<&str> {
        self.iter().min_by_key(|(k, _)| *k).map(|(_, v)| v.as_str())
    }
}

impl Translations for crate::v1::LocalizedText {
    fn in_language(&self, language: &str) -> Option<&str> {
        self.text.in_language(language)
    }

    fn first(&self) -> Option<&str> {
        self.text.first()
    }
}

impl<T: Translations> Translations for Option<T> {
    fn in_language(&self, language: &str) -> Option<&str> {
        self.as_ref().and_then(|t| t.in_language(language))
    }

    fn first(&self) -> Option<&str> {
        self.as_ref().and_then(Translations::first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> HashMap<String, String> {
        [("km", "សួស្តី"), ("fr", "bonjour"), ("en", "hello")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn the_readers_language_then_the_default_then_the_smallest_tag() {
        let t = texts();
        assert_eq!(t.pick(Some("km"), "en"), "សួស្តី");
        assert_eq!(t.pick(Some("de"), "fr"), "bonjour");
        assert_eq!(t.pick(None, "fr"), "bonjour");
        assert_eq!(t.pick(Some("de"), "it"), "hello");
        let sorted: BTreeMap<_, _> = t.into_iter().collect();
        assert_eq!(sorted.pick(Some("de"), "it"), "hello");
        assert_eq!(BTreeMap::new().pick(Some("en"), "en"), "");
        assert_eq!(None::<crate::v1::LocalizedText>.pick(Some("en"), "en"), "");
    }
}
