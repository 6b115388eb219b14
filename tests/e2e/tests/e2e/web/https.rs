//! The pages over podiumd's own TLS. A browser then speaks HTTP/2, which names the host in the
//! `:authority` pseudo-header and sends no `Host` header: before podiumd took the host from the
//! authority, every form was refused as coming from another site, and the projector's join
//! link named `localhost`.

use fantoccini::Locator;
use podium_client::{Client, Tls, pb};
use podium_e2e::{
    CONFERENCE, Odc, Podiumd,
    browser::{Browser, Screen},
};

#[tokio::test]
async fn over_https_an_attendee_joins_and_the_projector_links_to_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::transport::pki(dir.path());
    let server = Podiumd::start_with(&[
        "--tls-cert",
        pki.server_cert.to_str().unwrap(),
        "--tls-key",
        pki.server_key.to_str().unwrap(),
    ])
    .unwrap();
    let token = server.admin_token().unwrap();
    let tls = Tls {
        ca_pem: Some(std::fs::read(&pki.ca).unwrap()),
        ..Tls::default()
    };
    let admin = Client::connect_with(&server.addr, Some(token.clone()), Some(&tls))
        .await
        .unwrap();
    let odc = Odc::create(&admin, CONFERENCE).await.unwrap();
    let base = format!("https://{}", server.addr);

    // An attendee on a phone joins with the form (a POST with an Origin, as every browser
    // sends). With JavaScript, as phones run it: under chromedriver's phone emulation with
    // JavaScript turned off, its click on a form's button over https never returns (chromedriver
    // waits on a timer in the page after a tap), though podiumd answers the POST at once.
    let attendee = Browser::open(&base, Screen::Phone, true, "en")
        .await
        .unwrap();
    attendee
        .goto(&format!("/j/{}", odc.conference.join_code))
        .await
        .unwrap();
    attendee
        .submit("main form button[type=submit]")
        .await
        .unwrap();
    attendee
        .wait_for_text("h1", "Open Data Conference 2024")
        .await
        .unwrap();
    attendee.close().await.unwrap();

    // The projector's QR code and words send attendees to this host, over https.
    let moderator = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Moderator.into(),
            conference_id: CONFERENCE.into(),
            name: "projector".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let projector = Browser::open(&base, Screen::Projector, true, "en")
        .await
        .unwrap();
    projector
        .goto(&format!(
            "/p/{CONFERENCE}/{}?token={moderator}",
            odc.hall.id
        ))
        .await
        .unwrap();
    projector
        .wait_for_text(".code", &odc.conference.join_code)
        .await
        .unwrap();
    let qr = projector.client.find(Locator::Css(".qr")).await.unwrap();
    let label = qr.attr("aria-label").await.unwrap().unwrap_or_default();
    let wanted = format!("{base}/j/{}", odc.conference.join_code);
    assert_eq!(label, format!("QR code: {wanted}"));
    assert_eq!(projector.text(".join strong").await.unwrap(), base);
    // And the browser did speak HTTP/2, the case this test is for.
    let protocol = projector
        .client
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(protocol, "h2");
    projector.close().await.unwrap();
}
