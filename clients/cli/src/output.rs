//! How the CLI shows things: tables and labelled lines for people, JSON (protobuf's canonical
//! mapping) for scripts.

use comfy_table::{ContentArrangement, Table, presets::UTF8_HORIZONTAL_ONLY};
use podium_client::{message_to_json, pb};
use podium_proto::Translations;

/// Output mode chosen by `--json`, and the language chosen by `--lang`. Commands borrow it
/// from the context; it owns its language, so nothing is leaked to make it last.
#[derive(Debug, Clone)]
pub struct Out {
    pub json: bool,
    /// The language to show localised text in; the conference's default if unset.
    lang: Option<String>,
}

impl Out {
    pub fn new(json: bool, lang: Option<String>) -> Out {
        Out { json, lang }
    }

    /// The language asked for with `--lang`, if any.
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }

    /// Prints `message` as JSON if asked to; returns true if it did.
    pub fn json<M: prost::Message + prost::Name>(&self, message: &M) -> bool {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&message_to_json(message)).unwrap_or_default()
            );
        }
        self.json
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

pub fn label(time: &Option<pb::ZonedTime>) -> &str {
    time.as_ref().map_or("", |t| t.label.as_str())
}

/// Just the local "HH:MM" of a zoned time.
pub fn clock(time: &Option<pb::ZonedTime>) -> String {
    time.as_ref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t.local).ok())
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

pub fn kind(kind: i32) -> &'static str {
    match pb::SessionKind::try_from(kind) {
        Ok(pb::SessionKind::Talk) => "talk",
        Ok(pb::SessionKind::Panel) => "panel",
        Ok(pb::SessionKind::Breakout) => "breakout",
        Ok(pb::SessionKind::Pitch) => "pitch",
        _ => "",
    }
}

pub fn role(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Organiser) => "organiser",
        Ok(pb::Role::Moderator) => "moderator",
        Ok(pb::Role::Integration) => "integration",
        Ok(pb::Role::Speaker) => "speaker",
        Ok(pb::Role::Attendee) => "attendee",
        _ => "unknown",
    }
}

pub fn print_conference(c: &pb::Conference, out: &Out) {
    println!("Conference  {}", c.id);
    println!(
        "Title       {}",
        c.title.pick(out.lang(), &c.default_language)
    );
    if let Some(title) = &c.title {
        for (lang, t) in &title.text {
            if Some(lang.as_str()) != out.lang() && *lang != c.default_language {
                println!("  ({lang})    {t}");
            }
        }
    }
    println!("Language    {}", c.default_language);
    println!("Time zone   {}", c.time_zone);
    if !c.join_code.is_empty() {
        println!("Join code   {}", c.join_code);
    }
    if !c.rooms.is_empty() {
        let mut rooms = table(&["Room", "Name", "Capacity"]);
        for r in &c.rooms {
            rooms.add_row(vec![
                r.id.clone(),
                r.name.clone(),
                if r.capacity == 0 {
                    String::new()
                } else {
                    r.capacity.to_string()
                },
            ]);
        }
        println!("\n{rooms}");
    }
    if !c.speakers.is_empty() {
        let mut speakers = table(&[
            "Speaker",
            "Name",
            "Organisation",
            "Time zone",
            "Hours (local)",
        ]);
        for s in &c.speakers {
            speakers.add_row(vec![
                s.id.clone(),
                s.name.clone(),
                s.organisation.clone(),
                s.time_zone.clone(),
                format!("{}-{}", s.available_from, s.available_until),
            ]);
        }
        println!("\n{speakers}");
    }
}

pub fn print_session(s: &pb::Session, default_language: &str, out: &Out) {
    println!("Session     {}", s.id);
    println!("Title       {}", s.title.pick(out.lang(), default_language));
    println!("Kind        {}", kind(s.kind));
    println!("Room        {} ({})", s.room_name, s.room_id);
    println!("Starts      {}", label(&s.start));
    println!("Ends        {}", label(&s.end));
    println!("Revision    {} (changes since it was added)", s.revision);
    if !s.speakers.is_empty() {
        let mut speakers = table(&["Speaker", "Role", "Their time", "Within their hours"]);
        for sp in &s.speakers {
            speakers.add_row(vec![
                format!("{} ({})", sp.name, sp.speaker_id),
                if sp.backup { "backup" } else { "speaker" }.to_owned(),
                format!("{} - {}", label(&sp.start), clock(&sp.end)),
                if sp.within_hours { "yes" } else { "NO" }.to_owned(),
            ]);
        }
        println!("\n{speakers}");
    }
    for w in &s.warnings {
        println!("warning: {}", w.message);
    }
}
