//! Tests of word segmentation and clouds: Khmer, Latin and mixed answers, and the fold of a cloud.

use super::*;
use proptest::prelude::*;

fn words(text: &str) -> Vec<String> {
    WordCounter::new().words(text).into_vec()
}

fn cloud_of(answers: &[&str]) -> WordCloud {
    let counter = WordCounter::new();
    let mut cloud = WordCloud::new();
    for answer in answers {
        cloud.add(&counter.words(answer));
    }
    cloud
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(word, count)| ((*word).to_owned(), *count))
        .collect()
}

// Khmer answers to "Which data should be open?" at a Cambodian open-data conference. The
// expected words are the dictionary split a Khmer reader would make; examples where the
// segmenter splits wrongly are left out and listed at the end of this module.

#[test]
fn khmer_without_spaces_is_split_into_words() {
    // open data: "data" + "open"
    assert_eq!(words("ទិន្នន័យបើកចំហ"), ["ទិន្នន័យ", "បើកចំហ"]);
    // I like open data
    assert_eq!(words("ខ្ញុំចូលចិត្តទិន្នន័យបើកចំហ"), ["ខ្ញុំ", "ចូលចិត្ត", "ទិន្នន័យ", "បើកចំហ"]);
    // the government needs transparency
    assert_eq!(
        words("រដ្ឋាភិបាលត្រូវការតម្លាភាព"),
        ["រដ្ឋាភិបាល", "ត្រូវការ", "តម្លាភាព"]
    );
    // data about land and forests
    assert_eq!(
        words("ទិន្នន័យអំពីដីធ្លីនិងព្រៃឈើ"),
        ["ទិន្នន័យ", "អំពី", "ដីធ្លី", "និង", "ព្រៃឈើ"]
    );
    // open data helps citizens
    assert_eq!(words("ទិន្នន័យបើកចំហជួយពលរដ្ឋ"), ["ទិន្នន័យ", "បើកចំហ", "ជួយ", "ពលរដ្ឋ"]);
    // Kingdom of Cambodia
    assert_eq!(words("ព្រះរាជាណាចក្រកម្ពុជា"), ["ព្រះរាជាណាចក្រ", "កម្ពុជា"]);
    // each of those words, shown in the cloud and passed back by a moderator, is itself
    for word in words("ខ្ញុំចូលចិត្តទិន្នន័យបើកចំហ រដ្ឋាភិបាលត្រូវការតម្លាភាព ពលរដ្ឋ")
    {
        assert_eq!(words(&word), [word]);
    }
}

#[test]
fn khmer_compounds_with_kar_stay_whole() {
    // education and health, with and without spaces: "ការ" (the nominaliser) must not
    // become a word of its own.
    let expected = ["ការអប់រំ", "និង", "សុខាភិបាល"];
    assert_eq!(words("ការអប់រំ និង សុខាភិបាល"), expected);
    assert_eq!(words("ការអប់រំនិងសុខាភិបាល"), expected);
    // citizens' participation
    assert_eq!(words("ការចូលរួមរបស់ពលរដ្ឋ"), ["ការចូលរួម", "របស់", "ពលរដ្ឋ"]);
}

#[test]
fn zero_width_space_separates_khmer_words_without_leaving_traces() {
    let answer = "ការអប់រំ\u{200B}សុខាភិបាល\u{200B}បរិស្ថាន\u{200B}";
    assert_eq!(words(answer), ["ការអប់រំ", "សុខាភិបាល", "បរិស្ថាន"]);
    // ...and Latin words: a zero-width space glues nothing.
    assert_eq!(words("open\u{200B}data"), ["open", "data"]);
    assert!(words("\u{200B}\u{200B} \u{200B}").is_empty());
}

#[test]
fn other_invisible_characters_do_not_change_the_word() {
    // zero-width non-joiner inside a Khmer word, word joiner and soft hyphen inside Latin
    assert_eq!(words("ទិន្នន័\u{200C}យ"), ["ទិន្នន័យ"]);
    assert_eq!(words("trans\u{2060}parency"), ["transparency"]);
    assert_eq!(words("trans\u{00AD}parency"), ["transparency"]);
    assert_eq!(words("\u{FEFF}data"), ["data"]);
}

#[test]
fn khmer_punctuation_and_numbers_are_not_words() {
    // health, education. environment (with the Khmer full stop "។")
    assert_eq!(
        words("សុខាភិបាល, ការអប់រំ។ បរិស្ថាន"),
        ["សុខាភិបាល", "ការអប់រំ", "បរិស្ថាន"]
    );
    // "year 2025" in Khmer digits, and Latin digits
    assert_eq!(words("ឆ្នាំ២០២៥"), ["ឆ្នាំ"]);
    assert_eq!(words("1. health 2. roads 2030"), ["health", "roads"]);
    // letters with digits are words
    assert_eq!(words("5G web3"), ["5g", "web3"]);
    // a combining mark after a space is no word
    assert_eq!(words("a\u{200B}\u{64B}a"), ["a"]);
    // Hebrew letter and apostrophe (WB7a) is a word at the end of the text too
    assert_eq!(words("ש'"), ["ש'"]);
}

#[test]
fn nfkc_treats_khmer_like_nfc() {
    // the claim that justifies NFKC for Khmer answers: no Khmer character has a
    // compatibility decomposition
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    let nfkc = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc();
    let khmer: String = ('\u{1780}'..='\u{17FF}')
        .chain('\u{19E0}'..='\u{19FF}')
        .collect();
    assert_eq!(nfkc.normalize(&khmer), nfc.normalize(&khmer));
}

#[test]
fn mixed_khmer_and_english() {
    assert_eq!(words("Open Data ទិន្នន័យ"), ["open", "data", "ទិន្នន័យ"]);
}

#[test]
fn case_and_unicode_form_do_not_matter() {
    assert_eq!(words("Open DATA"), words("open data"));
    // "données" typed decomposed (e + U+0301) and precomposed
    assert_eq!(words("donne\u{301}es"), ["données"]);
    assert_eq!(words("DONNÉES"), ["données"]);
    // full-width Latin from a CJK input method, and a ligature
    assert_eq!(words("ＤＡＴＡ ﬁnance"), ["data", "finance"]);
    let cloud = cloud_of(&["Open DATA", "open data", "Données", "donne\u{301}es"]);
    assert_eq!(
        cloud.top(10),
        pairs(&[("data", 2), ("données", 2), ("open", 2)])
    );
}

#[test]
fn punctuation_emoji_and_apostrophes() {
    assert_eq!(words("Data!!! 😀 👍🏽 ✨ — data?"), ["data"]);
    assert_eq!(words("don't stop"), ["don't", "stop"]);
    assert!(words("").is_empty());
    assert!(words("😀👍🏽 ... 42").is_empty());
}

#[test]
fn each_word_counts_once_per_answer() {
    assert_eq!(words("ទិន្នន័យ ទិន្នន័យ ទិន្នន័យ"), ["ទិន្នន័យ"]);
    assert_eq!(words("data Data DATA"), ["data"]);
    let cloud = cloud_of(&["data data data data", "open data"]);
    assert_eq!(cloud.top(10), pairs(&[("data", 2), ("open", 1)]));
}

#[test]
fn khmer_cloud_counts_people_not_repetitions() {
    let cloud = cloud_of(&[
        "ទិន្នន័យបើកចំហ",
        "ទិន្នន័យសុខាភិបាល",
        "ការអប់រំ និង សុខាភិបាល",
        "Open Data ទិន្នន័យ",
    ]);
    assert_eq!(
        cloud.top(3),
        pairs(&[("ទិន្នន័យ", 3), ("សុខាភិបាល", 2), ("data", 1)])
    );
}

#[test]
fn replacing_a_ballot_moves_its_words() {
    let counter = WordCounter::new();
    let first = counter.words("open data");
    let second = counter.words("open government");
    let mut cloud = WordCloud::new();
    cloud.add(&first);
    cloud.add(&counter.words("data"));
    // the attendee votes again: the old answer goes, the new one comes
    assert!(cloud.remove(&first));
    cloud.add(&second);
    assert_eq!(
        cloud.top(10),
        pairs(&[("data", 1), ("government", 1), ("open", 1)])
    );
}

#[test]
fn removing_an_answer_never_added_changes_nothing() {
    let counter = WordCounter::new();
    let mut cloud = cloud_of(&["open data"]);
    let before = cloud.clone();
    // "budget" is not counted, so the whole removal is refused, "data" included
    assert!(!cloud.remove(&counter.words("data budget")));
    assert_eq!(cloud, before);
    assert!(cloud.remove(&counter.words("open data")));
    assert!(!cloud.remove(&counter.words("open data")));
    assert_eq!(cloud, WordCloud::new());
    // an answer without words removes trivially
    assert!(cloud.remove(&counter.words("!!!")));
}

#[test]
fn hidden_words_are_normalised_and_left_out_of_the_top() {
    let counter = WordCounter::new();
    let mut cloud = cloud_of(&["open data", "OPEN data", "budget", "ទិន្នន័យបើកចំហ"]);
    cloud.hide(&counter.words("ＤＡＴＡ"));
    cloud.hide(&counter.words("បើកចំហ"));
    assert!(cloud.is_hidden("data"));
    assert_eq!(cloud.hidden().collect::<Vec<_>>(), ["data", "បើកចំហ"]);
    assert_eq!(cloud.count("data"), 2, "hidden words keep being counted");
    assert_eq!(
        cloud.top(10),
        pairs(&[("open", 2), ("budget", 1), ("ទិន្នន័យ", 1)])
    );
    cloud.unhide(&counter.words("Data"));
    assert_eq!(cloud.top(2), pairs(&[("data", 2), ("open", 2)]));
}

#[test]
fn top_orders_by_count_then_word_and_truncates() {
    let cloud = cloud_of(&["b a", "c", "c a", "c"]);
    assert_eq!(cloud.top(10), pairs(&[("c", 3), ("a", 2), ("b", 1)]));
    assert_eq!(cloud.top(1), pairs(&[("c", 3)]));
    assert!(cloud.top(0).is_empty());
    assert!(WordCloud::new().top(5).is_empty());
}

/// Characters that stress normalisation and segmentation, mixed with arbitrary ones.
fn tricky_text() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        'a',
        'Z',
        'É',
        'ß',
        'İ',
        'Σ',
        'ς',
        'ﬁ',
        'Ａ',
        'ᴬ',
        'Ω',
        '\u{2126}',
        '\u{301}',
        '\u{34F}',
        '\u{300}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{2060}',
        '\u{FEFF}',
        '\u{AD}',
        '\u{200E}',
        '\u{202E}',
        '\u{FE0F}',
        '\u{E0041}',
        'ក',
        'ទ',
        '\u{17D2}',
        '\u{17B7}',
        '\u{17B4}',
        '។',
        '៥',
        'ש',
        'ع',
        '\u{64B}',
        '5',
        ' ',
        '\n',
        '\t',
        '\0',
        '\u{7}',
        '\'',
        '.',
        '-',
        '😀',
        '🏽',
        '\u{1F1E6}',
        '漢',
        'か',
        'ก',
        '\u{FFFD}',
        '\u{FFA0}',
        '\u{3164}',
        '\u{E000}',
        '\u{10FFFF}',
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(tricky, 0..48).prop_map(|chars| chars.into_iter().collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn words_are_non_empty_normalised_and_distinct(text in tricky_text()) {
        let counter = WordCounter::new();
        let words = counter.words(&text).into_vec();
        let distinct: HashSet<&String> = words.iter().collect();
        prop_assert_eq!(distinct.len(), words.len());
        for word in &words {
            prop_assert!(!word.is_empty());
            prop_assert!(!word.chars().any(char::is_whitespace), "{:?}", word);
            prop_assert!(
                !word.chars().any(|c| counter.ignorable.contains(c)),
                "{:?}",
                word
            );
            prop_assert_eq!(&counter.fold(word), word);
        }
    }

    #[test]
    fn a_word_from_the_cloud_splits_into_itself(text in tricky_text()) {
        // what lets a moderator hide a word by passing it back as shown
        let counter = WordCounter::new();
        for word in counter.words(&text).into_vec() {
            prop_assert_eq!(counter.words(&word).into_vec(), vec![word.clone()]);
        }
    }

    #[test]
    fn adding_then_removing_answers_leaves_an_empty_cloud(
        answers in prop::collection::vec(tricky_text(), 0..8),
    ) {
        let counter = WordCounter::new();
        let answers: Vec<Words> = answers.iter().map(|a| counter.words(a)).collect();
        let mut cloud = WordCloud::new();
        for answer in &answers {
            cloud.add(answer);
        }
        for answer in answers.iter().rev() {
            prop_assert!(cloud.remove(answer));
        }
        prop_assert_eq!(cloud, WordCloud::new());
    }
}

// Where the dictionary splits Khmer wrongly (ICU4X 2.4 compiled data), so no test asserts it:
// - "គណនេយ្យភាព" (accountability) -> "គណនេយ្យ" + "ភាព"; "ឯកជនភាព" (privacy) -> "ឯកជន" + "ភាព":
//   the abstract-noun suffix "ភាព" (-ness) is cut off, while "តម្លាភាព" and "សុវត្ថិភាព" stay
//   whole.
// - "ភាពជាម្ចាស់" (ownership) -> "ភាពជា" + "ម្ចាស់".
// - "ថវិកាជាតិ" (national budget) stays one word, where "ថវិកា" + "ជាតិ" would be expected.
