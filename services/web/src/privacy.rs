//! An attendee's own data: `GET /me` shows what podium holds about them and their attendee id,
//! `POST /me/erase` erases them (after a checkbox that says it cannot be undone) and signs them
//! out. Both call the `Privacy` service as the attendee, who may act on themselves only.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use podium_access::Role;
use podium_proto::v1 as pb;

use crate::{
    Web,
    attendee::on_behalf,
    forms::accept,
    frame::{Frame, render},
    reply,
    session::Visitor,
};

#[derive(Template)]
#[template(path = "mydata.html")]
struct MyDataPage {
    frame: Frame,
    attendee_id: String,
    display_name: String,
    questions: Vec<pb::PersonQuestion>,
    ratings: Vec<pb::PersonRating>,
    ballots: usize,
}

/// The signed-in attendee as a person of their conference; `None` for anyone else.
fn me(visitor: &Visitor) -> Option<pb::Person> {
    let principal = visitor.principal.as_ref()?;
    (principal.role == Role::Attendee).then(|| pb::Person {
        conference_id: principal.conference_id.clone().unwrap_or_default(),
        kind: pb::PersonKind::Attendee as i32,
        person_id: principal.id.clone(),
    })
}

/// `GET /me`: what podium holds about the signed-in attendee, and the erase form.
pub async fn page(State(web): State<Web>, visitor: Visitor) -> Response {
    let Some(person) = me(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let request = pb::ExportPersonRequest {
        person: Some(person.clone()),
    };
    let data = match web
        .services
        .privacy
        .export_person(on_behalf(&visitor, request))
        .await
    {
        Ok(data) => data.into_inner(),
        Err(status) => return reply::refused(&visitor, &status),
    };
    let page = MyDataPage {
        frame: Frame::new(&visitor, "/me"),
        attendee_id: person.person_id,
        display_name: data.display_name,
        questions: data.questions,
        ratings: data.ratings,
        ballots: data.ballots.len(),
    };
    render(&visitor, StatusCode::OK, &page)
}

/// `POST /me/erase`: erases the signed-in attendee, once they ticked that they understand.
pub async fn erase(
    State(web): State<Web>,
    mut visitor: Visitor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let Some(person) = me(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    if fields.get("confirm") != "yes" {
        return reply::error(
            &visitor,
            StatusCode::UNPROCESSABLE_ENTITY,
            visitor.text().erase_confirm_missing,
            None,
        );
    }
    let request = pb::EraseRequest {
        person: Some(person),
    };
    match web
        .services
        .privacy
        .erase(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => {
            visitor.sign_out();
            reply::see_other(&visitor, "/?done=erased")
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}
