//! Forgetting a person, against a real podiumd and the `podium` CLI: an erased attendee's name,
//! questions and comments are found nowhere afterwards (answers, CLI output, exports, the
//! feed, every file in the data directory, a new backup and what it restores, and all of it
//! again after a restart), while every count stays; an erased speaker likewise; an attendee
//! may erase and export themselves and nobody else.

use std::path::Path;

use futures::StreamExt;
use podium_client::{Client, FeedItem, pb};
use podium_e2e::{CONFERENCE, Podiumd, Show, Speaker, Talk, cli, holds, restore};
use tonic::Code;

const NAME: &str = "Chanthou Forgetme";
const QUESTION: &str = "Where are the district procurement tables published?";
const ANONYMOUS: &str = "Does the ministry answer freedom of information requests?";
const COMMENT: &str = "The Khmer subtitles made every chart clear";

fn attendee(id: &str) -> pb::Person {
    pb::Person {
        conference_id: CONFERENCE.into(),
        kind: pb::PersonKind::Attendee as i32,
        person_id: id.into(),
    }
}

/// `by` erases `person`.
async fn erase(by: &Client, person: pb::Person) -> Result<pb::EraseResponse, tonic::Status> {
    let request = pb::EraseRequest {
        person: Some(person),
    };
    Ok(by.privacy().erase(request).await?.into_inner())
}

/// What podium holds about `person`, as `by` may read it.
async fn export(
    by: &Client,
    person: pb::Person,
) -> Result<pb::ExportPersonResponse, tonic::Status> {
    let request = pb::ExportPersonRequest {
        person: Some(person),
    };
    Ok(by.privacy().export_person(request).await?.into_inner())
}

/// The principal id of `client`'s token: an attendee's id.
async fn id_of(client: &Client) -> String {
    let me = client.access().who_am_i(pb::WhoAmIRequest {}).await;
    me.unwrap().into_inner().principal.unwrap().id
}

/// Fails the test if any of `secrets` is in `text`, naming where.
fn assert_forgotten(secrets: &[&str], place: &str, text: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{place} still holds {secret:?}");
    }
}

/// Every file under `dir`, as (path, bytes).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    podium_e2e::files_under(dir)
        .into_iter()
        .filter_map(|path| Some((path.display().to_string(), std::fs::read(&path).ok()?)))
        .collect()
}

/// Fails if any file under `dir` holds one of `secrets` (as UTF-8 bytes).
fn assert_files_forgotten(secrets: &[&str], dir: &Path) {
    let all = files(dir);
    assert!(!all.is_empty(), "{} holds no files", dir.display());
    for (path, bytes) in all {
        for secret in secrets {
            assert!(!holds(&bytes, secret), "{path} still holds {secret:?}");
        }
    }
}

/// Every event of the conference's feed, payloads decoded as far as the test cares.
async fn feed(admin: &Client) -> Vec<pb::Event> {
    let feed = admin.follow_feed(CONFERENCE, 0, vec![]);
    futures::pin_mut!(feed);
    let mut events = Vec::new();
    while let Some(FeedItem::Event(event)) = feed.next().await.transpose().unwrap() {
        events.push(event);
    }
    events
}

/// What the test reads back after the erasure (and again after a restart): each answer as
/// text, for the grep, and the counts that must not change.
async fn read_back(
    show: &Show,
    keeper: &Client,
    session: &str,
) -> (String, (usize, u64, u64, f64)) {
    let token = show.server.admin_token().unwrap();
    let mut seen = String::new();
    let listed = keeper
        .questions()
        .list_questions(pb::ListQuestionsRequest {
            conference_id: CONFERENCE.into(),
            session_id: session.into(),
        })
        .await
        .unwrap()
        .into_inner();
    seen.push_str(&format!("{listed:?}"));
    for args in [
        vec!["-c", CONFERENCE, "qa", "list", session],
        vec!["-c", CONFERENCE, "ratings", "--json"],
        vec!["-c", CONFERENCE, "export", "--format", "json"],
        vec!["-c", CONFERENCE, "export", "--format", "csv"],
    ] {
        let (ok, out, err) = cli(&show.server, &token, &args).unwrap();
        assert!(ok, "{args:?}: {err}");
        seen.push_str(&out);
    }
    let ratings = show
        .admin
        .ratings()
        .get_ratings(pb::GetRatingsRequest {
            conference_id: CONFERENCE.into(),
            session_id: session.into(),
        })
        .await
        .unwrap()
        .into_inner();
    seen.push_str(&format!("{ratings:?}"));
    for event in feed(&show.admin).await {
        seen.push_str(&String::from_utf8_lossy(&event.payload));
    }
    let summary = ratings.sessions[0].summary.clone().unwrap();
    let votes = listed.questions.iter().map(|q| q.votes).sum();
    (
        seen,
        (listed.questions.len(), votes, summary.count, summary.mean),
    )
}

#[tokio::test]
async fn an_erased_attendee_is_found_nowhere_while_every_count_stays() {
    let mut show = Show::start()
        .session(Talk::new(
            "Open budgets",
            "2024-11-14T02:00:00Z",
            "2024-11-14T03:00:00Z",
        ))
        .await
        .unwrap();
    let session = show.session_id().to_owned();
    let leaver = show.join(NAME).await.unwrap();
    let keeper = show.join("Dara Keeps").await.unwrap();
    let admin = show.admin.clone();
    admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: session.clone(),
        })
        .await
        .unwrap();
    admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: session.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: false,
            }),
        })
        .await
        .unwrap();
    let ask = |text: &str, anonymous| pb::AskQuestionRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: session.clone(),
        text: text.into(),
        anonymous,
    };
    let mut asked = Vec::new();
    for (client, text, anonymous) in [
        (&leaver.client, QUESTION, false),
        (&leaver.client, ANONYMOUS, true),
        (&keeper.client, "Will the slides be online?", false),
    ] {
        let answer = client.questions().ask_question(ask(text, anonymous)).await;
        asked.push(answer.unwrap().into_inner().question.unwrap().id);
    }
    keeper
        .client
        .questions()
        .upvote_question(pb::UpvoteQuestionRequest {
            conference_id: CONFERENCE.into(),
            question_id: asked[0].clone(),
        })
        .await
        .unwrap();
    for (client, rating, comment) in [(&leaver.client, 4, COMMENT), (&keeper.client, 5, "Great")] {
        client
            .ratings()
            .rate_session(pb::RateSessionRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                session_id: session.clone(),
                rating,
                comment: comment.into(),
            })
            .await
            .unwrap();
    }
    let id = id_of(&leaver.client).await;

    // What podium holds about them, as they may ask for it themselves, and nobody else's.
    let mine = export(&leaver.client, attendee(&id)).await.unwrap();
    assert_eq!(mine.display_name, NAME);
    let texts: Vec<&str> = mine.questions.iter().map(|q| q.text.as_str()).collect();
    assert_eq!(texts, [QUESTION, ANONYMOUS]);
    assert_eq!(mine.questions[0].votes, 1);
    assert_eq!(mine.ratings[0].comment, COMMENT);
    let keeper_id = id_of(&keeper.client).await;
    for refused in [
        export(&leaver.client, attendee(&keeper_id))
            .await
            .unwrap_err(),
        erase(&leaver.client, attendee(&keeper_id))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    let (_, counts) = read_back(&show, &keeper.client, &session).await;
    assert_eq!(counts, (3, 1, 2, 4.5));
    let place = |e: &pb::Event| (e.position, e.id.clone(), e.r#type.clone());
    let positions: Vec<_> = feed(&admin).await.iter().map(place).collect();

    // The organiser erases them with the CLI.
    let token = show.server.admin_token().unwrap();
    let (ok, _, err) = cli(
        &show.server,
        &token,
        &["-c", CONFERENCE, "privacy", "erase", "--attendee", &id],
    )
    .unwrap();
    assert!(
        ok && err.contains(&format!("erased attendee {id}")),
        "{err}"
    );
    let signed_out = leaver.client.access().who_am_i(pb::WhoAmIRequest {}).await;
    assert_eq!(signed_out.unwrap_err().code(), Code::Unauthenticated);

    let secrets = [NAME, QUESTION, ANONYMOUS, COMMENT];
    let (seen, after) = read_back(&show, &keeper.client, &session).await;
    assert_forgotten(&secrets, "the answers after erasure", &seen);
    assert!(seen.contains("[erased]") && seen.contains("Will the slides be online?"));
    assert_eq!(
        after, counts,
        "questions, votes and ratings are all still counted"
    );
    let now: Vec<_> = feed(&admin).await.iter().map(place).collect();
    assert_eq!(
        now, positions,
        "every event is where it was, and the feed never shows an attendee's erasure"
    );
    let (ok, out, err) = cli(
        &show.server,
        &token,
        &[
            "-c",
            CONFERENCE,
            "privacy",
            "export",
            "--attendee",
            &id,
            "--json",
        ],
    )
    .unwrap();
    assert!(ok, "{err}");
    assert_forgotten(&secrets, "their own export", &out);
    let left: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(left["erased"], true, "{left}");
    assert_eq!(
        left["questions"].as_array().map(Vec::len),
        Some(2),
        "{left}"
    );

    // A retry answers as the first time.
    let again = erase(&admin, attendee(&id)).await.unwrap();
    let first = erase(&admin, attendee(&id)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        first.plain_events, 0,
        "nothing was ever stored in plain text"
    );

    // Nothing on disk, nor in a backup taken now, nor in what it restores.
    assert_files_forgotten(&secrets, &show.server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("after-erasure.podium-backup");
    let (ok, _, err) = cli(
        &show.server,
        &token,
        &["admin", "backup", "--out", file.to_str().unwrap()],
    )
    .unwrap();
    assert!(ok, "{err}");
    assert_files_forgotten(&secrets, scratch.path());
    let restored = scratch.path().join("restored");
    let (ok, out, err) = restore(&file, &restored);
    assert!(ok, "{out}{err}");
    assert_files_forgotten(&secrets, &restored);

    // And after a restart, from the log and the snapshots.
    show.restart().await.unwrap();
    let (seen, after) = read_back(&show, &keeper.client, &session).await;
    assert_forgotten(&secrets, "the answers after a restart", &seen);
    assert_eq!(after, counts);
    let fresh = show.join("Chanthou again").await.unwrap();
    assert_ne!(
        id_of(&fresh.client).await,
        id,
        "joining again makes a new attendee"
    );
}

#[tokio::test]
async fn an_erased_speaker_is_erased_on_the_agenda_the_feed_and_their_tokens() {
    let show = Show::start()
        .session(
            Talk::new(
                "Open data in New York",
                "2030-01-10T14:00:00Z",
                "2030-01-10T15:00:00Z",
            )
            .by(Speaker::Sarah),
        )
        .await
        .unwrap();
    let sarah = show.odc.speaker(Speaker::Sarah).clone();
    let other = show.odc.speaker(Speaker::Sokha).clone();
    show.token(pb::Role::Speaker, Some(Speaker::Sarah), &sarah.name)
        .await
        .unwrap();
    let token = show.server.admin_token().unwrap();
    let (ok, out, err) = cli(
        &show.server,
        &token,
        &[
            "-c",
            CONFERENCE,
            "privacy",
            "export",
            "--speaker",
            &sarah.id,
        ],
    )
    .unwrap();
    assert!(
        ok && out.contains(&sarah.name) && out.contains(&sarah.organisation),
        "{out}{err}"
    );

    let (ok, _, err) = cli(
        &show.server,
        &token,
        &["-c", CONFERENCE, "privacy", "erase", "--speaker", &sarah.id],
    )
    .unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &show.server,
        &token,
        &[
            "-c",
            CONFERENCE,
            "privacy",
            "erase",
            "--speaker",
            "spk-nobody",
        ],
    )
    .unwrap();
    assert!(!ok && err.contains("not found"), "{err}");

    let conference = show
        .admin
        .agenda()
        .get_conference(pb::GetConferenceRequest {
            conference_id: CONFERENCE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conference
        .unwrap();
    let names: Vec<(&str, &str)> = conference
        .speakers
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    assert!(
        names.contains(&(sarah.id.as_str(), "[erased]")),
        "{names:?}"
    );
    assert!(
        names.contains(&(other.id.as_str(), other.name.as_str())),
        "{names:?}"
    );
    let secrets = [sarah.name.as_str(), sarah.organisation.as_str()];
    let preflight = show.preflight().await.unwrap();
    let named: Vec<&str> = preflight
        .sessions
        .iter()
        .flat_map(|s| s.speakers.iter().map(|r| r.name.as_str()))
        .collect();
    assert_eq!(named, ["[erased]"], "{preflight:?}");
    let mut seen = format!("{conference:?}{preflight:?}");
    for args in [
        vec!["-c", CONFERENCE, "token", "list"],
        vec!["-c", CONFERENCE, "speaker", "list"],
    ] {
        let (ok, out, err) = cli(&show.server, &token, &args).unwrap();
        assert!(ok, "{args:?}: {err}");
        seen.push_str(&out);
    }
    let events = feed(&show.admin).await;
    let added: Vec<pb::SpeakerAdded> = events
        .iter()
        .filter(|e| e.r#type == "podium.v1.SpeakerAdded")
        .map(|e| prost::Message::decode(e.payload.as_slice()).unwrap())
        .collect();
    let erased = added.iter().find(|s| s.speaker_id == sarah.id).unwrap();
    assert_eq!(erased.name, "[erased]");
    assert!(
        erased
            .personal
            .as_ref()
            .is_some_and(|p| p.erased && p.ciphertext.is_empty())
    );
    let kept = added.iter().find(|s| s.speaker_id == other.id).unwrap();
    assert_eq!(kept.name, other.name, "the feed opens the others' names");
    for event in &events {
        seen.push_str(&String::from_utf8_lossy(&event.payload));
    }
    assert_forgotten(&secrets, "the agenda, tokens and feed", &seen);
}

#[tokio::test]
async fn events_from_before_sealing_read_as_erased_and_a_restore_drops_their_text() {
    // A log written by a podium that did not seal yet: a question in plain text.
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let old = "An old question, stored in plain text";
    {
        use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, SledEventLog, SledOptions};
        std::fs::create_dir(&data).unwrap();
        let log = SledEventLog::open(data.join("log"), SledOptions::default()).unwrap();
        let asked = pb::QuestionAsked {
            conference_id: CONFERENCE.into(),
            session_id: "ses-old".into(),
            question_id: "q-old".into(),
            author: "att-old".into(),
            author_name: "Vanna Oldname".into(),
            text: old.into(),
            state: pb::QuestionState::Published as i32,
            ..Default::default()
        };
        let event = NewEvent::new(uuid::Uuid::new_v4(), &asked);
        log.append(
            &format!("conference/{CONFERENCE}/question/q-old"),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap();
        log.close().unwrap();
    }
    let dir = data.clone();
    let server = tokio::task::spawn_blocking(move || Podiumd::start_in(&dir, &[]))
        .await
        .unwrap()
        .unwrap();
    let admin = server.admin().await.unwrap();
    let erased = erase(&admin, attendee("att-old")).await.unwrap();
    assert_eq!(erased.plain_events, 1, "the answer counts the plain event");
    let left = export(&admin, attendee("att-old")).await.unwrap();
    assert!(left.erased);
    assert_eq!(left.questions[0].text, "[erased]");
    assert_eq!(left.display_name, "[erased]");
    // As the README says: the plain bytes stay in the log's files until a backup is restored.
    let in_log = files(&data.join("log"))
        .iter()
        .any(|(_, bytes)| holds(bytes, old));
    assert!(in_log, "the plain event is still in the original log");

    // A backup taken now leaves their text out, and so does the log it restores.
    let token = server.admin_token().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("before-sealing.podium-backup");
    let (ok, _, err) = cli(
        &server,
        &token,
        &["admin", "backup", "--out", file.to_str().unwrap()],
    )
    .unwrap();
    assert!(ok, "{err}");
    assert_files_forgotten(&[old, "Vanna Oldname"], elsewhere.path());
    let restored = elsewhere.path().join("restored");
    let (ok, out, err) = restore(&file, &restored);
    assert!(ok, "{out}{err}");
    assert_files_forgotten(&[old, "Vanna Oldname"], &restored);
}
