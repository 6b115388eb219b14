//! What every page shows around its content: the language switcher, who is signed in, the
//! asset URLs and the CSRF value for its forms.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use crate::{
    assets,
    i18n::{Lang, Text},
    session::Visitor,
};

#[derive(Debug)]
pub struct LangChoice {
    pub tag: &'static str,
    pub name: &'static str,
    pub current: bool,
}

/// The frame of one page.
#[derive(Debug)]
pub struct Frame {
    pub t: &'static Text,
    pub lang: &'static str,
    pub csrf: String,
    pub css: String,
    pub js: String,
    pub icon: String,
    /// The signed-in holder's name.
    pub user: Option<String>,
    /// True for a signed-in attendee, who has a "Your data" page.
    pub attendee: bool,
    /// This page's path, where forms return to.
    pub here: String,
    pub langs: Vec<LangChoice>,
}

impl Frame {
    pub fn new(visitor: &Visitor, here: &str) -> Self {
        Self {
            t: visitor.text(),
            lang: visitor.lang.tag(),
            csrf: visitor.csrf.clone(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            icon: assets::url("icon.svg"),
            user: visitor.principal.as_ref().map(|p| p.name.clone()),
            attendee: visitor
                .principal
                .as_ref()
                .is_some_and(|p| p.role == podium_access::Role::Attendee),
            here: local_path(here),
            langs: Lang::ALL
                .iter()
                .map(|&l| LangChoice {
                    tag: l.tag(),
                    name: l.endonym(),
                    current: l == visitor.lang,
                })
                .collect(),
        }
    }
}

impl Frame {
    /// The days of the week in the page's language, for times in the reader's own zone.
    pub fn days(&self) -> &'static str {
        crate::views::day_names(Lang::from_tag(self.lang).unwrap_or(Lang::En))
    }
}

/// `path` if it is a path on this site, else `/`: forms carry where to return to, and a
/// crafted value must not send the reader elsewhere.
pub fn local_path(path: &str) -> String {
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control);
    if local {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

/// Renders a page with the visitor's cookies.
pub fn render(visitor: &Visitor, status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => visitor.finish((status, Html(html))),
        Err(error) => {
            tracing::error!(%error, "page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path("/session/abc?x=1"), "/session/abc?x=1");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }
}
