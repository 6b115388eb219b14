//! Hostile text against the real podiumd: bidirectional overrides, control characters, Zalgo
//! marks, smuggled tag characters and over-long text are refused with INVALID_ARGUMENT naming
//! the field, and nothing of them is stored; Khmer text is stored exactly as sent; an
//! authorization header that is not ASCII (or not even UTF-8) is UNAUTHENTICATED.

use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, Podiumd, Show, ballot, text};
use tonic::{Code, Status, metadata::AsciiMetadataValue};

/// Khmer with coeng stacks, vowel signs, Khmer digits and U+200B between words.
const KHMER_TITLE: &str = "សន្និសីទទិន្នន័យបើកចំហ\u{200B}ការប្រជុំ\u{200B}ពិភាក្សា ២០២៤";
const KHMER_QUESTION: &str = "តើ\u{200B}ទិន្នន័យ\u{200B}ថវិកា\u{200B}នឹង\u{200B}បើកចំហ\u{200B}នៅពេលណា?";

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, field: &str, problem: &str) {
    let status = result.expect_err("hostile text must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().starts_with(&format!("{field}:")) && status.message().contains(problem),
        "expected \"{field}: ...{problem}...\", got {:?}",
        status.message()
    );
}

fn localized(pairs: &[(&str, &str)]) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[tokio::test]
async fn hostile_text_is_refused_naming_the_field_and_khmer_is_stored_intact() {
    let show = Show::start().await.unwrap();
    let (admin, odc) = (&show.admin, &show.odc);
    let (start, end) = ("2024-11-14T02:00:00Z", "2024-11-14T03:00:00Z");

    // Agenda: a title that would display as "Open Data exe.gnp" is refused, and so are a room
    // with a control character and a speaker drowned in combining marks.
    let spoof = odc.session("Open Data \u{202E}gnp.exe", start, end, vec![]);
    refused(
        admin.agenda().add_session(spoof).await,
        "title",
        "the en text contains a bidirectional override (U+202E) at character 11",
    );
    let mut km_spoof = odc.session("Open Data", start, end, vec![]);
    km_spoof.title = localized(&[("en", "Open Data"), ("km", "ទិន្នន័យ\u{2067}")]);
    refused(
        admin.agenda().add_session(km_spoof).await,
        "title",
        "the km text contains a bidirectional isolate (U+2067)",
    );
    refused(
        admin
            .agenda()
            .add_room(pb::AddRoomRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                name: "Hall\u{1B}[2J".into(),
                capacity: 10,
            })
            .await,
        "name",
        "contains a control character (U+001B) at character 5",
    );
    refused(
        admin
            .agenda()
            .add_speaker(pb::AddSpeakerRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                name: format!("Sok{}", "\u{0336}\u{0337}".repeat(10)),
                organisation: String::new(),
                time_zone: "Asia/Phnom_Penh".into(),
                available_from: String::new(),
                available_until: String::new(),
            })
            .await,
        "name",
        "has 20 combining marks in a row at character 4",
    );
    let sessions = |admin: &Client| {
        let admin = admin.clone();
        async move {
            admin
                .agenda()
                .list_sessions(pb::ListSessionsRequest {
                    conference_id: CONFERENCE.into(),
                    room_id: String::new(),
                    speaker_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .sessions
        }
    };
    assert!(sessions(admin).await.is_empty(), "nothing was stored");
    let conference = admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conference
        .unwrap();
    assert_eq!(conference.rooms.len(), 1, "only the main hall");
    assert_eq!(
        conference.speakers.len(),
        2,
        "only the two fixture speakers"
    );

    // A Khmer title (with a byte-order mark pasted in front) is stored exactly, mark dropped.
    let mut khmer = odc.session("Open Data", start, end, vec![]);
    khmer.title = localized(&[
        ("en", "Open Data Conference"),
        ("km", &format!("\u{FEFF}{KHMER_TITLE}")),
    ]);
    let stored = admin
        .agenda()
        .add_session(khmer)
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(stored.title.as_ref().unwrap().text["km"], KHMER_TITLE);
    let listed = sessions(admin).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].title.as_ref().unwrap().text["km"], KHMER_TITLE);
    let ses = stored.id;

    // Access: names on tokens and joins.
    refused(
        admin
            .access()
            .issue_token(pb::IssueTokenRequest {
                role: pb::Role::Integration as i32,
                conference_id: CONFERENCE.into(),
                speaker_id: String::new(),
                name: "OBS\nbridge".into(),
                ttl_seconds: 0,
            })
            .await,
        "name",
        "contains a line break (U+000A) at character 4",
    );
    let anonymous = show.server.client(None).await.unwrap();
    let join = |name: &str| pb::JoinRequest {
        join_code: odc.conference.join_code.clone(),
        display_name: name.into(),
    };
    refused(
        anonymous.access().join(join("Dara\u{202E}")).await,
        "display_name",
        "contains a bidirectional override (U+202E) at character 5",
    );
    // A name with nothing visible in it is no name: the default one is used.
    let blank = anonymous
        .access()
        .join(join("\u{200B}\u{3164}\u{2800}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blank.principal.unwrap().name, "attendee");

    // Q&A: a question smuggling invisible ASCII in tag characters, and an over-long one in
    // bytes, are refused; the Khmer one is stored as typed.
    let dara = show.join("Dara").await.unwrap();
    let ask = |text: &str| pb::AskQuestionRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: ses.clone(),
        text: text.into(),
        anonymous: false,
    };
    refused(
        dara.questions()
            .ask_question(ask(
                "When?\u{E0069}\u{E0067}\u{E006E}\u{E006F}\u{E0072}\u{E0065}",
            ))
            .await,
        "text",
        "contains a tag character (U+E0069) at character 6 outside an emoji flag",
    );
    refused(
        dara.questions().ask_question(ask(&"😀".repeat(400))).await,
        "text",
        "is 1,600 bytes long in UTF-8; at most 1,500 are allowed",
    );
    let questions = |client: &Client| {
        let (client, ses) = (client.clone(), ses.clone());
        async move {
            client
                .questions()
                .list_questions(pb::ListQuestionsRequest {
                    conference_id: CONFERENCE.into(),
                    session_id: ses,
                })
                .await
                .unwrap()
                .into_inner()
                .questions
        }
    };
    assert!(questions(admin).await.is_empty(), "nothing was stored");
    let asked = dara
        .questions()
        .ask_question(ask(KHMER_QUESTION))
        .await
        .unwrap()
        .into_inner()
        .question
        .unwrap();
    assert_eq!(asked.text, KHMER_QUESTION);
    refused(
        admin
            .questions()
            .moderate_question(pb::ModerateQuestionRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                question_id: asked.id.clone(),
                action: pb::ModerationAction::Dismiss as i32,
                reason: "spam\u{202D}".into(),
            })
            .await,
        "reason",
        "bidirectional override (U+202D)",
    );
    let listed = questions(admin).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text, KHMER_QUESTION);
    assert_eq!(listed[0].reason, "", "the refused reason was not stored");

    // Polls: an option with a NUL, then word-cloud answers.
    let mut bad_poll = pb::CreatePollRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: String::new(),
        question: text("Which data?"),
        kind: pb::PollKind::SingleChoice as i32,
        options: vec![text("Budgets").unwrap(), text("Land\u{0}").unwrap()],
        max_choices: 0,
        scale_min: 0,
        scale_max: 0,
        visibility: pb::ResultVisibility::Live as i32,
        lock_ballots: false,
        anonymous: false,
        publishable: false,
        survey: false,
    };
    refused(
        admin.polls().create_poll(bad_poll.clone()).await,
        "options",
        "option 2: the en text contains a control character (U+0000) at character 5",
    );
    bad_poll.options[1] = text("Land").unwrap();
    bad_poll.question = localized(&[("en", "Which data?"), ("k\u{202E}m", "?")]);
    refused(
        admin.polls().create_poll(bad_poll).await,
        "question",
        "is not a language tag",
    );
    let polls_listed = admin
        .polls()
        .list_polls(pb::ListPollsRequest {
            conference_id: CONFERENCE.into(),
            session_id: String::new(),
            language: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .polls;
    assert!(polls_listed.is_empty(), "no poll was stored");

    let cloud = show.add_poll(NewPoll::word_cloud()).await.unwrap();
    let answer = |text: &str| pb::CastBallotRequest {
        text: text.into(),
        ..ballot(&cloud, vec![])
    };
    refused(
        dara.polls().cast_ballot(answer("data\u{202E}atad")).await,
        "text",
        "bidirectional override",
    );
    dara.polls()
        .cast_ballot(answer(" ទិន្នន័យ\u{200B}\u{200B}ថវិកា "))
        .await
        .unwrap();
    // Un-hiding a word that is not hidden changes nothing and answers the moderator's results.
    let results = admin
        .polls()
        .hide_word(pb::HideWordRequest {
            conference_id: CONFERENCE.into(),
            poll_id: cloud.id.clone(),
            word: "ថវិកា".into(),
            hidden: false,
        })
        .await
        .unwrap()
        .into_inner();
    let words: Vec<_> = results
        .results
        .unwrap()
        .words
        .into_iter()
        .map(|w| w.word)
        .collect();
    assert!(words.contains(&"ទិន្នន័យ".to_owned()), "{words:?}");
    assert!(words.contains(&"ថវិកា".to_owned()), "{words:?}");
    refused(
        admin
            .polls()
            .hide_word(pb::HideWordRequest {
                conference_id: CONFERENCE.into(),
                poll_id: cloud.id.clone(),
                word: "\u{FFFD}".into(),
                hidden: true,
            })
            .await,
        "word",
        "replacement character (U+FFFD)",
    );
}

#[tokio::test]
async fn an_authorization_header_that_is_not_ascii_is_unauthenticated() {
    let server = Podiumd::start().unwrap();
    let anonymous = server.client(None).await.unwrap();
    let token = server.admin_token().unwrap();
    // Bytes that are not UTF-8 at all, UTF-8 that is not ASCII, and a real token with a byte
    // flipped to Latin-1: each must be refused cleanly, never panic the server.
    let headers: Vec<Vec<u8>> = vec![
        b"Bearer \xff\xfe\x80\x81".to_vec(),
        "Bearer tökén".as_bytes().to_vec(),
        [b"Bearer ".as_slice(), token.as_bytes(), b"\xe9"].concat(),
        b"\xc3\x28".to_vec(),
    ];
    for bytes in headers {
        let mut request = tonic::Request::new(pb::WhoAmIRequest {});
        // HTTP allows bytes 0x80 to 0xFF in a header value; tonic sends them as they are.
        let value = AsciiMetadataValue::try_from(bytes.as_slice()).expect("a header value");
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        let status = anonymous.access().who_am_i(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bytes:?}");
        assert_eq!(
            status.message(),
            "authorization header is not ASCII",
            "{bytes:?}"
        );
        // A call that needs no token is refused the same way: the header is checked first.
        let mut join = tonic::Request::new(pb::JoinRequest {
            join_code: "NO-SUCH-CODE".into(),
            display_name: "Dara".into(),
        });
        join.metadata_mut().insert("authorization", value);
        let status = anonymous.access().join(join).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bytes:?}");
    }
    // The server is still up and answers a good token.
    let admin = server.admin().await.unwrap();
    let me = admin
        .access()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal.unwrap().role(), pb::Role::Admin);
}
