//! Who calls each RPC and what each caller must get.

use super::*;

// ---- Callers and what each must get ---------------------------------------------------------

/// What a call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// A missing or bad token where one is needed: UNAUTHENTICATED.
    Unauthenticated,
    /// Past authentication and authorisation: anything but UNAUTHENTICATED or
    /// PERMISSION_DENIED (the request is minimal, so INVALID_ARGUMENT, NOT_FOUND,
    /// FAILED_PRECONDITION are fine), and never INTERNAL, UNKNOWN, UNIMPLEMENTED (described
    /// but not served) or no answer.
    Let,
    /// A role the table does not allow: PERMISSION_DENIED (or UNAUTHENTICATED).
    Refuse,
    /// A token of another conference, for a request that names this one: PERMISSION_DENIED or
    /// NOT_FOUND, exactly as for a conference that does not exist.
    Foreign,
    /// A token of another conference, for a request that names no conference (it asks about
    /// the caller): it may succeed, but nothing of this conference may be in the answer.
    ForeignOwnScope,
}

#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) label: String,
    /// The `authorization` header, if any.
    pub(super) authorization: Option<String>,
    pub(super) expect: Expect,
}

pub(super) struct Callers {
    /// Bad credentials: (label, authorization header).
    pub(super) bad: Vec<(&'static str, Option<String>)>,
    /// Valid tokens of the conference: (label, role, token, speaks in the session).
    pub(super) roles: Vec<(String, Role, String, bool)>,
    /// Valid tokens of the other conference: (label, token).
    pub(super) foreign: Vec<(String, String)>,
}

impl Callers {
    pub(super) fn new(server: &Podiumd, fixture: &Fixture) -> Self {
        let keys = keys(server);
        let hour = Duration::from_secs(3600);
        let issue = |p: Principal| keys.issue(&p, hour).unwrap();
        let bearer = |token: &str| Some(format!("Bearer {token}"));

        let expired = keys
            .issue_at(
                &Principal::admin(),
                SystemTime::now() - 2 * hour,
                Duration::from_secs(60),
            )
            .unwrap();
        let organiser = issue(principal(Organiser, Some(CONFERENCE), None));
        let mut parts: Vec<String> = organiser.split('.').map(str::to_owned).collect();
        let middle = parts[2].len() / 2;
        let flipped = if parts[2].as_bytes()[middle] == b'A' {
            "B"
        } else {
            "A"
        };
        parts[2].replace_range(middle..=middle, flipped);
        let bad_signature = parts.join(".");
        // An attendee who rewrites their token's role to admin, keeping the signature.
        let attendee = issue(principal(Attendee, Some(CONFERENCE), None));
        let mut parts: Vec<String> = attendee.split('.').map(str::to_owned).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        parts[1] = b64.encode(serde_json::to_vec(&claims).unwrap());
        let escalated = parts.join(".");
        let forged = TokenKeys::from_secret(&[0x5a; 32], None)
            .issue(&Principal::admin(), hour)
            .unwrap();

        let bad = vec![
            ("no-token", None),
            ("basic-scheme", Some("Basic YWRtaW46YWRtaW4=".to_owned())),
            ("malformed", bearer("not-a-token")),
            ("expired-admin", bearer(&expired)),
            ("bad-signature", bearer(&bad_signature)),
            ("role-rewritten", bearer(&escalated)),
            ("forged-admin", bearer(&forged)),
        ];

        let admin = server.admin_token().unwrap();
        let mut roles = vec![("admin".to_owned(), Admin, admin, true)];
        for role in [Organiser, Moderator, Integration, Attendee] {
            roles.push((
                role.to_string(),
                role,
                issue(principal(role, Some(CONFERENCE), None)),
                true,
            ));
        }
        roles.push((
            "speaker".into(),
            Speaker,
            issue(principal(
                Speaker,
                Some(CONFERENCE),
                Some(&fixture.odc.speaker),
            )),
            true,
        ));
        roles.push((
            "other-session-speaker".into(),
            Speaker,
            issue(principal(
                Speaker,
                Some(CONFERENCE),
                Some(&fixture.bystander),
            )),
            false,
        ));

        let mut foreign = Vec::new();
        for role in [Organiser, Moderator, Integration, Attendee] {
            foreign.push((
                format!("foreign-{role}"),
                issue(principal(role, Some(OTHER_CONFERENCE), None)),
            ));
        }
        foreign.push((
            "foreign-speaker".into(),
            issue(principal(
                Speaker,
                Some(OTHER_CONFERENCE),
                Some(&fixture.other_speaker),
            )),
        ));
        Self {
            bad,
            roles,
            foreign,
        }
    }

    /// Every case for `rpc`, with what it must get.
    pub(super) fn cases(&self, rpc: &Rpc, allowed: Allowed) -> Vec<Case> {
        let mut cases = Vec::new();
        for (label, authorization) in &self.bad {
            let expect = match (authorization, allowed) {
                (None, Public) => Expect::Let,
                _ => Expect::Unauthenticated,
            };
            cases.push(Case {
                label: (*label).to_owned(),
                authorization: authorization.clone(),
                expect,
            });
        }
        for (label, role, token, in_session) in &self.roles {
            let expect = match allowed {
                Public => Expect::Let,
                Roles(roles)
                    if roles.contains(role)
                        && (*in_session || !OWN_SESSION_ONLY.contains(&rpc.name.as_str())) =>
                {
                    Expect::Let
                }
                Roles(_) => Expect::Refuse,
            };
            cases.push(Case {
                label: label.clone(),
                authorization: Some(format!("Bearer {token}")),
                expect,
            });
        }
        if let Roles(_) = allowed {
            for (label, token) in &self.foreign {
                cases.push(Case {
                    label: label.clone(),
                    authorization: Some(format!("Bearer {token}")),
                    expect: if rpc.names_conference {
                        Expect::Foreign
                    } else {
                        Expect::ForeignOwnScope
                    },
                });
            }
        }
        cases
    }
}

/// Calls `rpc` as `case` says and checks the answer; returns the answer for the matrix
/// print-out and what was wrong with it.
pub(super) async fn run(
    channel: &Channel,
    fixture: &Fixture,
    rpc: &Rpc,
    template: &str,
    case: &Case,
) -> (String, Vec<String>) {
    let outcome = call(channel, rpc, template, &fixture.odc, case).await;
    let mut problems = Vec::new();
    let mut fail = |why: &str| {
        problems.push(format!(
            "{} as {}: {why}; got {:?} {:?}",
            rpc.name, case.label, outcome.code, outcome.message
        ))
    };
    match case.expect {
        Expect::Unauthenticated if outcome.code != Code::Unauthenticated => {
            fail("a missing or bad token must be UNAUTHENTICATED")
        }
        Expect::Let
            if matches!(
                outcome.code,
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Internal
                    | Code::Unknown
                    | Code::Unimplemented
                    | Code::DeadlineExceeded
            ) =>
        {
            fail("the table lets this caller in, but the call was refused or failed")
        }
        Expect::Refuse
            if !matches!(outcome.code, Code::PermissionDenied | Code::Unauthenticated) =>
        {
            fail("the table does not let this role in: PERMISSION_DENIED expected")
        }
        Expect::Foreign => {
            if !matches!(outcome.code, Code::PermissionDenied | Code::NotFound) {
                fail("a token of another conference must get PERMISSION_DENIED or NOT_FOUND");
            } else {
                let nowhere = call(channel, rpc, template, &fixture.nowhere, case).await;
                let message = nowhere
                    .message
                    .replace(&fixture.nowhere.conference, &fixture.odc.conference);
                if (nowhere.code, message.as_str()) != (outcome.code, outcome.message.as_str()) {
                    fail(&format!(
                        "the answer differs from the one for a conference that does not \
                         exist ({:?} {:?}), which tells the caller it exists",
                        nowhere.code, nowhere.message
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(bytes) = &outcome.first {
        if case.expect != Expect::Let
            && let Some(secret) = fixture
                .odc
                .secrets()
                .into_iter()
                .find(|s| podium_e2e::holds(bytes, s))
        {
            fail(&format!("the answer carries {secret:?}"));
        }
        if let Err(error) = DynamicMessage::decode(rpc.output.clone(), bytes.as_slice()) {
            fail(&format!(
                "the answer is not a {}: {error}",
                rpc.output.full_name()
            ));
        }
    }
    (format!("{:?}", outcome.code), problems)
}
