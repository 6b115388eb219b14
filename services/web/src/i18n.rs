//! Every string of every page, in English and Khmer, from one typed table: a key that lacks
//! either language does not compile, and a test checks that no entry is empty or left in
//! English in the Khmer column.

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Km,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Km];

    /// The BCP 47 tag, for `lang` attributes and for asking the services for text.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Km => "km",
        }
    }

    /// The language's name in itself, for the switcher.
    pub fn endonym(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Km => "ខ្មែរ",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "km" => Some(Lang::Km),
            _ => None,
        }
    }

    /// The remembered choice if there is one, else the best of `Accept-Language` by quality,
    /// else English.
    pub fn negotiate(remembered: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = remembered.and_then(Lang::from_tag) {
            return lang;
        }
        let mut best: Option<(f32, Lang)> = None;
        for range in accept_language.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else {
                continue;
            };
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q=")?.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Km => &KM,
        }
    }
}

macro_rules! catalogue {
    ($($key:ident: $en:literal, $km:literal;)*) => {
        /// The pages' strings in one language.
        #[derive(Debug)]
        pub struct Text {
            $(pub $key: &'static str,)*
        }

        pub static EN: Text = Text { $($key: $en,)* };
        pub static KM: Text = Text { $($key: $km,)* };

        /// Every key with its English and Khmer text.
        #[cfg(test)]
        pub const ENTRIES: &[(&str, &str, &str)] = &[$((stringify!($key), $en, $km),)*];
    };
}

catalogue! {
    site_name: "podium", "podium";
    skip_to_content: "Skip to content", "រំលងទៅខ្លឹមសារ";
    language: "Language", "ភាសា";
    switch_language: "Change language", "ប្តូរភាសា";
    sign_out: "Sign out", "ចាកចេញ";
    join_title: "Join a conference", "ចូលរួមសន្និសីទ";
    join_intro: "Enter the code shown on the screen in the hall.", "សូមបញ្ចូលលេខកូដដែលបង្ហាញនៅលើអេក្រង់ក្នុងសាល។";
    join_code: "Join code", "លេខកូដចូលរួម";
    join_code_hint: "For example KQ7M-2XHD. Capitals and dashes do not matter.", "ឧទាហរណ៍ KQ7M-2XHD។ អក្សរធំ ឬសញ្ញាដាច់ មិនសំខាន់ទេ។";
    display_name: "Your name (optional)", "ឈ្មោះរបស់អ្នក (មិនចាំបាច់)";
    display_name_hint: "Leave it empty to take part anonymously.", "ទុកទំនេរ ដើម្បីចូលរួមដោយអនាមិក។";
    join_button: "Join", "ចូលរួម";
    join_code_unknown: "No conference has this join code. Check the code on the screen and try again.", "គ្មានសន្និសីទណាមួយមានលេខកូដនេះទេ។ សូមពិនិត្យលេខកូដនៅលើអេក្រង់ ហើយព្យាយាមម្តងទៀត។";
    signed_in_as: "Signed in as", "បានចូលជា";
    my_data: "Your data", "ទិន្នន័យរបស់អ្នក";
    my_data_intro: "What podium keeps about you at this conference. You may erase it at any time.", "អ្វីដែល podium រក្សាទុកអំពីអ្នកនៅក្នុងសន្និសីទនេះ។ អ្នកអាចលុបវាចោលបានគ្រប់ពេល។";
    attendee_id: "Your attendee id (give it to the organisers with any request about your data)", "លេខសម្គាល់អ្នកចូលរួមរបស់អ្នក (ផ្តល់វាឱ្យអ្នករៀបចំ ជាមួយសំណើណាមួយអំពីទិន្នន័យរបស់អ្នក)";
    my_data_held: "What podium holds", "អ្វីដែល podium រក្សាទុក";
    name_on_questions: "Name on your questions", "ឈ្មោះនៅលើសំណួររបស់អ្នក";
    name_joined_with: "Name you joined with", "ឈ្មោះដែលអ្នកបានប្រើពេលចូលរួម";
    name_in_sign_in: "kept in your sign-in on this device; podium stores it only on the questions you ask under your name", "រក្សាទុកក្នុងការចូលរបស់អ្នកនៅលើឧបករណ៍នេះ។ podium រក្សាទុកវាតែនៅលើសំណួរដែលអ្នកសួរក្រោមឈ្មោះរបស់អ្នកប៉ុណ្ណោះ";
    none_given: "None", "គ្មាន";
    asked_anonymously: "asked anonymously", "សួរដោយអនាមិក";
    my_ratings: "Your ratings", "ការវាយតម្លៃរបស់អ្នក";
    my_ballots: "Your votes in polls that are not anonymous", "ការបោះឆ្នោតរបស់អ្នកក្នុងការស្ទង់មតិដែលមិនអនាមិក";
    erase_title: "Erase your data", "លុបទិន្នន័យរបស់អ្នក";
    erase_explained: "Your name, the text of your questions and your comments will be erased for good, everywhere podium keeps them. Your votes, ratings and upvotes stay counted. You will be signed out.", "ឈ្មោះ អត្ថបទនៃសំណួររបស់អ្នក និងមតិយោបល់របស់អ្នក នឹងត្រូវលុបជាអចិន្ត្រៃយ៍ នៅគ្រប់កន្លែងដែល podium រក្សាទុក។ ការបោះឆ្នោត ការវាយតម្លៃ និងការគាំទ្ររបស់អ្នក នៅតែត្រូវបានរាប់។ អ្នកនឹងត្រូវចាកចេញ។";
    erase_confirm: "I understand that this cannot be undone.", "ខ្ញុំយល់ថា វាមិនអាចត្រឡប់វិញបានទេ។";
    erase_button: "Erase my data", "លុបទិន្នន័យរបស់ខ្ញុំ";
    erase_confirm_missing: "Tick the box to confirm, then erase again.", "សូមធីកប្រអប់ដើម្បីបញ្ជាក់ រួចលុបម្តងទៀត។";
    erased_done: "Your data is erased and you are signed out.", "ទិន្នន័យរបស់អ្នកត្រូវបានលុប ហើយអ្នកបានចាកចេញ។";
    now_on: "On now", "កំពុងដំណើរការ";
    nothing_on_now: "Nothing is on in this room right now.", "មិនមានកម្មវិធីនៅក្នុងបន្ទប់នេះទេពេលនេះ។";
    agenda: "Agenda", "របៀបវារៈ";
    room: "Room", "បន្ទប់";
    your_time: "your time", "ម៉ោងរបស់អ្នក";
    conference_time: "conference time", "ម៉ោងសន្និសីទ";
    open_session: "Polls, questions and rating", "ការស្ទង់មតិ សំណួរ និងការវាយតម្លៃ";
    back_to_conference: "Back to the conference", "ត្រឡប់ទៅសន្និសីទវិញ";
    polls: "Polls", "ការស្ទង់មតិ";
    no_open_polls: "No poll is open right now.", "មិនមានការស្ទង់មតិបើកនៅពេលនេះទេ។";
    vote: "Vote", "បោះឆ្នោត";
    change_vote: "Change my vote", "ប្តូរការបោះឆ្នោតរបស់ខ្ញុំ";
    vote_saved: "Your vote is saved.", "ការបោះឆ្នោតរបស់អ្នកត្រូវបានរក្សាទុក។";
    vote_replaced: "Your vote is changed.", "ការបោះឆ្នោតរបស់អ្នកត្រូវបានផ្លាស់ប្តូរ។";
    pick_one: "Pick one.", "ជ្រើសរើសមួយ។";
    pick_up_to: "Pick up to this many:", "ជ្រើសរើសមិនលើសពី៖";
    rating_scale: "From lowest to highest:", "ពីទាបបំផុតទៅខ្ពស់បំផុត៖";
    your_answer: "Your answer", "ចម្លើយរបស់អ្នក";
    your_words: "A word or a few words", "ពាក្យមួយ ឬពាក្យពីរបី";
    characters_left: "characters left", "តួអក្សរនៅសល់";
    results: "Results", "លទ្ធផល";
    results_after_close: "Results are shown when the poll closes.", "លទ្ធផលនឹងបង្ហាញនៅពេលការស្ទង់មតិបិទ។";
    one_ballot: "ballot", "សន្លឹកឆ្នោត";
    ballots: "ballots", "សន្លឹកឆ្នោត";
    one_vote: "vote", "សំឡេង";
    votes: "votes", "សំឡេង";
    average: "Average", "មធ្យម";
    words_as_list: "Words, most frequent first", "ពាក្យ ដែលញឹកញាប់បំផុតមុនគេ";
    answers: "Answers", "ចម្លើយ";
    poll_closed: "This poll is closed: your vote was not counted.", "ការស្ទង់មតិនេះបានបិទហើយ៖ ការបោះឆ្នោតរបស់អ្នកមិនត្រូវបានរាប់ទេ។";
    poll_locked: "Votes in this poll cannot be changed.", "មិនអាចប្តូរការបោះឆ្នោតក្នុងការស្ទង់មតិនេះបានទេ។";
    questions: "Questions", "សំណួរ";
    ask: "Ask a question", "សួរសំណួរ";
    ask_button: "Send question", "ផ្ញើសំណួរ";
    ask_anonymously: "Ask anonymously", "សួរដោយអនាមិក";
    question_sent: "Your question is sent.", "សំណួររបស់អ្នកត្រូវបានផ្ញើ។";
    no_questions: "No questions yet.", "មិនទាន់មានសំណួរនៅឡើយទេ។";
    upvote: "Upvote", "គាំទ្រ";
    upvoted: "You upvoted this", "អ្នកបានគាំទ្រសំណួរនេះ";
    your_question: "Your question", "សំណួររបស់អ្នក";
    state_pending: "waiting for a moderator", "កំពុងរង់ចាំអ្នកសម្របសម្រួល";
    state_published: "published", "បានផ្សាយ";
    state_answered: "answered", "បានឆ្លើយ";
    state_dismissed: "dismissed", "បានបដិសេធ";
    reason: "Reason", "មូលហេតុ";
    anonymous: "Anonymous", "អនាមិក";
    rate_session: "Rate this session", "វាយតម្លៃវគ្គនេះ";
    rating_label: "Your rating", "ការវាយតម្លៃរបស់អ្នក";
    comment: "Comment (optional)", "មតិយោបល់ (មិនចាំបាច់)";
    rate_button: "Send rating", "ផ្ញើការវាយតម្លៃ";
    rating_saved: "Thank you: your rating is saved.", "សូមអរគុណ៖ ការវាយតម្លៃរបស់អ្នកត្រូវបានរក្សាទុក។";
    rating_not_yet: "You can rate this session once it has started.", "អ្នកអាចវាយតម្លៃវគ្គនេះបាន នៅពេលវាបានចាប់ផ្តើម។";
    scan_to_join: "Scan to join, or go to", "ស្កេនដើម្បីចូលរួម ឬចូលទៅកាន់";
    and_enter: "and enter", "ហើយបញ្ចូល";
    live_results: "Live results", "លទ្ធផលផ្ទាល់";
    error_title: "Something went wrong", "មានបញ្ហាកើតឡើង";
    error_not_found: "This page does not exist.", "ទំព័រនេះមិនមានទេ។";
    error_sign_in: "Your sign-in has expired or is not valid. Join again with the code.", "ការចូលរបស់អ្នកបានផុតកំណត់ ឬមិនត្រឹមត្រូវ។ សូមចូលរួមម្តងទៀតដោយប្រើលេខកូដ។";
    error_forbidden: "Your role may not do this.", "តួនាទីរបស់អ្នកមិនអាចធ្វើការនេះបានទេ។";
    error_csrf: "This form has expired. Go back, reload the page and send it again.", "ទម្រង់នេះបានផុតកំណត់។ សូមត្រឡប់ក្រោយ ផ្ទុកទំព័រឡើងវិញ ហើយផ្ញើម្តងទៀត។";
    error_other_site: "This form was sent from another website, so nothing was done. Open the page at this address and send the form from there.", "ទម្រង់នេះត្រូវបានផ្ញើពីគេហទំព័រផ្សេង ដូច្នេះគ្មានអ្វីត្រូវបានធ្វើទេ។ សូមបើកទំព័រនៅអាសយដ្ឋាននេះ ហើយផ្ញើទម្រង់ពីទីនោះ។";
    error_too_large: "What you sent is too long.", "អ្វីដែលអ្នកបានផ្ញើវែងពេក។";
    error_invalid: "What you sent was not accepted:", "អ្វីដែលអ្នកបានផ្ញើមិនត្រូវបានទទួលយកទេ៖";
    error_busy: "Too many requests right now. Wait a moment and try again.", "មានសំណើច្រើនពេកនៅពេលនេះ។ សូមរង់ចាំបន្តិច ហើយព្យាយាមម្តងទៀត។";
    error_unavailable: "This part of podium is not served by this server.", "ផ្នែកនេះរបស់ podium មិនត្រូវបានផ្តល់ដោយម៉ាស៊ីនមេនេះទេ។";
    error_unanswered: "No answer came in time. What you asked may still happen: look before you try again.", "មិនមានចម្លើយទាន់ពេលទេ។ អ្វីដែលអ្នកបានស្នើ អាចនឹងកើតឡើងនៅឡើយ៖ សូមពិនិត្យមើលសិន មុននឹងព្យាយាមម្តងទៀត។";
    error_internal: "podium could not do this. Try again; if it keeps failing, tell the organisers.", "podium មិនអាចធ្វើការនេះបានទេ។ សូមព្យាយាមម្តងទៀត ប្រសិនបើនៅតែបរាជ័យ សូមប្រាប់អ្នករៀបចំ។";
    go_home: "Go to the start page", "ទៅទំព័រដើម";
    console_title: "Moderator console", "ផ្ទាំងគ្រប់គ្រងរបស់អ្នកសម្របសម្រួល";
    rooms_board: "Rooms", "បន្ទប់ទាំងអស់";
    session: "Session", "វគ្គ";
    state: "State", "ស្ថានភាព";
    on_air: "On air", "កំពុងផ្សាយ";
    cause: "Why", "មូលហេតុ";
    links: "Speakers' links", "ការតភ្ជាប់របស់វាគ្មិន";
    program: "Program output (OBS)", "លទ្ធផលកម្មវិធី (OBS)";
    program_confirmed: "confirmed", "បានបញ្ជាក់";
    program_not_confirmed: "NOT confirmed: OBS shows", "មិនទាន់បានបញ្ជាក់៖ OBS បង្ហាញ";
    program_override: "manual override in OBS", "ការប្តូរដោយដៃក្នុង OBS";
    program_offline: "playout bridge offline", "ស្ពានចាក់ផ្សាយមិនបានតភ្ជាប់";
    program_none: "no playout bridge", "គ្មានស្ពានចាក់ផ្សាយ";
    program_streaming: "streaming", "កំពុងផ្សាយបន្តផ្ទាល់";
    program_reconnecting: "stream reconnecting", "ការផ្សាយកំពុងតភ្ជាប់ឡើងវិញ";
    program_skipped: "frames skipped", "ស៊ុមដែលបានរំលង";
    alerts: "Alerts", "ការជូនដំណឹង";
    actions: "Actions", "សកម្មភាព";
    no_sessions: "No sessions yet.", "មិនទាន់មានវគ្គនៅឡើយទេ។";
    session_scheduled: "scheduled", "បានកំណត់ពេល";
    session_live: "live", "កំពុងផ្សាយផ្ទាល់";
    session_ended: "ended", "បានបញ្ចប់";
    source_speaker: "speaker", "វាគ្មិន";
    source_recording: "recording", "ការថតទុក";
    source_backup: "backup speaker", "វាគ្មិនបម្រុង";
    source_slate: "slate (please stand by)", "ផ្ទាំងរង់ចាំ";
    source_none: "nothing", "គ្មានអ្វីទេ";
    cause_moderator: "a moderator switched", "អ្នកសម្របសម្រួលបានប្តូរ";
    cause_heartbeat: "the speaker's heartbeats stopped", "សញ្ញារបស់វាគ្មិនបានឈប់";
    cause_closed: "the speaker's connection closed", "ការតភ្ជាប់របស់វាគ្មិនបានបិទ";
    cause_poor: "the speaker's link was poor", "ការតភ្ជាប់របស់វាគ្មិនខ្សោយ";
    cause_stable: "the speaker's link is stable again", "ការតភ្ជាប់របស់វាគ្មិនមានស្ថេរភាពវិញ";
    cause_started: "the session started", "វគ្គបានចាប់ផ្តើម";
    link_offline: "offline", "មិនបានតភ្ជាប់";
    link_healthy: "healthy", "ល្អ";
    link_poor: "poor", "ខ្សោយ";
    link_lost: "lost", "បាត់ការតភ្ជាប់";
    alert_failover: "link lost: the recording is on air", "បាត់ការតភ្ជាប់៖ ការថតទុកកំពុងផ្សាយ";
    alert_no_recording: "link lost, and this session has no recording: the slate is on air", "បាត់ការតភ្ជាប់ ហើយវគ្គនេះគ្មានការថតទុកទេ៖ ផ្ទាំងរង់ចាំកំពុងផ្សាយ";
    pinned: "pinned", "បានខ្ទាស់";
    start_session: "Start", "ចាប់ផ្តើម";
    end_session: "End", "បញ្ចប់";
    switch_to: "Put on air:", "ដាក់ផ្សាយ៖";
    pin: "Pin", "ខ្ទាស់";
    unpin: "Unpin", "ឈប់ខ្ទាស់";
    confirm_title: "Please confirm", "សូមបញ្ជាក់";
    confirm: "Confirm", "បញ្ជាក់";
    cancel: "Cancel", "បោះបង់";
    confirm_start: "Take this session live, on its speaker?", "ដាក់វគ្គនេះឱ្យផ្សាយផ្ទាល់ ជាមួយវាគ្មិនរបស់វា?";
    confirm_end: "End this session? It cannot go live again.", "បញ្ចប់វគ្គនេះ? វាមិនអាចផ្សាយផ្ទាល់ម្តងទៀតបានទេ។";
    confirm_switch: "Put this on air now:", "ដាក់ផ្សាយរឿងនេះឥឡូវ៖";
    confirm_pin: "Pin what is on air, so that no failover rule moves it?", "ខ្ទាស់អ្វីដែលកំពុងផ្សាយ ដើម្បីកុំឱ្យច្បាប់ប្តូរជំនួសណាមួយផ្លាស់ប្តូរវា?";
    confirm_unpin: "Unpin, so that the failover rules apply again?", "ឈប់ខ្ទាស់ ដើម្បីឱ្យច្បាប់ប្តូរជំនួសអនុវត្តម្តងទៀត?";
    send_again: "Send again", "ផ្ញើម្តងទៀត";
    send_again_unanswered: "No answer came in time: it may still happen. Sending it again is safe: it is carried out only once.", "មិនមានចម្លើយទាន់ពេលទេ៖ វាអាចនឹងកើតឡើងនៅឡើយ។ ការផ្ញើម្តងទៀតមានសុវត្ថិភាព៖ វានឹងត្រូវបានធ្វើតែម្តងប៉ុណ្ណោះ។";
    send_again_unavailable: "podium could not confirm that it was done. Sending it again in a moment is safe: it is carried out only once.", "podium មិនអាចបញ្ជាក់ថាវាត្រូវបានធ្វើរួចទេ។ ការផ្ញើម្តងទៀតបន្តិចទៀតមានសុវត្ថិភាព៖ វានឹងត្រូវបានធ្វើតែម្តងប៉ុណ្ណោះ។";
    done: "Done.", "រួចរាល់។";
    moderation_queue: "Questions", "សំណួរ";
    publish: "Publish", "ផ្សាយ";
    mark_answered: "Mark answered", "សម្គាល់ថាបានឆ្លើយ";
    dismiss: "Dismiss", "បដិសេធ";
    reason_for_author: "Reason (the author sees it; optional)", "មូលហេតុ (អ្នកសួរនឹងឃើញ មិនចាំបាច់)";
    poll_draft: "draft", "សេចក្តីព្រាង";
    poll_open: "open", "បើក";
    poll_closed_state: "closed", "បានបិទ";
    open_poll: "Open", "បើក";
    close_poll: "Close", "បិទ";
    create_poll: "Create a poll", "បង្កើតការស្ទង់មតិ";
    poll_kind: "Kind", "ប្រភេទ";
    kind_single: "One choice", "ជម្រើសមួយ";
    kind_multiple: "Several choices", "ជម្រើសច្រើន";
    kind_rating: "Rating from 1 to 5", "ការវាយតម្លៃពី ១ ដល់ ៥";
    kind_words: "Word cloud", "ពពកពាក្យ";
    kind_text: "Open text", "អត្ថបទសេរី";
    question_en: "Question in English", "សំណួរជាភាសាអង់គ្លេស";
    question_km: "Question in Khmer (optional)", "សំណួរជាភាសាខ្មែរ (មិនចាំបាច់)";
    options_en: "Choices in English, one per line", "ជម្រើសជាភាសាអង់គ្លេស មួយបន្ទាត់ម្តង";
    options_km: "Choices in Khmer, one per line, in the same order (optional)", "ជម្រើសជាភាសាខ្មែរ មួយបន្ទាត់ម្តង តាមលំដាប់ដដែល (មិនចាំបាច់)";
    poll_for: "For", "សម្រាប់";
    whole_conference: "the whole conference", "សន្និសីទទាំងមូល";
    create_button: "Create", "បង្កើត";
    hide_word: "Hide a word", "លាក់ពាក្យ";
    speaker_title: "Your sessions", "វគ្គរបស់អ្នក";
    speaker_intro: "Times are shown in your own time zone and in the conference's.", "ម៉ោងត្រូវបានបង្ហាញតាមតំបន់ម៉ោងរបស់អ្នក និងតំបន់ម៉ោងរបស់សន្និសីទ។";
    in_your_zone: "In your time zone", "តាមតំបន់ម៉ោងរបស់អ្នក";
    in_conference_zone: "In the conference's time zone", "តាមតំបន់ម៉ោងរបស់សន្និសីទ";
    add_to_calendar: "Add to calendar", "បន្ថែមទៅប្រតិទិន";
    backup_speaker: "You are the backup speaker.", "អ្នកជាវាគ្មិនបម្រុង។";
    no_speaker_sessions: "You have no sessions in this conference yet.", "អ្នកមិនទាន់មានវគ្គនៅក្នុងសន្និសីទនេះនៅឡើយទេ។";
    word: "Word", "ពាក្យ";
    preflight: "Pre-flight", "ការត្រៀមមុនផ្សាយ";
    ready: "Ready", "រួចរាល់";
    at_risk: "At risk", "មានហានិភ័យ";
    tested_yes: "Connection tested", "បានសាកល្បងការតភ្ជាប់";
    tested_no: "No test connection yet", "មិនទាន់បានសាកល្បងការតភ្ជាប់នៅឡើយ";
    recording_yes: "Recording uploaded and verified", "ការថតទុកត្រូវបានផ្ទុកឡើង និងផ្ទៀងផ្ទាត់";
    recording_no: "No recording uploaded yet", "មិនទាន់បានផ្ទុកការថតទុកឡើងនៅឡើយ";
    live_now: "Now", "ឥឡូវនេះ";
    your_link: "Your link, as podium sees it", "ការតភ្ជាប់របស់អ្នក តាមដែល podium ឃើញ";
    taken_off: "You no longer speak in this session: the organisers changed the programme.", "អ្នកលែងនិយាយក្នុងវគ្គនេះទៀតហើយ៖ អ្នករៀបចំបានផ្លាស់ប្តូរកាលវិភាគ។";
    connect_hint: "To speak live, start the speaker agent on the computer you speak from, with your speaker token:", "ដើម្បីធ្វើបទបង្ហាញផ្ទាល់ សូមចាប់ផ្តើមកម្មវិធីវាគ្មិននៅលើកុំព្យូទ័រដែលអ្នកប្រើដើម្បីនិយាយ ជាមួយថូខឹនវាគ្មិនរបស់អ្នក៖";
    packet_loss: "loss", "បាត់បង់";
    recording_how: "Send your recorded talk to the organisers: they upload it, and it goes on air if your connection drops.", "សូមផ្ញើការថតទុកបទបង្ហាញរបស់អ្នកទៅអ្នករៀបចំ៖ ពួកគេនឹងផ្ទុកវាឡើង ហើយវានឹងចេញផ្សាយ ប្រសិនបើការតភ្ជាប់របស់អ្នកដាច់។";
    hours_yes: "Within your available hours", "ស្ថិតក្នុងម៉ោងទំនេររបស់អ្នក";
    hours_no: "Outside your available hours", "នៅក្រៅម៉ោងទំនេររបស់អ្នក";
    test_connection: "Test my connection", "សាកល្បងការតភ្ជាប់របស់ខ្ញុំ";
    test_hint: "Measures the round trip from this browser to podium and records it for the organisers. It never goes on air.", "វាស់រយៈពេលទៅមកពីកម្មវិធីរុករកនេះទៅ podium ហើយកត់ត្រាទុកសម្រាប់អ្នករៀបចំ។ វាមិនដែលចេញផ្សាយទេ។";
    test_recorded: "Test recorded. Round trip:", "ការសាកល្បងត្រូវបានកត់ត្រា។ រយៈពេលទៅមក៖";
    milliseconds: "ms", "មិល្លីវិនាទី";
    report_title: "Pre-flight, ratings and export", "ការត្រៀមមុនផ្សាយ ការវាយតម្លៃ និងការនាំចេញ";
    preflight_intro: "Every session that has not ended: is each speaker tested and within their hours, and is a verified recording ready to fall back to?", "វគ្គទាំងអស់ដែលមិនទាន់បញ្ចប់៖ តើវាគ្មិននីមួយៗបានសាកល្បង និងស្ថិតក្នុងម៉ោងរបស់ពួកគេឬទេ ហើយតើមានការថតទុកដែលបានផ្ទៀងផ្ទាត់រួចរាល់សម្រាប់ប្តូរជំនួសឬទេ?";
    starts: "Starts", "ចាប់ផ្តើម";
    speakers: "Speakers", "វាគ្មិន";
    recordings: "Recordings", "ការថតទុក";
    readiness: "Readiness", "ភាពរួចរាល់";
    backup: "backup", "បម្រុង";
    tested: "tested", "បានសាកល្បង";
    not_tested: "not tested", "មិនទាន់សាកល្បង";
    outside_hours: "outside their hours", "នៅក្រៅម៉ោងទំនេររបស់គាត់";
    concern_not_tested: "has not done a test connection", "មិនទាន់បានសាកល្បងការតភ្ជាប់";
    concern_starts: "starts", "ចាប់ផ្តើមនៅ";
    concern_ends: "ends", "បញ្ចប់នៅ";
    concern_no_valid_hours: "their available hours are not valid", "ម៉ោងទំនេររបស់ពួកគេមិនត្រឹមត្រូវ";
    concern_no_recording: "No verified recording to fall back to", "គ្មានការថតទុកដែលបានផ្ទៀងផ្ទាត់សម្រាប់ប្តូរជំនួសទេ";
    concern_no_backup: "No backup speaker named", "មិនទាន់បានកំណត់វាគ្មិនបម្រុង";
    concern_not_on_playout: "The recording is not on the playout machine", "ការថតទុកមិនមាននៅលើម៉ាស៊ីនចាក់ផ្សាយទេ";
    concern_short_recording: "The recording is shorter than its slot", "ការថតទុកខ្លីជាងពេលវេលាដែលបានកំណត់";
    concern_video_codec: "OBS may not play the recording's video: export it as H.264", "OBS ប្រហែលជាមិនអាចចាក់វីដេអូនៃការថតទុកបានទេ៖ សូមនាំចេញជា H.264";
    concern_no_sound: "The recording has no sound", "ការថតទុកគ្មានសំឡេងទេ";
    concern_audio_codec: "OBS may not play the recording's sound: export it as AAC", "OBS ប្រហែលជាមិនអាចចាក់សំឡេងនៃការថតទុកបានទេ៖ សូមនាំចេញជា AAC";
    minutes_short: "min", "នាទី";
    no_preflight: "The status service does not run on this server: no pre-flight report.", "សេវាស្ថានភាពមិនដំណើរការលើម៉ាស៊ីនមេនេះទេ៖ គ្មានរបាយការណ៍ត្រៀមមុនផ្សាយ។";
    ratings: "Ratings", "ការវាយតម្លៃ";
    no_ratings: "No session has been rated yet.", "មិនទាន់មានវគ្គណាមួយត្រូវបានវាយតម្លៃនៅឡើយទេ។";
    ratings_count: "Ratings", "ចំនួនការវាយតម្លៃ";
    rated: "Rated", "បានវាយតម្លៃ";
    comments: "Comments", "មតិយោបល់";
    export: "Export (open data)", "នាំចេញ (ទិន្នន័យបើកចំហ)";
    export_intro: "Poll results, rating averages and published questions, with no attendee names or ids.", "លទ្ធផលការស្ទង់មតិ មធ្យមនៃការវាយតម្លៃ និងសំណួរដែលបានផ្សាយ ដោយគ្មានឈ្មោះ ឬលេខសម្គាល់អ្នកចូលរួម។";
    download_csv: "Download CSV", "ទាញយក CSV";
    download_json: "Download JSON", "ទាញយក JSON";
    back_to_console: "Back to the console", "ត្រឡប់ទៅផ្ទាំងគ្រប់គ្រង";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_text_in_both_languages_and_khmer_is_khmer() {
        // Strings that are the same in every language: names and codes.
        const SAME: &[&str] = &["site_name"];
        for (key, en, km) in ENTRIES {
            assert!(!en.trim().is_empty(), "{key} has no English text");
            assert!(!km.trim().is_empty(), "{key} has no Khmer text");
            if !SAME.contains(key) {
                assert!(
                    km.chars().any(|c| ('\u{1780}'..='\u{17FF}').contains(&c)),
                    "{key}'s Khmer text has no Khmer script: {km}"
                );
            }
        }
    }

    #[test]
    fn the_remembered_language_wins_then_accept_language_by_quality() {
        assert_eq!(Lang::negotiate(Some("km"), Some("en")), Lang::Km);
        assert_eq!(
            Lang::negotiate(None, Some("fr, km-KH;q=0.8, en;q=0.5")),
            Lang::Km
        );
        assert_eq!(Lang::negotiate(None, Some("km;q=0.2, en-GB")), Lang::En);
        assert_eq!(Lang::negotiate(Some("xx"), Some("de")), Lang::En);
        assert_eq!(Lang::negotiate(None, None), Lang::En);
    }
}
