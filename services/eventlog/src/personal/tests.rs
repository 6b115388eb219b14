use super::*;

fn keys(dir: &tempfile::TempDir) -> PersonalKeys {
    PersonalKeys::load(&dir.path().join(KEYS_FILE)).unwrap()
}

fn question(author: &str, text: &str, anonymous: bool) -> pb::QuestionAsked {
    pb::QuestionAsked {
        conference_id: "odc".into(),
        question_id: format!("q-{author}"),
        author: author.into(),
        author_name: if anonymous {
            String::new()
        } else {
            "Sokha Chan".into()
        },
        anonymous,
        text: text.into(),
        ..Default::default()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_sealed_event_holds_no_plain_text_and_opens_to_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&dir);
    let original = question("att-1", "Where is the open budget data?", false);
    let event = NewEvent::new(uuid::Uuid::new_v4(), &original);
    let sealed = keys.seal_event(event).unwrap();
    assert!(!contains(&sealed.payload, "open budget"));
    assert!(!contains(&sealed.payload, "Sokha"));

    let recorded = RecordedEvent {
        id: sealed.id,
        stream: "s".into(),
        stream_version: 0,
        position: 0,
        event_type: sealed.event_type.clone(),
        payload: sealed.payload.clone(),
        recorded_at: std::time::SystemTime::UNIX_EPOCH,
    };
    let opened = keys.open_event(&recorded).unwrap();
    let opened: pb::QuestionAsked = opened.decode().unwrap();
    assert_eq!(opened, original, "opened, the event is what was written");
}

#[test]
fn erasing_a_person_leaves_their_events_readable_only_as_erased() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&dir);
    let mut named = question("att-1", "A named question", false);
    let mut anonymous = question("att-1", "An anonymous question", true);
    let mut other = question("att-2", "Someone else's question", false);
    for q in [&mut named, &mut anonymous, &mut other] {
        keys.seal(q).unwrap();
    }
    // Written before sealing existed: plain.
    let mut plain = question("att-1", "An old plain question", false);

    assert!(
        keys.erase(&subject(PersonKind::Attendee, "odc", "att-1"))
            .unwrap()
    );
    let keys = {
        drop(keys);
        self::keys(&dir)
    };
    assert_eq!(keys.open(&mut named), Opened::Erased);
    assert_eq!(
        (named.text.as_str(), named.author_name.as_str()),
        (ERASED, ERASED)
    );
    assert_eq!(keys.open(&mut anonymous), Opened::Erased);
    assert_eq!(
        (anonymous.text.as_str(), anonymous.author_name.as_str()),
        (ERASED, ""),
        "an anonymous question stays nameless"
    );
    assert_eq!(keys.open(&mut plain), Opened::Erased);
    assert_eq!(plain.text, ERASED);
    assert!(plain.personal.as_ref().is_some_and(|s| s.erased));
    assert_eq!(keys.open(&mut other), Opened::Sealed);
    assert_eq!(other.text, "Someone else's question");

    let mut again = question("att-1", "After erasure", false);
    assert!(matches!(
        keys.seal(&mut again),
        Err(EventLogError::Erased(_))
    ));
}

#[test]
fn a_seal_moved_to_another_event_type_or_person_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&dir);
    let mut q = question("att-1", "Mine", false);
    keys.seal(&mut q).unwrap();
    let mut rating = pb::SessionRated {
        conference_id: "odc".into(),
        rater: "att-1".into(),
        personal: q.personal.clone(),
        ..Default::default()
    };
    assert_eq!(keys.open(&mut rating), Opened::Unreadable);
    assert_eq!(rating.comment, ERASED);
    let mut someone_else = q.clone();
    someone_else.author = "att-2".into();
    assert_eq!(keys.open(&mut someone_else), Opened::Unreadable);
    let mut tampered = q.clone();
    if let Some(sealed) = tampered.personal.as_mut() {
        sealed.ciphertext[0] ^= 1;
    }
    assert_eq!(keys.open(&mut tampered), Opened::Unreadable);
    assert_eq!(keys.open(&mut q), Opened::Sealed);
}

#[test]
fn events_without_personal_data_pass_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&dir);
    let room = NewEvent::new(
        uuid::Uuid::new_v4(),
        &pb::RoomAdded {
            conference_id: "odc".into(),
            room_id: "main".into(),
            name: "Main hall".into(),
            capacity: 300,
        },
    );
    let payload = room.payload.clone();
    assert_eq!(keys.seal_event(room).unwrap().payload, payload);
    let mut no_comment = pb::SessionRated {
        conference_id: "odc".into(),
        rater: "att-1".into(),
        rating: 4,
        ..Default::default()
    };
    keys.seal(&mut no_comment).unwrap();
    assert!(
        no_comment.personal.is_none(),
        "nothing personal, nothing sealed"
    );
    assert_eq!(keys.store().counts(), (0, 0), "and no key made for it");
    assert!(is_personal("podium.v1.TokenIssued"));
    assert!(!is_personal("podium.v1.RoomAdded"));
}

#[test]
fn where_sealing_began_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(sealed_from(dir.path(), 42).unwrap(), 42);
    assert_eq!(
        sealed_from(dir.path(), 1000).unwrap(),
        42,
        "read, not written again"
    );
    std::fs::write(dir.path().join(SEALED_FROM_FILE), "many").unwrap();
    assert!(
        sealed_from(dir.path(), 7).is_err(),
        "a damaged record is refused, not guessed"
    );
}
