//! What a browser is sent, checked byte for byte over plain HTTP/1.1.

use podium_e2e::{
    NewPoll, Show, Talk, from_now,
    http::{self, form},
};

use super::{ballots, show};

#[tokio::test]
async fn pages_send_security_headers_and_refuse_forged_and_broken_requests() {
    let show = show().await;
    let addr = show.server.addr.clone();
    let session_name = show.server.session_cookie();

    // Every page: a strict policy, no sniffing, no referrer, no framing, no caching.
    let home = http::request(&addr, "GET", "/", &[], "").await.unwrap();
    assert_eq!(home.status, 200);
    let csp = home.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(home.header("referrer-policy"), Some("same-origin"));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    let csrf_cookie = home
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("podium_csrf="))
        .unwrap();
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = home.cookie("podium_csrf").unwrap();
    let cookie = format!("podium_csrf={csrf}");
    let code = show.odc.join_code().to_owned();

    // A join without the form's CSRF value, or from another site, does nothing.
    let no_token = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie)],
        &form(&[("code", &code)]),
    )
    .await
    .unwrap();
    assert_eq!(no_token.status, 403);
    assert!(
        no_token.body.contains("This form has expired"),
        "{}",
        no_token.body
    );
    assert_eq!(no_token.cookie(&session_name), None);
    let cross_site = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        &form(&[("csrf", &csrf), ("code", &code)]),
    )
    .await
    .unwrap();
    assert_eq!(cross_site.status, 403);
    assert!(
        cross_site
            .body
            .contains("This form was sent from another website"),
        "{}",
        cross_site.body
    );
    assert_eq!(cross_site.cookie(&session_name), None);

    // A wrong code: a page in the reader's language, nothing stored.
    let wrong = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("accept-language", "km-KH, en;q=0.5")],
        &form(&[("csrf", &csrf), ("code", "NOPE-NOPE")]),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 404);
    assert!(
        wrong.body.contains("គ្មានសន្និសីទណាមួយមានលេខកូដនេះទេ"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("lang=\"km\""));

    // An oversized form: refused with a page that says so.
    let huge = "x".repeat(podium_web::MAX_FORM_BYTES + 1);
    let oversized = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie)],
        &form(&[("csrf", &csrf), ("code", &huge)]),
    )
    .await
    .unwrap();
    assert_eq!(oversized.status, 413);
    assert!(
        oversized.body.contains("What you sent is too long."),
        "{}",
        oversized.body
    );

    // The right code: an HttpOnly, Strict session cookie and a redirect to a token-free URL.
    let joined = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &cookie), ("origin", &format!("http://{addr}"))],
        &form(&[("csrf", &csrf), ("code", &code), ("name", "Dara")]),
    )
    .await
    .unwrap();
    assert_eq!(joined.status, 303, "{}", joined.body);
    assert_eq!(joined.header("location"), Some("/"));
    let session = joined.set_cookie(&session_name).unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let token = joined.cookie(&session_name).unwrap();

    // A ballot with the cookie but without the CSRF value is not counted.
    let signed_in = format!("{cookie}; {session_name}={token}");
    let poll = &show.polls[0];
    let forged = http::request(
        &addr,
        "POST",
        &format!("/poll/{}/ballot", poll.id),
        &[("cookie", &signed_in)],
        &form(&[("option", &poll.options[0].id)]),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 403);
    // A rating that is not a number is refused, not read as 0: for a session's rating as for
    // a rating poll's ballot.
    let origin = format!("http://{addr}");
    let headers = [("cookie", signed_in.as_str()), ("origin", origin.as_str())];
    for path in [
        format!("/session/{}/rating", show.session_id()),
        format!("/poll/{}/ballot", show.polls[0].id),
    ] {
        let body = form(&[("csrf", &csrf), ("rating", "five")]);
        let refused = http::request(&addr, "POST", &path, &headers, &body)
            .await
            .unwrap();
        assert_eq!(refused.status, 422, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("is not a whole number"),
            "{}",
            refused.body
        );
    }
    assert_eq!(ballots(&show, poll).await, 0, "nothing was counted");
    // A tampered session cookie: treated as signed out, and cleared.
    let tampered = http::request(
        &addr,
        "GET",
        "/",
        &[("cookie", &format!("{cookie}; {session_name}={token}x"))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(tampered.status, 401);
    assert!(
        tampered.body.contains("Your sign-in has expired"),
        "{}",
        tampered.body
    );
    assert!(
        tampered
            .cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{session_name}=;"))),
        "{:?}",
        tampered.cookies()
    );
    assert_eq!(ballots(&show, poll).await, 0, "nothing forged was stored");

    // Assets: content-hashed names, a year's cache, compressed on request.
    let css = home
        .body
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.ends_with(".css")))
        .unwrap()
        .to_owned();
    let asset = http::request(&addr, "GET", &css, &[("accept-encoding", "gzip")], "")
        .await
        .unwrap();
    assert_eq!(asset.status, 200);
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(asset.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn the_attendee_page_first_load_is_under_60_kb_over_the_wire() {
    let show = show().await;
    let addr = show.server.addr.clone();
    let session_name = show.server.session_cookie();
    let start = http::request(&addr, "GET", "/", &[], "").await.unwrap();
    let csrf = start.cookie("podium_csrf").unwrap();
    let code = show.odc.join_code().to_owned();
    let joined = http::request(
        &addr,
        "POST",
        "/join",
        &[("cookie", &format!("podium_csrf={csrf}"))],
        &form(&[("csrf", &csrf), ("code", &code), ("name", "Dara")]),
    )
    .await
    .unwrap();
    let token = joined.cookie(&session_name).unwrap();
    let cookie = format!("podium_csrf={csrf}; {session_name}={token}");
    // The page with five open polls, then what it links: stylesheet, script and icon.
    let compressed = [("cookie", cookie.as_str()), ("accept-encoding", "br, gzip")];
    let page = http::request(&addr, "GET", "/", &compressed, "")
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let mut total = page.wire_bytes;
    let plain = http::request(&addr, "GET", "/", &[("cookie", &cookie)], "")
        .await
        .unwrap();
    let linked: Vec<String> = plain
        .body
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(linked.len(), 3, "{linked:?}");
    for asset in &linked {
        let reply = http::request(&addr, "GET", asset, &compressed, "")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{asset}");
        total += reply.wire_bytes;
    }
    println!("attendee page, first load over the wire: {total} bytes");
    assert!(total < 60 * 1024, "first load is {total} bytes");
}

#[tokio::test]
async fn a_browser_calls_the_api_with_grpc_web_over_http_1_1_on_the_same_port() {
    let show = show().await;
    let token = show.server.admin_token().unwrap();
    // Diagnostics/Ping { seq: 7 }: field 1, varint 7, in one gRPC-Web data frame.
    let message = [0x08, 0x07];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let bearer = format!("Bearer {token}");
    let reply = http::request_bytes(
        &show.server.addr,
        "POST",
        "/podium.v1.Diagnostics/Ping",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &bearer),
        ],
        &frame,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/grpc-web+proto")
    );
    assert!(reply.body.contains("grpc-status:0"), "{:?}", reply.body);
    // Without a token: the same refusal as over gRPC, in the trailers.
    let refused = http::request_bytes(
        &show.server.addr,
        "POST",
        "/podium.v1.Diagnostics/Ping",
        &[("content-type", "application/grpc-web+proto")],
        &frame,
    )
    .await
    .unwrap();
    assert!(
        refused.body.contains("grpc-status:16") || refused.header("grpc-status") == Some("16"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn links_sign_in_only_the_role_their_page_needs_and_confirmations_name_real_sessions() {
    let show = show().await;
    let addr = show.server.addr.clone();
    let session_name = show.server.session_cookie();
    let attendee = show.join("Dara").await.unwrap();
    let admin = show.server.admin_token().unwrap();
    let moderator = show
        .token(podium_client::pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    // An attendee's token in a console link, or the admin's secret in a projector link, signs
    // nobody in.
    for path in [
        format!("/m/?token={}", attendee.token),
        format!(
            "/p/{}/{}?token={admin}",
            podium_e2e::CONFERENCE,
            show.odc.hall.id
        ),
        format!("/s/?token={moderator}"),
    ] {
        let reply = http::request(&addr, "GET", &path, &[], "").await.unwrap();
        assert_eq!(reply.status, 403, "{path}");
        assert_eq!(reply.cookie(&session_name), None, "{path}");
    }
    // The right role: a cookie that ends with the token, not later.
    let console = http::request(&addr, "GET", &format!("/m/?token={moderator}"), &[], "")
        .await
        .unwrap();
    assert_eq!(console.status, 200);
    let cookie = console.set_cookie(&session_name).unwrap().to_owned();
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(max_age <= 30 * 24 * 3600, "{cookie}");
    // A confirmation page for a path that is not a session of the board is refused, so its
    // button can never be aimed at another action.
    let signed_in = format!("{session_name}={moderator}");
    let crafted = http::request(
        &addr,
        "GET",
        &format!(
            "/m/confirm/start/..%2F..%2Fpolls%2F{}%2Fclose",
            show.polls[0].id
        ),
        &[("cookie", &signed_in)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(crafted.status, 404, "{}", crafted.body);
    let real = http::request(
        &addr,
        "GET",
        &format!("/m/confirm/start/{}", show.session_id()),
        &[("cookie", &signed_in)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(real.status, 200, "{}", real.body);

    // Its button, pressed twice (a double tap, or sent again after the venue's Wi-Fi lost the
    // answer), starts the session once and says "done" both times, not "already live".
    let hidden = |name: &str| http::field(&real.body, name).unwrap();
    let (csrf, request_id) = (hidden("csrf"), hidden("request_id"));
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    let cookies = format!("{signed_in}; podium_csrf={csrf}");
    let press = || {
        let body = form(&[("csrf", &csrf), ("request_id", &request_id)]);
        let (addr, cookies, path) = (
            addr.clone(),
            cookies.clone(),
            format!("/m/stage/start/{}", show.session_id()),
        );
        async move {
            http::request(&addr, "POST", &path, &[("cookie", &cookies)], &body)
                .await
                .unwrap()
        }
    };
    for press in [press().await, press().await] {
        assert_eq!(press.status, 303, "{}", press.body);
        assert_eq!(press.header("location"), Some("/m/?done=ok"));
    }
    // A new confirmation is a new command: the session is live already.
    let other = http::request(
        &addr,
        "POST",
        &format!("/m/stage/start/{}", show.session_id()),
        &[("cookie", &cookies)],
        &form(&[
            ("csrf", &csrf),
            ("request_id", &uuid::Uuid::now_v7().to_string()),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 409, "{}", other.body);
}

#[tokio::test]
async fn one_sign_in_holds_at_most_its_share_of_live_pages_and_a_new_one_ends_the_oldest() {
    let show = Show::start()
        .args(&["--max-page-streams", "2"])
        .poll(NewPoll::single_choice(&["Budgets", "Land"]).question("Which data first?"))
        .await
        .unwrap();
    let addr = show.server.addr.clone();
    let session_name = show.server.session_cookie();
    let poll = &show.polls[0];
    let path = format!("/live/results?poll={}", poll.id);
    let open = |cookie: String| {
        let (addr, path) = (addr.clone(), path.clone());
        async move {
            let (status, stream) = http::open_stream(&addr, &path, &[("cookie", &cookie)])
                .await
                .unwrap();
            assert_eq!(status, 200);
            stream
        }
    };
    let dara = show.join("Dara").await.unwrap();
    let dara_pages = format!("{session_name}={}; podium_lang=en", dara.token);
    let sokha = show.join("Sokha").await.unwrap();
    let mut first = open(dara_pages.clone()).await;
    let mut second = open(dara_pages.clone()).await;
    // Another sign-in's page is not counted with Dara's.
    let mut others = open(format!("{session_name}={}", sokha.token)).await;
    // A third page of the same sign-in is served, and ends its oldest (a phone gone from the
    // Wi-Fi holds its stream until TCP gives up; a page still open reconnects by itself).
    let mut third = open(dara_pages.clone()).await;
    http::stream_ends(&mut first).await.unwrap();
    let mut fourth = open(dara_pages.clone()).await;
    http::stream_ends(&mut second).await.unwrap();
    // The pages still open follow a ballot.
    let ballot = podium_e2e::ballot(poll, vec![poll.options[0].id.clone()]);
    sokha.polls().cast_ballot(ballot).await.unwrap();
    for stream in [&mut third, &mut fourth, &mut others] {
        http::read_until(stream, "1 ballot").await.unwrap();
    }
}

#[tokio::test]
async fn behind_a_proxy_the_projector_links_to_the_public_url() {
    let show = Show::start()
        .args(&["--public-url", "https://podium.example.org/"])
        .session(Talk::new(
            "Open contracting in Cambodia",
            &from_now(-10),
            &from_now(50),
        ))
        .await
        .unwrap();
    let moderator = show
        .token(podium_client::pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let path = format!("/p/{}/{}", podium_e2e::CONFERENCE, show.odc.hall.id);
    // podiumd serves plain HTTP to the proxy, yet its cookies are Secure: the browser is on
    // https.
    let link = format!("{path}?token={moderator}");
    let signed_in = http::request(&show.server.addr, "GET", &link, &[], "")
        .await
        .unwrap();
    // The public URL names no port: the plain cookie names, whatever the Host.
    let session_name = "podium_session";
    let session = signed_in.set_cookie(session_name).unwrap().to_owned();
    assert!(session.contains("Secure"), "{session}");
    let cookie = format!("{session_name}={moderator}");
    let page = http::request(&show.server.addr, "GET", &path, &[("cookie", &cookie)], "")
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let link = format!("https://podium.example.org/j/{}", show.odc.join_code());
    assert!(page.body.contains(&link), "{link} not in {}", page.body);
    assert!(!page.body.contains("http://127.0.0.1"), "{}", page.body);

    // A proxy that passes on a Host of its own (here podiumd's address, as nginx does by
    // default): a form from the public URL's pages is still this podiumd's.
    let start = http::request(&show.server.addr, "GET", "/", &[], "")
        .await
        .unwrap();
    let csrf = start.cookie("podium_csrf").unwrap();
    let joined = http::request(
        &show.server.addr,
        "POST",
        "/join",
        &[
            ("cookie", &format!("podium_csrf={csrf}")),
            ("origin", "https://podium.example.org"),
        ],
        &form(&[
            ("csrf", &csrf),
            ("code", show.odc.join_code()),
            ("name", "Dara"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(joined.status, 303, "{}", joined.body);
    assert!(joined.cookie(session_name).is_some());
}
