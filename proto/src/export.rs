//! The open-data export of a conference's feedback, in JSON and CSV: poll tallies, rating
//! aggregates and published questions with their votes. No attendee ids or names, open text
//! only from polls marked publishable, no rating comments (they can name people).
//!
//! The CLI (`podium export`) and the moderator console gather the parts through the API and
//! write them with [`Feedback`], so both give the same document.

use serde_json::{Value, json};

use crate::{Translations as _, v1 as pb};

/// Everything the export holds, as read through the API.
#[derive(Debug, Clone, Default)]
pub struct Feedback {
    pub conference: pb::Conference,
    pub sessions: Vec<pb::Session>,
    /// Every poll that is not a draft, with its results.
    pub polls: Vec<(pb::Poll, pb::Results)>,
    /// `Ratings/GetRatings` of the whole conference.
    pub ratings: Vec<pb::SessionRatings>,
    /// Questions of every session; only published and answered ones are exported.
    pub questions: Vec<pb::Question>,
}

/// One row of the CSV: every section shares these columns.
struct Row<'a> {
    section: &'static str,
    session_id: &'a str,
    item_id: &'a str,
    question: &'a str,
    answer: String,
    count: u64,
    mean: Option<f64>,
}

/// Whether a question is public enough to export.
pub fn exported(question: &pb::Question) -> bool {
    matches!(
        question.state(),
        pb::QuestionState::Published | pb::QuestionState::Answered
    )
}

/// A CSV field, quoted when it must be. Text people typed that a spreadsheet would take for a
/// formula (`=`, `+`, `-`, `@`, a tab or a carriage return first) gets a `'` in front, so that
/// opening the export cannot run a question as a formula (OWASP's "CSV injection").
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The answers of one poll, each with its count, labelled with the poll's option labels.
fn answers<'a>(poll: &'a pb::Poll, results: &'a pb::Results) -> Vec<(String, u64, Option<f64>)> {
    let mut answers = Vec::new();
    for o in &results.options {
        let label = poll
            .options
            .iter()
            .find(|p| p.id == o.option_id)
            .map_or(o.label.as_str(), |p| p.label.as_str());
        answers.push((label.to_owned(), o.count, None));
    }
    if let Some(r) = &results.rating {
        for (i, n) in r.distribution.iter().enumerate() {
            answers.push(((poll.scale_min + i as i32).to_string(), *n, Some(r.mean)));
        }
    }
    for w in &results.words {
        answers.push((w.word.clone(), w.count, None));
    }
    for t in texts(poll, results) {
        answers.push((t.clone(), 1, None));
    }
    answers
}

/// Open text only when the poll says it may be published.
fn texts<'a>(poll: &pb::Poll, results: &'a pb::Results) -> &'a [String] {
    if poll.publishable {
        &results.texts
    } else {
        &[]
    }
}

impl Feedback {
    fn rows(&self) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        for (poll, results) in &self.polls {
            for (answer, count, mean) in answers(poll, results) {
                rows.push(Row {
                    section: "poll",
                    session_id: &poll.session_id,
                    item_id: &poll.id,
                    question: &poll.label,
                    answer,
                    count,
                    mean,
                });
            }
        }
        for s in &self.ratings {
            let Some(summary) = &s.summary else { continue };
            rows.push(Row {
                section: "rating",
                session_id: &s.session_id,
                item_id: "",
                question: "session rating",
                answer: String::new(),
                count: summary.count,
                mean: Some(summary.mean),
            });
        }
        for q in self.questions.iter().filter(|q| exported(q)) {
            rows.push(Row {
                section: "question",
                session_id: &q.session_id,
                item_id: &q.id,
                question: &q.text,
                answer: q.state().as_str_name().to_owned(),
                count: q.votes,
                mean: None,
            });
        }
        rows
    }

    /// The export as CSV: one header, then a row per answer, rating summary and question.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,session,item,question,answer,count,mean\n");
        for r in self.rows() {
            let mean = r.mean.map(|m| format!("{m:.3}")).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                r.section,
                csv_field(r.session_id),
                csv_field(r.item_id),
                csv_field(r.question),
                csv_field(&r.answer),
                r.count,
                mean
            ));
        }
        out
    }

    /// The export as a JSON document, pretty-printed.
    pub fn json(&self) -> String {
        let polls: Vec<Value> = self
            .polls
            .iter()
            .map(|(poll, results)| {
                json!({
                    "id": poll.id,
                    "session": poll.session_id,
                    "question": poll.label,
                    "kind": poll.kind().as_str_name(),
                    "state": poll.state().as_str_name(),
                    "ballots": results.ballots,
                    "options": results.options.iter().map(|o| {
                        let label = poll.options.iter().find(|p| p.id == o.option_id).map_or(o.label.as_str(), |p| p.label.as_str());
                        json!({ "option": label, "count": o.count })
                    }).collect::<Vec<_>>(),
                    "rating": results.rating.as_ref().map(|r| json!({ "count": r.count, "mean": r.mean, "distribution": r.distribution })),
                    "words": results.words.iter().map(|w| json!({ "word": w.word, "count": w.count })).collect::<Vec<_>>(),
                    "texts": texts(poll, results),
                })
            })
            .collect();
        let ratings: Vec<Value> = self
            .ratings
            .iter()
            .filter_map(|s| {
                let summary = s.summary.as_ref()?;
                Some(json!({ "session": s.session_id, "count": summary.count, "mean": summary.mean, "distribution": summary.distribution }))
            })
            .collect();
        let questions: Vec<Value> = self
            .questions
            .iter()
            .filter(|q| exported(q))
            .map(|q| json!({ "session": q.session_id, "id": q.id, "text": q.text, "state": q.state().as_str_name(), "votes": q.votes }))
            .collect();
        let conference = &self.conference;
        let doc = json!({
            "conference": { "id": conference.id, "time_zone": conference.time_zone },
            "sessions": self.sessions.iter().map(|s| json!({
                "id": s.id,
                "title": s.title.pick(None, &conference.default_language),
                "start_utc": s.start.as_ref().and_then(|t| t.utc).map(|t| t.seconds),
            })).collect::<Vec<_>>(),
            "polls": polls,
            "ratings": ratings,
            "questions": questions,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feedback() -> Feedback {
        let poll = pb::Poll {
            id: "p1".into(),
            session_id: "s1".into(),
            label: "Which, \"really\"?".into(),
            options: vec![pb::PollOption {
                id: "a".into(),
                label: "Open data".into(),
                ..Default::default()
            }],
            publishable: false,
            ..Default::default()
        };
        let results = pb::Results {
            ballots: 3,
            options: vec![pb::OptionCount {
                option_id: "a".into(),
                count: 3,
                ..Default::default()
            }],
            texts: vec!["secret".into()],
            ..Default::default()
        };
        let asked = |id: &str, state: pb::QuestionState| pb::Question {
            id: id.into(),
            session_id: "s1".into(),
            text: format!("question {id}"),
            author_name: "Sokha".into(),
            state: state as i32,
            votes: 2,
            ..Default::default()
        };
        Feedback {
            polls: vec![(poll, results)],
            questions: vec![
                asked("q1", pb::QuestionState::Published),
                asked("q2", pb::QuestionState::Pending),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn csv_quotes_fields_and_leaves_out_private_parts() {
        let csv = feedback().csv();
        assert!(csv.contains("poll,s1,p1,\"Which, \"\"really\"\"?\",Open data,3,"));
        assert!(csv.contains("question,s1,q1,question q1,QUESTION_STATE_PUBLISHED,2,"));
        assert!(!csv.contains("q2"), "pending questions are not public");
        assert!(!csv.contains("secret"), "text of an unpublishable poll");
        assert!(!csv.contains("Sokha"), "no author names");
    }

    #[test]
    fn text_a_spreadsheet_would_run_is_kept_as_text() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil\",\"x\")"),
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("Open data"), "Open data");
    }

    #[test]
    fn json_holds_the_same_parts() {
        let doc: Value = serde_json::from_str(&feedback().json()).unwrap();
        assert_eq!(doc["polls"][0]["options"][0]["option"], "Open data");
        assert_eq!(doc["polls"][0]["texts"].as_array().unwrap().len(), 0);
        assert_eq!(doc["questions"].as_array().unwrap().len(), 1);
        assert!(!doc.to_string().contains("Sokha"));
    }
}
