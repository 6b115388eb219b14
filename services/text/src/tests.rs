//! The policy on real text in many scripts, on each kind of hostile text, at the length
//! boundaries, and as properties over generated text.

use proptest::prelude::*;

use super::*;

const LINE: Limit = Limit::line(200);
const LINES: Limit = Limit::lines(1000);

fn problem(input: &str, limit: &Limit) -> Problem {
    match clean("title", input, limit) {
        Ok(text) => panic!("{input:?} passed as {text:?}"),
        Err(e) => e.problem,
    }
}

fn message(input: &str, limit: &Limit) -> String {
    clean("title", input, limit).unwrap_err().to_string()
}

#[test]
fn real_text_in_many_scripts_passes_unchanged() {
    let texts = [
        // Khmer: coeng stacks, vowel signs, Khmer digits.
        "សន្និសីទទិន្នន័យបើកចំហ ២០២៤",
        "ព្រះរាជាណាចក្រកម្ពុជា",
        "ស្ត្រី និង បច្ចេកវិទ្យា",
        // Khmer with U+200B between words, as Khmer writers type it.
        "ទិន្នន័យ\u{200B}បើកចំហ\u{200B}សម្រាប់\u{200B}ពលរដ្ឋ",
        "ការប្រជុំ\u{200B}ពិភាក្សា\u{200B}អំពី\u{200B}ទិន្នន័យ",
        // Thai, Lao, Myanmar.
        "การประชุมข้อมูลเปิด น้ำ",
        "ຂໍ້ມູນເປີດ",
        "မြန်မာနိုင်ငံ ကျွန်ုပ်",
        // Arabic with vowel marks, Hebrew with an RLM before digits, Persian with ZWNJ.
        "مؤتمر البيانات المفتوحة ٢٠٢٤",
        "مُحَمَّدٌ",
        "שלום\u{200F} 2024",
        "می\u{200C}خواهم",
        // Vietnamese (NFC), Devanagari with virama and ZWJ, Tibetan stacks.
        "Hội nghị Dữ liệu Mở Việt Nam",
        "क्षत्रिय क्\u{200D}ष नमस्ते",
        "བོད་སྐད་ བསྒྲུབས",
        // Chinese, Japanese, Korean, Greek, Cyrillic.
        "開放資料 オープンデータ 열린 데이터 Ανοιχτά δεδομένα Открытые данные",
        // Emoji: skin tone, ZWJ family, keycap, regional flag, subdivision flag (tags),
        // a trailing VS16 and a profession sequence.
        "👍🏽 👨\u{200D}👩\u{200D}👧\u{200D}👦 1\u{FE0F}\u{20E3} 🇰🇭 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} 🧑🏾\u{200D}💻 ❤\u{FE0F}",
        "Open data ❤\u{FE0F}",
    ];
    for text in texts {
        assert_eq!(clean("title", text, &LINE).as_deref(), Ok(text), "{text:?}");
    }
}

#[test]
fn normalises_to_nfc_and_trims() {
    // Vietnamese typed decomposed.
    let nfd = "Vie\u{0323}\u{0302}t Nam";
    assert_eq!(clean("title", nfd, &LINE).unwrap(), "Việt Nam");
    assert_eq!(
        clean("title", "  \u{200B}Dara\u{00A0} ", &LINE).unwrap(),
        "Dara"
    );
    assert_eq!(clean("title", "\u{FEFF}Title", &LINE).unwrap(), "Title");
    assert_eq!(clean("title", "Ti\u{FEFF}tle", &LINE).unwrap(), "Title");
    // Dropping the U+FEFF happens before NFC, so what it separated composes.
    assert_eq!(clean("title", "e\u{FEFF}\u{0301}", &LINE).unwrap(), "é");
    assert_eq!(clean("title", "⠀⠀Title⠀", &LINE).unwrap(), "Title");
}

#[test]
fn collapses_repeated_invisibles_and_blank_lines() {
    assert_eq!(
        clean("title", "ទិន្នន័យ\u{200B}\u{200B}\u{200B}បើក", &LINE).unwrap(),
        "ទិន្នន័យ\u{200B}បើក"
    );
    assert_eq!(
        clean(
            "text",
            "one\r\ntwo\rthree\u{2028}four\n\n\n\n\nfive",
            &LINES
        )
        .unwrap(),
        "one\ntwo\nthree\nfour\n\nfive"
    );
    assert_eq!(
        clean("text", "tab\tseparated", &LINES).unwrap(),
        "tab\tseparated"
    );
}

#[test]
fn refuses_control_characters() {
    for (input, ch, at) in [
        ("a\u{0}b", '\u{0}', 2),
        ("bell\u{7}", '\u{7}', 5),
        ("esc\u{1B}[31m", '\u{1B}', 4),
        ("del\u{7F}", '\u{7F}', 4),
        ("c1\u{85}", '\u{85}', 3),
        ("c1\u{9B}", '\u{9B}', 3),
    ] {
        assert_eq!(
            problem(input, &LINES),
            Problem::Forbidden {
                class: Class::Control,
                ch,
                at
            },
            "{input:?}"
        );
    }
    assert_eq!(
        message("Open\u{7}Data", &LINE),
        "title: contains a control character (U+0007) at character 5"
    );
}

#[test]
fn refuses_line_breaks_and_tabs_in_one_line_fields() {
    assert_eq!(
        message("two\nlines", &LINE),
        "title: contains a line break (U+000A) at character 4; it must be one line"
    );
    for input in ["a\rb", "a\u{2028}b", "a\u{2029}b"] {
        assert!(matches!(
            problem(input, &LINE),
            Problem::Forbidden {
                class: Class::LineBreak,
                at: 2,
                ..
            }
        ));
    }
    assert!(matches!(
        problem("a\tb", &LINE),
        Problem::Forbidden {
            class: Class::Tab,
            ..
        }
    ));
}

#[test]
fn refuses_bidirectional_formatting_but_keeps_marks() {
    assert_eq!(
        message("Open Data 2024 \u{202E}gnp.exe", &LINE),
        "title: contains a bidirectional override (U+202E) at character 16"
    );
    for (ch, class) in [
        ('\u{202A}', Class::BidiEmbedding),
        ('\u{202B}', Class::BidiEmbedding),
        ('\u{202C}', Class::BidiPop),
        ('\u{202D}', Class::BidiOverride),
        ('\u{202E}', Class::BidiOverride),
        ('\u{2066}', Class::BidiIsolate),
        ('\u{2067}', Class::BidiIsolate),
        ('\u{2068}', Class::BidiIsolate),
        ('\u{2069}', Class::BidiIsolate),
    ] {
        let input = format!("ab{ch}cd");
        assert_eq!(
            problem(&input, &LINE),
            Problem::Forbidden { class, ch, at: 3 }
        );
    }
    for mark in ['\u{200E}', '\u{200F}', '\u{061C}'] {
        let input = format!("العدد{mark} 42");
        assert_eq!(clean("title", &input, &LINE).unwrap(), input);
    }
}

#[test]
fn refuses_noncharacters_private_use_deprecated_format_and_replacement() {
    for (ch, class) in [
        ('\u{FFFF}', Class::Noncharacter),
        ('\u{FFFE}', Class::Noncharacter),
        ('\u{FDD0}', Class::Noncharacter),
        ('\u{1FFFE}', Class::Noncharacter),
        ('\u{10FFFF}', Class::Noncharacter),
        ('\u{E000}', Class::PrivateUse),
        ('\u{F8FF}', Class::PrivateUse),
        ('\u{F0000}', Class::PrivateUse),
        ('\u{206A}', Class::DeprecatedFormat),
        ('\u{FFF9}', Class::DeprecatedFormat),
        ('\u{E0001}', Class::DeprecatedFormat),
        ('\u{FFFD}', Class::Replacement),
    ] {
        let input = format!("x{ch}");
        assert_eq!(
            problem(&input, &LINE),
            Problem::Forbidden { class, ch, at: 2 },
            "U+{:04X}",
            ch as u32
        );
    }
    assert_eq!(
        message("caf\u{FFFD}", &LINE),
        "title: contains the replacement character (U+FFFD) at character 4; the text was damaged by a wrong encoding"
    );
}

#[test]
fn refuses_text_with_nothing_visible() {
    for input in [
        "",
        "   ",
        "\u{200B}\u{200B}",
        "\u{3164}",
        "\u{2800}\u{2800}",
        "\u{FEFF}",
    ] {
        assert_eq!(problem(input, &LINE), Problem::Empty, "{input:?}");
        assert_eq!(clean("reason", input, &LINE.optional()).unwrap(), "");
    }
    assert_eq!(problem("\u{0301}\u{0301}", &LINE), Problem::NothingVisible);
    assert_eq!(
        problem("\u{0301}", &LINE.optional()),
        Problem::NothingVisible
    );
    assert_eq!(message(" ", &LINE), "title: is empty");
}

#[test]
fn refuses_long_runs_of_combining_marks() {
    let zalgo = format!("Z{}algo", "\u{0336}\u{0337}\u{0338}\u{0321}".repeat(5));
    assert_eq!(problem(&zalgo, &LINE), Problem::MarkRun { len: 20, at: 2 });
    assert_eq!(
        message(&zalgo, &LINE),
        "title: has 20 combining marks in a row at character 2; at most 8 are allowed"
    );
    let eight = format!("x{}", "\u{0301}\u{0302}\u{0303}\u{0304}".repeat(2));
    assert!(clean("title", &eight, &LINE).is_ok());
    let nine = format!("{eight}\u{0305}");
    assert!(matches!(
        problem(&nine, &LINE),
        Problem::MarkRun { len: 9, .. }
    ));
    // Enclosing marks count too.
    let circles = format!("a{}", "\u{20DD}".repeat(9));
    assert!(matches!(problem(&circles, &LINE), Problem::MarkRun { .. }));
}

#[test]
fn refuses_long_runs_of_different_invisibles() {
    let input = "a\u{200B}\u{200C}\u{200D}\u{2060}\u{200B}b";
    assert_eq!(
        problem(input, &LINE),
        Problem::InvisibleRun { len: 5, at: 2 }
    );
    assert!(clean("title", "a\u{200B}\u{200C}\u{200D}\u{2060}b", &LINE).is_ok());
}

#[test]
fn refuses_tag_characters_outside_a_flag() {
    // Invisible ASCII smuggled in tag characters ("hi").
    let smuggled = "hello\u{E0068}\u{E0069}";
    assert_eq!(
        problem(smuggled, &LINE),
        Problem::LooseTag {
            ch: '\u{E0068}',
            at: 6
        }
    );
    // A flag sequence without its cancel tag.
    assert!(matches!(
        problem("🏴\u{E0067}\u{E0062} ok", &LINE),
        Problem::LooseTag { at: 3, .. }
    ));
    assert!(matches!(
        problem("🏴\u{E0067}\u{E0062}", &LINE),
        Problem::LooseTag { .. }
    ));
    // Tags after the cancel tag start no new flag.
    assert!(matches!(
        problem("🏴\u{E0067}\u{E007F}\u{E0067}\u{E007F}", &LINE),
        Problem::LooseTag { at: 4, .. }
    ));
    let long = format!("🏴{}\u{E007F}", "\u{E0061}".repeat(MAX_TAG_RUN));
    assert!(matches!(problem(&long, &LINE), Problem::LooseTag { .. }));
}

#[test]
fn limits_count_characters_and_bytes_at_the_boundary() {
    let limit = Limit::line(10);
    assert_eq!(limit.max_bytes, 30);
    // Ten Khmer characters are 30 bytes: both limits are met exactly.
    let khmer = "ក".repeat(10);
    assert_eq!(clean("name", &khmer, &limit).unwrap(), khmer);
    assert_eq!(
        clean("name", &"ក".repeat(11), &limit)
            .unwrap_err()
            .to_string(),
        "name: is 11 characters long; at most 10 are allowed"
    );
    // Seven emoji are 28 bytes; eight are 32, under the character limit but over the bytes.
    assert!(clean("name", &"😀".repeat(7), &limit).is_ok());
    assert_eq!(
        clean("name", &"😀".repeat(8), &limit)
            .unwrap_err()
            .to_string(),
        "name: is 32 bytes long in UTF-8; at most 30 are allowed"
    );
    // Lengths are counted after normalising: decomposed Vietnamese counts as composed.
    let nfd = "e\u{0323}\u{0302}".repeat(10);
    assert_eq!(clean("name", &nfd, &limit).unwrap(), "ệ".repeat(10));
    // ... and after trimming and collapsing.
    let padded = format!("   {}\u{200B}\u{200B}   ", "a".repeat(10));
    assert_eq!(clean("name", &padded, &limit).unwrap(), "a".repeat(10));
    let question = Limit::line(2000).bytes(2000);
    assert_eq!(
        clean("question", &"ñ".repeat(1200), &question)
            .unwrap_err()
            .to_string(),
        "question: is 2,400 bytes long in UTF-8; at most 2,000 are allowed"
    );
}

#[test]
fn refuses_a_huge_text_before_working_on_it() {
    let huge = "a".repeat(4 << 20);
    assert_eq!(
        problem(&huge, &LINE),
        Problem::TooManyBytes {
            bytes: 4 << 20,
            max: 600
        }
    );
}

#[test]
fn localised_texts_check_tags_texts_and_the_default_language() {
    let texts = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let clean_map = clean_localized(
        "title",
        texts(&[("en", " Open Data Conference "), (" km", "សន្និសីទទិន្នន័យបើកចំហ")]),
        "en",
        &LINE,
    )
    .unwrap();
    assert_eq!(clean_map["en"], "Open Data Conference");
    assert_eq!(clean_map["km"], "សន្និសីទទិន្នន័យបើកចំហ");
    let e = clean_localized(
        "title",
        texts(&[("en", "ok"), ("km", "ក\u{202E}ខ")]),
        "en",
        &LINE,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "title: the km text contains a bidirectional override (U+202E) at character 2"
    );
    assert_eq!(e.field, "title");
    assert_eq!(
        e.message(),
        "the km text contains a bidirectional override (U+202E) at character 2"
    );
    assert_eq!(
        clean_localized("title", texts(&[("e\u{202E}n", "x")]), "en", &LINE)
            .unwrap_err()
            .to_string(),
        "title: \"e\\u{202e}n\" is not a language tag like \"en\" or \"km\""
    );
    assert_eq!(
        clean_localized("title", texts(&[("km", "ក")]), "en", &LINE)
            .unwrap_err()
            .to_string(),
        "title: needs a text in the default language \"en\""
    );
    let many: Vec<_> = (0..=MAX_LANGUAGES)
        .map(|i| {
            let tag = [b'a' + (i / 26) as u8, b'a' + (i % 26) as u8];
            (String::from_utf8_lossy(&tag).into_owned(), "t".to_owned())
        })
        .collect();
    assert!(matches!(
        clean_localized("title", many, "aa", &LINE)
            .unwrap_err()
            .problem,
        Problem::TooManyLanguages(_)
    ));
    assert_eq!(
        e.about("option 2").message(),
        "option 2: the km text contains a bidirectional override (U+202E) at character 2"
    );
}

#[test]
fn language_tags() {
    for tag in ["en", "km", "zh-Hant", "pt-BR", "yue"] {
        assert!(is_language_tag(tag), "{tag}");
    }
    for tag in ["", "e", "EN", "english", "en_US", "en-", "k\u{202E}m"] {
        assert!(!is_language_tag(tag), "{tag:?}");
    }
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(2345), "2,345");
    assert_eq!(thousands(1234567), "1,234,567");
}

/// Text drawn mostly from the characters the policy cares about, mixed with real script.
fn tricky_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "Z",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        "\u{0}",
        "\u{7}",
        "\u{7F}",
        "\u{85}",
        "\u{A0}",
        "\u{2028}",
        "\u{2029}",
        "\u{200B}",
        "\u{200C}",
        "\u{200D}",
        "\u{2060}",
        "\u{200E}",
        "\u{200F}",
        "\u{061C}",
        "\u{202E}",
        "\u{2067}",
        "\u{FEFF}",
        "\u{00AD}",
        "\u{034F}",
        "\u{3164}",
        "\u{115F}",
        "\u{2800}",
        "\u{0301}",
        "\u{0302}",
        "\u{0323}",
        "\u{0336}",
        "\u{20DD}",
        "\u{0344}",
        "\u{0F73}",
        "\u{FE0F}",
        "\u{E0067}",
        "\u{E007F}",
        "🏴",
        "👍",
        "🏽",
        "❤",
        "1",
        "\u{20E3}",
        "\u{FFFD}",
        "\u{FFFF}",
        "\u{E000}",
        "e",
        "ệ",
        "ក",
        "ន្និ",
        "\u{17D2}",
        "\u{17B4}",
        "ស៊ើ",
        "ท",
        "\u{0E49}",
        "ع",
        "\u{064B}",
        "ཀ",
        "\u{0F90}",
        "\u{1160}",
        "가",
        "\u{11A8}",
        "ᄀ",
        "\u{1161}",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
}

fn check_output(input: &str, limit: &Limit) -> Result<(), TestCaseError> {
    if let Ok(text) = clean("field", input, limit) {
        prop_assert!(text.chars().count() <= limit.max_chars);
        prop_assert!(text.len() <= limit.max_bytes);
        prop_assert!(NFC.is_normalized(&text), "not NFC: {text:?}");
        prop_assert!(
            text.chars()
                .all(|c| forbidden(c, limit.lines).is_none() && c != '\u{FEFF}'),
            "kept a forbidden character: {text:?}"
        );
        prop_assert!(!limit.required || text.chars().any(is_visible));
        prop_assert_eq!(
            clean("field", &text, limit),
            Ok(text.clone()),
            "cleaning {:?} again changed it",
            text
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn cleaning_never_panics_is_idempotent_and_meets_the_limit(
        input in tricky_text(),
        max_chars in 1usize..30,
        many in any::<bool>(),
        required in any::<bool>(),
    ) {
        let mut limit = if many { Limit::lines(max_chars) } else { Limit::line(max_chars) };
        if !required {
            limit = limit.optional();
        }
        check_output(&input, &limit)?;
    }

    #[test]
    fn any_string_is_cleaned_without_panic(input in any::<String>(), many in any::<bool>()) {
        let limit = if many { LINES } else { LINE };
        check_output(&input, &limit)?;
    }
}
