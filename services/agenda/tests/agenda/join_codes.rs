//! A join code opens one conference only: conferences created at once with one code, through
//! the `Agenda` service in process on a real sled log, give it to exactly one of them.

use std::sync::Arc;

use podium_access::Principal;
use podium_agenda::{AgendaService, AgendaStore};
use podium_eventlog::{SledEventLog, SledOptions};
use podium_proto::v1::{self as pb, agenda_server::Agenda};
use tonic::{Code, Request};
use uuid::Uuid;

fn create(
    conference_id: &str,
    join_code: &str,
    request_id: Uuid,
) -> Request<pb::CreateConferenceRequest> {
    let mut request = Request::new(pb::CreateConferenceRequest {
        request_id: request_id.to_string(),
        conference_id: conference_id.into(),
        title: Some(pb::LocalizedText {
            text: [("en".to_owned(), "Open Data Conference".to_owned())].into(),
        }),
        default_language: "en".into(),
        time_zone: "Asia/Phnom_Penh".into(),
        join_code: join_code.into(),
    });
    request.extensions_mut().insert(Principal::admin());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_created_at_once_with_one_join_code_cannot_both_have_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    let service = Arc::new(AgendaService::new(AgendaStore::open(log).await.unwrap()));
    for round in 0..20 {
        let code = format!("ODC-{round:04}");
        let requests: Vec<_> = (0..3)
            .map(|i| (format!("odc-{round}-{i}"), Uuid::new_v4()))
            .collect();
        let answers = futures::future::join_all(requests.iter().map(|(id, rid)| {
            let (service, request) = (service.clone(), create(id, &code, *rid));
            tokio::spawn(async move { service.create_conference(request).await })
        }))
        .await;
        let mut winners = Vec::new();
        for ((id, rid), answer) in requests.iter().zip(answers) {
            match answer.unwrap() {
                Ok(_) => winners.push((id.clone(), *rid)),
                Err(status) => {
                    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                    assert!(status.message().contains("join code"), "{status:?}");
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {winners:?} all have {code}"
        );
        // The winner's retry is answered as the first time; a later one is refused.
        let (id, rid) = &winners[0];
        let again = service
            .create_conference(create(id, &code, *rid))
            .await
            .unwrap();
        assert_eq!(again.into_inner().conference.unwrap().id, *id);
        let late = service
            .create_conference(create(
                &format!("late-{round}"),
                &code.to_lowercase(),
                Uuid::new_v4(),
            ))
            .await
            .unwrap_err();
        assert_eq!(late.code(), Code::AlreadyExists);
    }
}
