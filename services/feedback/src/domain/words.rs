//! Word clouds: splitting free-text answers into words and counting them.
//!
//! Attendees answer a word-cloud poll with a few words in any language. [`WordCounter`] turns one
//! answer into its distinct, normalised words, using ICU4X's word segmenter so that scripts
//! written without spaces between words (Khmer, Thai, Lao, Myanmar, Chinese, Japanese) are split
//! too. [`WordCloud`] counts those words over the current ballots, lets a moderator hide words,
//! and answers "the top N". Everything here is pure: no I/O, no clock, no gRPC types; the data
//! the segmenter and normaliser need is compiled into the binary, so nothing is loaded at run
//! time.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{
    CodePointMapData, CodePointMapDataBorrowed, CodePointSetData, CodePointSetDataBorrowed,
};
use icu_segmenter::WordSegmenter;
use icu_segmenter::WordSegmenterBorrowed;
use icu_segmenter::options::WordBreakInvariantOptions;

/// U+200B, which Khmer (and Thai, Lao, Myanmar) writers type between words to allow line
/// breaks: it is a word separator, not part of a word.
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// Splits answers into the words a word cloud counts.
///
/// Construct it once and share it: construction is cheap (the data is compiled in, so it only
/// builds a few references to static tables), but there is no reason to repeat it per answer.
///
/// The splitting takes no language: a cloud merges answers from clients whose interface
/// languages differ, and a moderator's hidden word has no language at all, so anything
/// language-dependent (Turkish dotless i, say) would file the same typed word under different
/// keys. Scripts are recognised per run of text instead, which also handles mixed answers such
/// as "Open Data ទិន្នន័យ".
#[derive(Debug)]
pub struct WordCounter {
    segmenter: WordSegmenterBorrowed<'static>,
    nfkc: ComposingNormalizerBorrowed<'static>,
    ignorable: CodePointSetDataBorrowed<'static>,
    category: CodePointMapDataBorrowed<'static, GeneralCategory>,
}

impl Default for WordCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl WordCounter {
    /// Builds a word counter from the compiled-in ICU4X data.
    pub fn new() -> Self {
        Self {
            // The dictionary model, not `new_auto`'s LSTM: on Khmer the LSTM splits common
            // compounds an audience would type ("ការអប់រំ" education -> "ការ" + "អប់រំ",
            // "បច្ចេកវិទ្យា" technology, "ពលរដ្ឋ" citizen, "ត្រូវការ" need), which would make the
            // nominaliser "ការ" the biggest word of every Khmer cloud. The dictionary keeps them
            // whole, as ICU4C's Khmer dictionary does.
            segmenter: WordSegmenter::new_dictionary(WordBreakInvariantOptions::default()),
            // NFKC rather than NFC: compatibility variants are the same word to a reader, and
            // they do get typed: full-width Latin from CJK input methods ("ＤＡＴＡ"), ligatures
            // pasted from PDFs ("ﬁnance"), no-break spaces. Khmer has no compatibility
            // decompositions, so NFKC leaves it exactly as NFC would. This is the normalisation
            // Unicode recommends for caseless matching of identifiers (NFKC_Casefold, UAX #31).
            nfkc: ComposingNormalizerBorrowed::new_nfkc(),
            ignorable: CodePointSetData::new::<DefaultIgnorableCodePoint>(),
            category: CodePointMapData::<GeneralCategory>::new(),
        }
    }

    /// The distinct words of one answer, normalised, in order of first appearance.
    ///
    /// Normalisation is NFKC, then locale-independent lowercasing, with default-ignorable code
    /// points (zero-width joiners and non-joiners, word joiner, soft hyphen, bidi marks,
    /// variation selectors) removed, as NFKC_Casefold does: they change how a word is drawn or
    /// broken across lines, not which word it is, and people type them inconsistently. U+200B
    /// ZERO WIDTH SPACE instead separates words.
    ///
    /// Kept: segments with letters, including ones mixing letters and digits ("5g", "web3").
    /// Dropped: punctuation, spaces, symbols and emoji, and numbers on their own ("2030",
    /// "២០២៥"), because free-text answers are full of list numbering ("1. health 2. roads")
    /// that would otherwise crowd the cloud.
    ///
    /// Each word appears once however often the answer repeats it: a cloud counts how many
    /// people said a word, so one attendee cannot stuff it by typing a word ten times.
    pub fn words(&self, text: &str) -> Words {
        let prepared = self.prepare(text);
        let mut seen = HashSet::new();
        let mut words = Vec::new();
        let mut start = 0;
        for end in self.segmenter.segment_str(&prepared) {
            // Boundaries fall on char boundaries; `get` keeps a surprise from becoming a panic.
            let segment = prepared.get(start..end).unwrap_or_default();
            start = end;
            // A word is a segment with a letter in it. The segmenter's own word type is not
            // used: it calls "web3" a number (the status of the last rule matched), calls "ש'"
            // no word at the end of a text but a word before a space, and a space carrying a
            // stray combining mark (" \u{64B}") a word.
            let segment = segment.trim_matches(char::is_whitespace);
            if !segment.chars().any(|c| self.is_letter(c)) {
                continue;
            }
            let word = self.fold(segment);
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        Words(words)
    }

    /// Normalises the whole answer before segmentation, so that the segmenter sees the text the
    /// words will be made of: a zero-width non-joiner inside a Khmer word would otherwise stop
    /// the dictionary from recognising it.
    fn prepare(&self, text: &str) -> String {
        self.nfkc
            .normalize(text)
            .chars()
            .filter_map(|c| match c {
                ZERO_WIDTH_SPACE => Some(' '),
                c if self.ignorable.contains(c) => None,
                c => Some(c),
            })
            .collect()
    }

    fn is_letter(&self, c: char) -> bool {
        GeneralCategoryGroup::Letter.contains(self.category.get(c))
    }

    /// Lowercases a segment and normalises it again: removing an ignorable character or
    /// lowercasing can leave a sequence that NFKC would compose differently.
    fn fold(&self, segment: &str) -> String {
        let lower: String = segment
            .to_lowercase()
            .chars()
            .filter(|&c| !self.ignorable.contains(c))
            .collect();
        self.nfkc.normalize(&lower).into_owned()
    }
}

/// The distinct normalised words of one answer, as [`WordCounter::words`] made them.
///
/// Only a [`WordCounter`] builds one, so a [`WordCloud`] can rely on each word being
/// normalised and appearing once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words(Vec<String>);

impl Words {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an answer with no words (only punctuation, emoji or numbers); the caller decides
    /// whether such an answer is a valid ballot.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// Word counts over the current answers of one word-cloud poll, and the words a moderator hid.
///
/// A count is the number of answers containing the word. Hidden words keep being counted, so
/// that unhiding one shows its true count; they are only left out of [`WordCloud::top`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WordCloud {
    // Ordered, so that clouds built from the same answers also print and iterate alike: a
    // cloud replayed from the log is diffed against the live one.
    counts: BTreeMap<String, u64>,
    hidden: BTreeSet<String>,
}

impl WordCloud {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one answer.
    pub fn add(&mut self, answer: &Words) {
        for word in answer.as_slice() {
            let count = self.counts.entry(word.clone()).or_insert(0);
            *count = count.saturating_add(1);
        }
    }

    /// Uncounts an answer added earlier: the ballot that a new ballot of the same attendee
    /// replaces.
    ///
    /// Counts never go negative: if any word of `answer` is not counted, the answer was never
    /// added, nothing changes and this returns false. The cloud cannot tell an answer that was
    /// never added from one whose words all happen to be counted by other answers, so the caller
    /// must pass only answers it added.
    #[must_use = "false means the answer was never added, which is a bug in the caller"]
    pub fn remove(&mut self, answer: &Words) -> bool {
        if !answer.as_slice().iter().all(|word| self.count(word) > 0) {
            return false;
        }
        for word in answer.as_slice() {
            if let Some(count) = self.counts.get_mut(word) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.counts.remove(word);
                }
            }
        }
        true
    }

    /// Hides every word of `words` from [`WordCloud::top`].
    ///
    /// Takes [`Words`] so that a moderator's word is normalised exactly like answers are: hiding
    /// "ＤＡＴＡ" hides "data". A word taken from the cloud splits into itself; a caller that
    /// wants to hide one word at a time rejects text that splits into more than one.
    pub fn hide(&mut self, words: &Words) {
        self.hidden.extend(words.as_slice().iter().cloned());
    }

    /// Shows words hidden earlier again; words that were not hidden are ignored.
    pub fn unhide(&mut self, words: &Words) {
        for word in words.as_slice() {
            self.hidden.remove(word);
        }
    }

    /// The hidden words, sorted, for a moderator's view.
    pub fn hidden(&self) -> impl Iterator<Item = &str> {
        self.hidden.iter().map(String::as_str)
    }

    /// Whether a moderator hid this normalised word.
    pub fn is_hidden(&self, word: &str) -> bool {
        self.hidden.contains(word)
    }

    /// How many current answers contain this normalised word, hidden or not.
    pub fn count(&self, word: &str) -> u64 {
        self.counts.get(word).copied().unwrap_or(0)
    }

    /// The `n` most frequent words that are not hidden, by count descending and then by word, so
    /// that ties come out in the same order for every watcher.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut visible: Vec<(&String, u64)> = self
            .counts
            .iter()
            .filter(|(word, _)| !self.hidden.contains(*word))
            .map(|(word, count)| (word, *count))
            .collect();
        visible.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        visible.truncate(n);
        visible
            .into_iter()
            .map(|(word, count)| (word.clone(), count))
            .collect()
    }
}

#[cfg(test)]
mod tests;
