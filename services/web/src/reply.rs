//! Answers that are not a page of their own: errors in the reader's language, redirects after
//! a form, and the fallback for paths no route matches.

use askama::Template;
use axum::{
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use tonic::Code;

use crate::{
    frame::{Frame, render},
    session::{Forgery, Visitor},
};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    frame: Frame,
    message: &'static str,
    detail: Option<String>,
    back: String,
}

/// An error page with `status`, saying `message` in the reader's language and, when there is
/// one, the service's own explanation (in English, marked as such).
pub fn error(
    visitor: &Visitor,
    status: StatusCode,
    message: &'static str,
    detail: Option<String>,
) -> Response {
    let page = ErrorPage {
        frame: Frame::new(visitor, "/"),
        message,
        detail,
        back: "/".to_owned(),
    };
    render(visitor, status, &page)
}

/// The page for a service's refusal: its HTTP status and wording follow the gRPC code.
pub fn refused(visitor: &Visitor, status: &tonic::Status) -> Response {
    let t = visitor.text();
    let detail = Some(status.message().to_owned()).filter(|m| !m.is_empty());
    let (code, message, detail) = match status.code() {
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, t.error_sign_in, None),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, t.error_forbidden, detail),
        Code::NotFound => (StatusCode::NOT_FOUND, t.error_not_found, detail),
        Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => {
            (StatusCode::UNPROCESSABLE_ENTITY, t.error_invalid, detail)
        }
        Code::FailedPrecondition | Code::Aborted => (StatusCode::CONFLICT, t.error_invalid, detail),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, t.error_busy, None),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, t.error_busy, None),
        // Its outcome is unknown (a command forwarded to the node that runs the status engine).
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, t.error_unanswered, detail),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, t.error_internal, None),
    };
    error(visitor, code, message, detail)
}

/// A POST that failed the CSRF or origin check: nothing was done.
pub fn forgery(visitor: &Visitor, why: Forgery) -> Response {
    tracing::info!(?why, "form refused: cross-site request forgery check");
    let message = match why {
        Forgery::Token => visitor.text().error_csrf,
        Forgery::Origin => visitor.text().error_other_site,
    };
    error(visitor, StatusCode::FORBIDDEN, message, None)
}

/// A page that needs a signed-in visitor, reached without one.
pub fn sign_in_first(visitor: &Visitor) -> Response {
    error(
        visitor,
        StatusCode::UNAUTHORIZED,
        visitor.text().error_sign_in,
        None,
    )
}

/// A page the visitor's role may not see: forbidden when signed in, else sign in first.
pub fn not_for(visitor: &Visitor) -> Response {
    match visitor.principal {
        Some(_) => error(
            visitor,
            StatusCode::FORBIDDEN,
            visitor.text().error_forbidden,
            None,
        ),
        None => sign_in_first(visitor),
    }
}

/// After a form: back to `path` with a GET, so a reload does not send it again.
pub fn see_other(visitor: &Visitor, path: &str) -> Response {
    visitor.finish(Redirect::to(&crate::frame::local_path(path)))
}

/// No route matched: a gRPC call gets UNIMPLEMENTED, a person a page.
pub async fn not_found(visitor: Visitor, headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("no such service or method")
            .into_http::<axum::body::Body>()
            .into_response();
    }
    error(
        &visitor,
        StatusCode::NOT_FOUND,
        visitor.text().error_not_found,
        None,
    )
}
