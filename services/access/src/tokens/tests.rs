use super::*;

fn organiser() -> Principal {
    Principal {
        id: "tok-1".into(),
        name: "Sophea".into(),
        role: Role::Organiser,
        conference_id: Some("odc2024".into()),
        speaker_id: None,
        expires_at: None,
        token_id: None,
    }
}

#[test]
fn issued_token_verifies_to_the_same_principal() {
    let keys = TokenKeys::from_secret(&[7u8; 32], None);
    let token = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
    let back = keys.verify(&token).unwrap();
    assert_eq!(back.id, "tok-1");
    assert_eq!(back.role, Role::Organiser);
    assert_eq!(back.conference_id.as_deref(), Some("odc2024"));
}

#[test]
fn tampered_expired_and_foreign_tokens_are_rejected() {
    let keys = TokenKeys::from_secret(&[7u8; 32], None);
    let token = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let err = keys
        .verify(&String::from_utf8(tampered).unwrap())
        .unwrap_err();
    assert!(matches!(err, AccessError::Unauthenticated(_)));

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = keys
        .issue_at(&organiser(), an_hour_ago, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        keys.verify(&expired).unwrap_err(),
        AccessError::Unauthenticated("token has expired".into())
    );

    let other = TokenKeys::from_secret(&[8u8; 32], None);
    assert_eq!(
        other.verify(&token).unwrap_err(),
        AccessError::Unauthenticated("token signature is invalid".into())
    );
    assert_eq!(
        keys.verify("not a token").unwrap_err(),
        AccessError::Unauthenticated("token is malformed".into())
    );
}

#[test]
fn configured_admin_secret_is_admin() {
    let keys = TokenKeys::from_secret(&[7u8; 32], Some("s3cret-admin".into()));
    assert_eq!(keys.verify("s3cret-admin").unwrap().role, Role::Admin);
    assert!(keys.verify("s3cret-admix").is_err());
}

#[test]
fn bootstrap_writes_a_private_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = TokenKeys::bootstrap(dir.path(), None).unwrap();
    let path = first.admin_token_file.clone().unwrap();
    let token = fs::read_to_string(&path).unwrap();
    assert_eq!(first.keys.verify(token.trim()).unwrap().role, Role::Admin);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let second = TokenKeys::bootstrap(dir.path(), None).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        token,
        "a valid token is kept"
    );
    assert!(second.keys.verify(token.trim()).is_ok());
}

#[test]
fn the_key_files_a_backup_takes_are_the_ones_in_use_and_start_a_restored_node() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TokenKeys::bootstrap(dir.path(), None).unwrap().keys;
    let old = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
    for rotated in [false, true] {
        if rotated {
            keys.rotate(Duration::from_secs(3600), None).unwrap();
        }
        let files = keys.key_files();
        let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [crate::keyring::KEY_FILE, crate::keyring::RETIRED_FILE]
        );
        if rotated {
            // What the rotation wrote, byte for byte.
            for (name, contents) in &files {
                assert_eq!(
                    &fs::read(dir.path().join(name)).unwrap(),
                    contents,
                    "{name}"
                );
            }
        }
        // Written where a restore writes them, they start a node that verifies the tokens.
        let restored = tempfile::tempdir().unwrap();
        for (name, contents) in &files {
            fs::write(restored.path().join(name), contents).unwrap();
        }
        let node = TokenKeys::bootstrap(restored.path(), None).unwrap().keys;
        assert!(node.verify(&old).is_ok(), "rotated: {rotated}");
    }
}

#[test]
fn a_rotated_key_verifies_through_its_grace_and_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TokenKeys::bootstrap(dir.path(), None).unwrap().keys;
    let admin_file = dir.path().join(ADMIN_TOKEN_FILE);
    let old_admin = fs::read_to_string(&admin_file).unwrap();
    let old = keys.issue(&organiser(), DEFAULT_TTL).unwrap();

    let (rotation, _) = keys.rotate(Duration::from_secs(3600), None).unwrap();
    assert_ne!(rotation.key_id, rotation.retired_key_id);
    let new = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
    let now = SystemTime::now();
    assert!(keys.verify_at(&old, now).is_ok(), "within the grace period");
    assert!(keys.verify_at(&new, now).is_ok());
    let after = rotation.retired_until + Duration::from_secs(1);
    assert_eq!(
        keys.verify_at(&old, after).unwrap_err(),
        AccessError::Unauthenticated(
            "token was signed by a key that was rotated out, and its grace period has ended".into()
        )
    );
    assert!(keys.verify_at(&new, after).is_ok());

    // The admin token file was signed again with the new key, and the keys outlive a
    // restart.
    let new_admin = fs::read_to_string(&admin_file).unwrap();
    assert_ne!(new_admin, old_admin);
    let restarted = TokenKeys::bootstrap(dir.path(), None).unwrap();
    assert_eq!(
        fs::read_to_string(&admin_file).unwrap(),
        new_admin,
        "a valid token is kept"
    );
    assert!(restarted.keys.verify(&old).is_ok());
    assert!(restarted.keys.verify(new_admin.trim()).is_ok());

    // No grace: the old key's tokens end at once.
    keys.rotate(Duration::ZERO, None).unwrap();
    assert!(keys.verify(&new).is_err());
}

#[test]
fn tokens_without_ids_or_key_ids_still_verify() {
    // A token from before tokens had ids: no "kid" header, no "jti" claim.
    let keys = TokenKeys::from_secret(&[7u8; 32], None);
    let claims = Claims {
        iss: ISSUER.into(),
        sub: "org-1".into(),
        name: "Sophea".into(),
        role: "organiser".into(),
        conf: Some("odc2024".into()),
        spk: None,
        jti: None,
        iat: 0,
        exp: u64::MAX / 2,
    };
    let ring = keys.ring.read().unwrap();
    let legacy = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &ring.current.encoding,
    )
    .unwrap();
    drop(ring);
    let principal = keys.verify(&legacy).unwrap();
    assert_eq!(principal.id, "org-1");
    assert_eq!(principal.token_id, None);
    let fresh = keys.verify(&keys.issue(&organiser(), DEFAULT_TTL).unwrap());
    assert!(fresh.unwrap().token_id.unwrap().starts_with("tok-"));
}

#[test]
fn a_rotation_that_cannot_write_its_keys_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = TokenKeys::bootstrap(&data, None).unwrap().keys;
    let token = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
    fs::remove_dir_all(&data).unwrap();
    assert!(keys.rotate(Duration::ZERO, None).is_err());
    assert!(
        keys.verify(&token).is_ok(),
        "the old key is still the current one"
    );
    assert!(keys.signed_by_current_key(&keys.issue(&organiser(), DEFAULT_TTL).unwrap()));
    assert!(keys.signed_by_current_key(&token));
}

#[test]
fn an_attendee_token_without_an_id_is_known_by_its_attendee_id() {
    let keys = TokenKeys::from_secret(&[7u8; 32], None);
    let claims = Claims {
        iss: ISSUER.into(),
        sub: "att-0123456789ab".into(),
        name: "Dara".into(),
        role: "attendee".into(),
        conf: Some("odc2024".into()),
        spk: None,
        jti: None,
        iat: 0,
        exp: u64::MAX / 2,
    };
    let legacy = {
        let ring = keys.ring.read().unwrap();
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &ring.current.encoding,
        )
        .unwrap()
    };
    let principal = keys.verify(&legacy).unwrap();
    assert_eq!(principal.token_id.as_deref(), Some("att-0123456789ab"));
}

#[test]
fn a_token_is_valid_until_its_expiry_or_its_keys_grace_whichever_is_first() {
    let keys = TokenKeys::from_secret(&[7u8; 32], None);
    let token = keys.issue(&organiser(), Duration::from_secs(7200)).unwrap();
    let expiry = keys.verify(&token).unwrap().expires_at.unwrap();
    // Expiry is checked in whole seconds: the token still verifies during its last one.
    assert_eq!(
        keys.valid_until(&token),
        Some(expiry + Duration::from_secs(1))
    );
    let (rotation, _) = keys.rotate(Duration::from_secs(60), None).unwrap();
    assert_eq!(keys.valid_until(&token), Some(rotation.retired_until));
    assert_eq!(keys.valid_until("not a token"), None);
}
