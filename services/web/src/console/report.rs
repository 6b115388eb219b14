//! The console's report page (`/m/report`): the pre-flight report of every session that has
//! not ended (test connections, recordings, local hours), the ratings of each session with
//! their comments, and the open-data export as CSV and JSON, the same document as
//! `podium export` ([`podium_proto::export`]).

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use podium_proto::{
    export::Feedback,
    v1::{
        self as pb, polls_server::Polls as _, questions_server::Questions as _,
        ratings_server::Ratings as _,
    },
};

use super::staff_or_refuse;
use crate::{
    Web,
    attendee::{conference_and_sessions, first_results, on_behalf},
    frame::{Frame, render},
    i18n::Lang,
    reply,
    session::Visitor,
    views::{SessionView, wall_span},
};

/// One session of the pre-flight report.
#[derive(Debug, Clone)]
pub struct ReadinessView {
    pub title: String,
    pub lang: Option<String>,
    pub start: String,
    pub ready: bool,
    pub recordings: u32,
    pub speakers: Vec<pb::SpeakerReadiness>,
    /// Why the session is at risk, in the reader's language.
    pub concerns: Vec<ConcernView>,
}

/// One reason a session is at risk.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcernView {
    pub text: String,
    /// "en" when the page fell back to the service's English: a concern it does not know, from
    /// a newer server.
    pub lang: Option<&'static str>,
}

impl ConcernView {
    /// The session's concerns in the reader's language, from the service's data; its English
    /// reason for a concern this page cannot say.
    fn all(readiness: &pb::SessionReadiness, lang: Lang) -> Vec<Self> {
        use pb::ReadinessConcernKind as Kind;
        let t = lang.text();
        let minutes = |ms: u64| format!("{} {}", ms / 60_000, t.minutes_short);
        let say = |concern: &pb::ReadinessConcern| -> Option<String> {
            let speaker = readiness
                .speakers
                .iter()
                .find(|s| !concern.speaker_id.is_empty() && s.speaker_id == concern.speaker_id);
            let about = |what: &str| speaker.map(|s| format!("{}: {what}", s.name));
            Some(match concern.kind() {
                Kind::NotTested => about(t.concern_not_tested)?,
                Kind::NoValidHours => about(t.concern_no_valid_hours)?,
                Kind::OutsideHours => {
                    let at = concern.at.as_ref()?;
                    let (local, _) = wall_span(Some(at), None, lang);
                    let end = if concern.ends {
                        t.concern_ends
                    } else {
                        t.concern_starts
                    };
                    about(&format!(
                        "{end} {local} ({}), {} {}",
                        at.time_zone, t.outside_hours, concern.hours
                    ))?
                }
                Kind::NoRecording => t.concern_no_recording.to_owned(),
                Kind::NoBackup => t.concern_no_backup.to_owned(),
                Kind::NotOnPlayout => t.concern_not_on_playout.to_owned(),
                Kind::ShortRecording => format!(
                    "{}: {} / {}",
                    t.concern_short_recording,
                    minutes(concern.recording_ms),
                    minutes(concern.slot_ms)
                ),
                Kind::VideoCodec => format!("{} ({})", t.concern_video_codec, concern.codec),
                Kind::NoSound => t.concern_no_sound.to_owned(),
                Kind::AudioCodec => format!("{} ({})", t.concern_audio_codec, concern.codec),
                Kind::Unspecified => return None,
            })
        };
        readiness
            .reasons
            .iter()
            .enumerate()
            .map(
                |(i, english)| match readiness.concerns.get(i).and_then(say) {
                    Some(text) => ConcernView { text, lang: None },
                    None => ConcernView {
                        text: english.clone(),
                        lang: (lang != Lang::En).then_some("en"),
                    },
                },
            )
            .collect()
    }
}

/// One rated session.
#[derive(Debug, Clone)]
pub struct RatingView {
    pub title: String,
    pub lang: Option<String>,
    pub count: u64,
    pub mean: String,
    /// (point, count), from 1 to 5.
    pub distribution: Vec<(usize, u64)>,
    pub comments: Vec<String>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    frame: Frame,
    /// None where this node does not run the status service.
    preflight: Option<Vec<ReadinessView>>,
    ratings: Vec<RatingView>,
}

/// `GET /m/report`.
pub async fn page(State(web): State<Web>, visitor: Visitor) -> Response {
    let conference_id = match staff_or_refuse(&visitor) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let result = async {
        let (conference, sessions) =
            conference_and_sessions(&web, &visitor, &conference_id, "").await?;
        let view = |id: &str| {
            sessions
                .iter()
                .find(|s| s.id == id)
                .map(|s| SessionView::new(s, visitor.lang, &conference.default_language))
        };
        let preflight = crate::speaker::preflight(&web, &visitor, &conference_id)
            .await?
            .map(|sessions| {
                sessions
                    .into_iter()
                    .map(|r| {
                        let session = view(&r.session_id);
                        ReadinessView {
                            title: session
                                .as_ref()
                                .map_or(r.title.clone(), |s| s.title.clone()),
                            lang: session.as_ref().and_then(|s| s.lang.clone()),
                            start: session
                                .as_ref()
                                .map(|s| s.start_local.clone())
                                .unwrap_or_default(),
                            ready: r.readiness == pb::Readiness::Ready as i32,
                            recordings: r.recordings,
                            concerns: ConcernView::all(&r, visitor.lang),
                            speakers: r.speakers,
                        }
                    })
                    .collect()
            });
        let request = pb::GetRatingsRequest {
            conference_id: conference_id.clone(),
            session_id: String::new(),
        };
        let rated = web
            .services
            .ratings
            .get_ratings(on_behalf(&visitor, request))
            .await?
            .into_inner()
            .sessions;
        let ratings = rated
            .into_iter()
            .filter_map(|r| {
                let summary = r.summary?;
                let session = view(&r.session_id);
                Some(RatingView {
                    title: session
                        .as_ref()
                        .map_or(r.session_id.clone(), |s| s.title.clone()),
                    lang: session.and_then(|s| s.lang),
                    count: summary.count,
                    mean: format!("{:.1}", summary.mean),
                    distribution: summary
                        .distribution
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (i + 1, *n))
                        .collect(),
                    comments: r.comments,
                })
            })
            .collect();
        Ok::<_, tonic::Status>((preflight, ratings))
    }
    .await;
    match result {
        Ok((preflight, ratings)) => {
            let page = ReportPage {
                frame: Frame::new(&visitor, "/m/report"),
                preflight,
                ratings,
            };
            render(&visitor, StatusCode::OK, &page)
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// The export's parts, read through the services as the visitor.
async fn gather(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Feedback, tonic::Status> {
    let (conference, sessions) = conference_and_sessions(web, visitor, conference_id, "").await?;
    let mut feedback = Feedback {
        conference,
        sessions,
        ..Default::default()
    };
    let request = pb::ListPollsRequest {
        conference_id: conference_id.to_owned(),
        session_id: String::new(),
        language: String::new(),
    };
    let polls = web
        .services
        .polls
        .list_polls(on_behalf(visitor, request))
        .await?
        .into_inner()
        .polls;
    for poll in polls
        .into_iter()
        .filter(|p| p.state() != pb::PollState::Draft)
    {
        if let Some(results) = first_results(web, visitor, conference_id, &poll.id).await {
            feedback.polls.push((poll, results));
        }
    }
    let request = pb::GetRatingsRequest {
        conference_id: conference_id.to_owned(),
        session_id: String::new(),
    };
    feedback.ratings = web
        .services
        .ratings
        .get_ratings(on_behalf(visitor, request))
        .await?
        .into_inner()
        .sessions;
    for session in &feedback.sessions {
        let request = pb::ListQuestionsRequest {
            conference_id: conference_id.to_owned(),
            session_id: session.id.clone(),
        };
        let listed = web
            .services
            .questions
            .list_questions(on_behalf(visitor, request))
            .await?
            .into_inner();
        feedback.questions.extend(listed.questions);
    }
    Ok(feedback)
}

/// `GET /m/export.csv` and `GET /m/export.json`: a download of the open-data export.
pub async fn export(
    State(web): State<Web>,
    visitor: Visitor,
    Path(file): Path<String>,
) -> Response {
    let conference_id = match staff_or_refuse(&visitor) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let (format, content_type) = match file.as_str() {
        "export.csv" => ("csv", "text/csv; charset=utf-8"),
        "export.json" => ("json", "application/json"),
        _ => {
            return reply::error(
                &visitor,
                StatusCode::NOT_FOUND,
                visitor.text().error_not_found,
                None,
            );
        }
    };
    let feedback = match gather(&web, &visitor, &conference_id).await {
        Ok(feedback) => feedback,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let body = if format == "csv" {
        feedback.csv()
    } else {
        feedback.json()
    };
    let name = crate::views::path_segment(&conference_id);
    visitor.finish(
        (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}-feedback.{format}\""),
                ),
            ],
            body,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concern(kind: pb::ReadinessConcernKind) -> pb::ReadinessConcern {
        pb::ReadinessConcern {
            kind: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn concerns_are_said_in_the_reader_s_language_and_unknown_ones_in_the_service_s_english() {
        use pb::ReadinessConcernKind as Kind;
        let readiness = pb::SessionReadiness {
            speakers: vec![pb::SpeakerReadiness {
                speaker_id: "spk-1".into(),
                name: "Sokha Chan".into(),
                ..Default::default()
            }],
            reasons: vec![
                "Sokha Chan has not done a test connection".into(),
                "ends Wed 21:00 for Sokha Chan in America/New_York, outside ...".into(),
                "recording plays 30 min of a 45 min slot".into(),
                "recording's sound is opus, which OBS may not play; export it as AAC".into(),
                "something a newer server knows".into(),
            ],
            concerns: vec![
                pb::ReadinessConcern {
                    speaker_id: "spk-1".into(),
                    ..concern(Kind::NotTested)
                },
                pb::ReadinessConcern {
                    speaker_id: "spk-1".into(),
                    at: Some(pb::ZonedTime {
                        local: "2030-11-13T21:45:00-05:00".into(),
                        time_zone: "America/New_York".into(),
                        ..Default::default()
                    }),
                    ends: true,
                    hours: "08:00-21:00".into(),
                    ..concern(Kind::OutsideHours)
                },
                pb::ReadinessConcern {
                    recording_ms: 30 * 60_000 + 59_000,
                    slot_ms: 45 * 60_000,
                    ..concern(Kind::ShortRecording)
                },
                pb::ReadinessConcern {
                    codec: "opus".into(),
                    ..concern(Kind::AudioCodec)
                },
                concern(Kind::Unspecified),
            ],
            ..Default::default()
        };
        let km = Lang::Km.text();
        let said = ConcernView::all(&readiness, Lang::Km);
        let texts: Vec<_> = said.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts[..4],
            [
                format!("Sokha Chan: {}", km.concern_not_tested).as_str(),
                format!(
                    "Sokha Chan: {} ថ្ងៃ\u{200b}ពុធ 13 វិច្ឆិកា 21:45 (America/New_York), {} 08:00-21:00",
                    km.concern_ends, km.outside_hours
                )
                .as_str(),
                format!("{}: 30 នាទី / 45 នាទី", km.concern_short_recording).as_str(),
                format!("{} (opus)", km.concern_audio_codec).as_str(),
            ]
        );
        assert!(said[..4].iter().all(|c| c.lang.is_none()));
        assert_eq!(
            said[4],
            ConcernView {
                text: "something a newer server knows".into(),
                lang: Some("en"),
            }
        );
        // In English the page's own words, not the service's sentence.
        let en = ConcernView::all(&readiness, Lang::En);
        assert_eq!(en[0].text, "Sokha Chan: has not done a test connection");
        assert_eq!(
            en[1].text,
            "Sokha Chan: ends Wed 13 Nov 21:45 (America/New_York), outside their hours 08:00-21:00"
        );
        assert_eq!(en[4].lang, None);
    }
}
