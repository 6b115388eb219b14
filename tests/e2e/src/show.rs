//! The stage every end-to-end test sets: a real `podiumd` with the Open Data Conference 2024
//! (Phnom Penh, in English and Khmer), its main hall, a speaker in Phnom Penh and one in New
//! York, and whatever sessions, polls and attendees a test asks for. A test says what it needs
//! and gets typed handles back:
//!
//! ```text
//! let show = Show::start()
//!     .session(Talk::new("Open budgets", "2024-11-14T02:00:00Z", "2024-11-14T03:00:00Z"))
//!     .poll(NewPoll::single_choice(&["Budgets", "Health"]))
//!     .attendees(3)
//!     .await?;
//! ```

use std::{
    future::{Future, IntoFuture},
    ops::Deref,
    path::PathBuf,
    pin::Pin,
};

use anyhow::Context;
use podium_client::{Client, pb};

use crate::Podiumd;

/// The conference every test runs: the only place its id is spelled out.
pub const CONFERENCE: &str = "odc2024";

/// Another conference, for tests of what one conference's callers may see of another.
pub const OTHER_CONFERENCE: &str = "other-conf";

/// Attendees joined by [`ShowBuilder::attendees`], in order; more are "Attendee 9" and so on.
const ATTENDEE_NAMES: [&str; 8] = [
    "Dara", "Sok", "Chenda", "Vanna", "Bopha", "Rithy", "Sophea", "Kosal",
];

/// The time `minutes` from now (before now when negative), as RFC 3339.
pub fn from_now(minutes: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339()
}

/// An RFC 3339 time as a protobuf timestamp.
pub fn ts(rfc3339: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339 time");
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// English text, as the API's localized fields take it.
pub fn text(en: &str) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: [("en".to_owned(), en.to_owned())].into(),
    })
}

/// The two speakers of the fixture conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// Sokha Chan, Open Development Cambodia, in Phnom Penh.
    Sokha,
    /// Sarah Miller, Open Knowledge Foundation, in New York.
    Sarah,
}

/// Adds a room of `capacity` to conference `id`, as the admin `admin`.
pub async fn add_room(
    admin: &Client,
    id: &str,
    name: &str,
    capacity: u32,
) -> anyhow::Result<pb::Room> {
    admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: id.into(),
            name: name.into(),
            capacity,
        })
        .await?
        .into_inner()
        .room
        .context("no room in the answer")
}

/// Adds a speaker, available at any hour, to conference `id`, as the admin `admin`.
pub async fn add_speaker(
    admin: &Client,
    id: &str,
    name: &str,
    organisation: &str,
    time_zone: &str,
) -> anyhow::Result<pb::Speaker> {
    admin
        .agenda()
        .add_speaker(pb::AddSpeakerRequest {
            request_id: Client::request_id(),
            conference_id: id.into(),
            name: name.into(),
            organisation: organisation.into(),
            time_zone: time_zone.into(),
            available_from: String::new(),
            available_until: String::new(),
        })
        .await?
        .into_inner()
        .speaker
        .context("no speaker in the answer")
}

/// A conference as the seed report describes ODC 2024: Phnom Penh, a main hall, a speaker in
/// Phnom Penh and one in New York.
#[derive(Debug, Clone)]
pub struct Odc {
    pub conference: pb::Conference,
    pub hall: pb::Room,
    pub sokha: pb::Speaker,
    pub sarah: pb::Speaker,
}

impl Odc {
    /// Creates the conference `id` with its hall and speakers (four events, in this order).
    pub async fn create(admin: &Client, id: &str) -> anyhow::Result<Self> {
        let conference = admin
            .agenda()
            .create_conference(pb::CreateConferenceRequest {
                request_id: Client::request_id(),
                conference_id: id.into(),
                title: Some(pb::LocalizedText {
                    text: [
                        ("en".to_owned(), "Open Data Conference 2024".to_owned()),
                        ("km".to_owned(), "សន្និសីទទិន្នន័យបើកចំហ ២០២៤".to_owned()),
                    ]
                    .into(),
                }),
                default_language: "en".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                join_code: String::new(),
            })
            .await?
            .into_inner()
            .conference
            .context("no conference in the answer")?;
        let hall = add_room(admin, id, "Main hall", 300).await?;
        let speaker = |name, org, zone| add_speaker(admin, id, name, org, zone);
        let sokha = speaker("Sokha Chan", "Open Development Cambodia", "Asia/Phnom_Penh").await?;
        let sarah = speaker(
            "Sarah Miller",
            "Open Knowledge Foundation",
            "America/New_York",
        )
        .await?;
        Ok(Self {
            conference,
            hall,
            sokha,
            sarah,
        })
    }

    pub fn speaker(&self, who: Speaker) -> &pb::Speaker {
        match who {
            Speaker::Sokha => &self.sokha,
            Speaker::Sarah => &self.sarah,
        }
    }

    pub fn join_code(&self) -> &str {
        &self.conference.join_code
    }

    /// A request for a talk in the main hall.
    pub fn session(
        &self,
        title: &str,
        start: &str,
        end: &str,
        speakers: Vec<String>,
    ) -> pb::AddSessionRequest {
        pb::AddSessionRequest {
            request_id: Client::request_id(),
            conference_id: self.conference.id.clone(),
            title: text(title),
            kind: pb::SessionKind::Talk as i32,
            start: Some(ts(start)),
            end: Some(ts(end)),
            room_id: self.hall.id.clone(),
            speaker_ids: speakers,
            backup_speaker_ids: vec![],
            failover: None,
        }
    }
}

/// A talk in the main hall, given by Sokha unless said otherwise.
#[derive(Debug, Clone)]
pub struct Talk {
    title: String,
    start: String,
    end: String,
    speakers: Vec<Speaker>,
    backups: Vec<Speaker>,
    failover: Option<pb::FailoverPolicy>,
}

impl Talk {
    pub fn new(title: &str, start: &str, end: &str) -> Self {
        Self {
            title: title.into(),
            start: start.into(),
            end: end.into(),
            speakers: vec![Speaker::Sokha],
            backups: vec![],
            failover: None,
        }
    }

    /// Given by `speaker` instead of Sokha.
    pub fn by(mut self, speaker: Speaker) -> Self {
        self.speakers = vec![speaker];
        self
    }

    pub fn backup(mut self, speaker: Speaker) -> Self {
        self.backups.push(speaker);
        self
    }

    pub fn failover(mut self, policy: pb::FailoverPolicy) -> Self {
        self.failover = Some(policy);
        self
    }

    fn request(&self, odc: &Odc) -> pb::AddSessionRequest {
        let ids = |who: &[Speaker]| who.iter().map(|s| odc.speaker(*s).id.clone()).collect();
        pb::AddSessionRequest {
            backup_speaker_ids: ids(&self.backups),
            failover: self.failover,
            ..odc.session(&self.title, &self.start, &self.end, ids(&self.speakers))
        }
    }
}

/// A poll of the conference, opened as soon as it is created, with live results.
#[derive(Debug, Clone)]
pub struct NewPoll {
    kind: pb::PollKind,
    question: String,
    options: Vec<String>,
    anonymous: bool,
    locked: bool,
    for_session: bool,
    scale: (i32, i32),
}

impl NewPoll {
    fn new(kind: pb::PollKind, options: &[&str]) -> Self {
        Self {
            kind,
            question: "Which open data matters most to you?".into(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            anonymous: false,
            locked: false,
            for_session: false,
            scale: (0, 0),
        }
    }

    pub fn single_choice(options: &[&str]) -> Self {
        Self::new(pb::PollKind::SingleChoice, options)
    }

    pub fn multiple_choice(options: &[&str]) -> Self {
        Self::new(pb::PollKind::MultipleChoice, options)
    }

    /// A rating from `min` to `max`.
    pub fn rating(min: i32, max: i32) -> Self {
        Self {
            scale: (min, max),
            ..Self::new(pb::PollKind::Rating, &[])
        }
    }

    pub fn word_cloud() -> Self {
        Self::new(pb::PollKind::WordCloud, &[])
    }

    pub fn open_text() -> Self {
        Self::new(pb::PollKind::OpenText, &[])
    }

    pub fn question(mut self, question: &str) -> Self {
        self.question = question.into();
        self
    }

    /// Voters are known to the tally only by a keyed hash.
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// A ballot cannot be changed once cast.
    pub fn locked(mut self) -> Self {
        self.locked = true;
        self
    }

    /// About the show's first session rather than the whole conference.
    pub fn for_session(mut self) -> Self {
        self.for_session = true;
        self
    }
}

/// An attendee who joined with the conference's join code; derefs to their client.
pub struct Attendee {
    pub name: String,
    pub token: String,
    pub client: Client,
}

impl Deref for Attendee {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A ballot of `poll` for `options`.
pub fn ballot(poll: &pb::Poll, options: Vec<String>) -> pb::CastBallotRequest {
    pb::CastBallotRequest {
        conference_id: CONFERENCE.into(),
        poll_id: poll.id.clone(),
        ballot_id: Client::request_id(),
        option_ids: options,
        rating: 0,
        text: String::new(),
    }
}

/// Creates `poll` in the fixture conference (for `session_id`, or for the whole conference when
/// empty) through `admin`, and opens it.
pub async fn open_poll(
    admin: &Client,
    poll: NewPoll,
    session_id: &str,
) -> anyhow::Result<pb::Poll> {
    let created = admin
        .polls()
        .create_poll(pb::CreatePollRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: session_id.into(),
            question: text(&poll.question),
            kind: poll.kind as i32,
            options: poll.options.iter().filter_map(|o| text(o)).collect(),
            max_choices: 0,
            scale_min: poll.scale.0,
            scale_max: poll.scale.1,
            visibility: pb::ResultVisibility::Live as i32,
            lock_ballots: poll.locked,
            anonymous: poll.anonymous,
            publishable: false,
            survey: false,
        })
        .await?
        .into_inner()
        .poll
        .context("no poll in the answer")?;
    admin
        .polls()
        .open_poll(pb::OpenPollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: created.id.clone(),
        })
        .await?;
    Ok(created)
}

/// A running podiumd with the fixture conference and what the test asked for, in the order
/// the builder creates them: conference, sessions, polls, attendees.
pub struct Show {
    pub server: Podiumd,
    pub admin: Client,
    pub odc: Odc,
    pub sessions: Vec<pb::Session>,
    pub polls: Vec<pb::Poll>,
    pub attendees: Vec<Attendee>,
}

impl Show {
    /// What to set up; `.await` it to start podiumd and set it up.
    pub fn start() -> ShowBuilder {
        ShowBuilder::default()
    }

    /// The pre-flight report of every session not ended, as the admin reads it.
    pub async fn preflight(&self) -> anyhow::Result<pb::PreflightResponse> {
        Ok(self
            .admin
            .stage()
            .preflight(pb::PreflightRequest {
                conference_id: CONFERENCE.into(),
                within_hours: 0,
                all: true,
            })
            .await?
            .into_inner())
    }

    /// The first session's id.
    pub fn session_id(&self) -> &str {
        &self.sessions.first().expect("the show has a session").id
    }

    /// Joins one more attendee with the conference's join code, on a connection of their own.
    pub async fn join(&self, name: &str) -> anyhow::Result<Attendee> {
        join(&self.server, self.odc.join_code(), name).await
    }

    /// Adds a talk to the agenda.
    pub async fn add_session(&self, talk: Talk) -> anyhow::Result<pb::Session> {
        self.admin
            .agenda()
            .add_session(talk.request(&self.odc))
            .await?
            .into_inner()
            .session
            .context("no session in the answer")
    }

    /// Creates a poll and opens it.
    pub async fn add_poll(&self, poll: NewPoll) -> anyhow::Result<pb::Poll> {
        let session_id = match poll.for_session {
            true => self.session_id().to_owned(),
            false => String::new(),
        };
        open_poll(&self.admin, poll, &session_id).await
    }

    /// Creates [`OTHER_CONFERENCE`], set up like the fixture conference.
    pub async fn other_conference(&self) -> anyhow::Result<Odc> {
        Odc::create(&self.admin, OTHER_CONFERENCE).await
    }

    /// Issues a token of the conference for `role`, as the admin.
    pub async fn token(
        &self,
        role: pb::Role,
        speaker: Option<Speaker>,
        name: &str,
    ) -> anyhow::Result<String> {
        let speaker_id = speaker.map_or_else(String::new, |s| self.odc.speaker(s).id.clone());
        Ok(self
            .admin
            .access()
            .issue_token(pb::IssueTokenRequest {
                role: role as i32,
                conference_id: CONFERENCE.into(),
                speaker_id,
                name: name.into(),
                ttl_seconds: 0,
            })
            .await?
            .into_inner()
            .token)
    }

    /// Restarts podiumd with SIGTERM on the same data and address, and reconnects the admin.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.server.restart().await?;
        self.admin = self.server.admin().await?;
        Ok(())
    }
}

/// Joins an attendee with `join_code` on a connection of their own.
pub async fn join(server: &Podiumd, join_code: &str, name: &str) -> anyhow::Result<Attendee> {
    let anonymous = server.client(None).await?;
    let token = anonymous
        .access()
        .join(pb::JoinRequest {
            join_code: join_code.into(),
            display_name: name.into(),
        })
        .await?
        .into_inner()
        .token;
    Ok(Attendee {
        name: name.into(),
        client: anonymous.with_token(Some(token.clone()))?,
        token,
    })
}

/// What a [`Show`] starts with; see the module's example.
#[derive(Default)]
pub struct ShowBuilder {
    args: Vec<String>,
    data_dir: Option<PathBuf>,
    talks: Vec<Talk>,
    polls: Vec<NewPoll>,
    attendees: usize,
}

impl ShowBuilder {
    /// Extra podiumd command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Keeps podiumd's data in `dir` (which the test owns) instead of a temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn session(mut self, talk: Talk) -> Self {
        self.talks.push(talk);
        self
    }

    pub fn poll(mut self, poll: NewPoll) -> Self {
        self.polls.push(poll);
        self
    }

    /// Joins `n` attendees: Dara, Sok, Chenda, Vanna, ...
    pub fn attendees(mut self, n: usize) -> Self {
        self.attendees = n;
        self
    }

    async fn set_up(self) -> anyhow::Result<Show> {
        let (args, data_dir) = (self.args, self.data_dir);
        // Starting builds the binaries the first time and reads podiumd's first line: blocking.
        let server = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match data_dir {
                Some(dir) => Podiumd::start_in(&dir, &args),
                None => Podiumd::start_with(&args),
            }
        })
        .await??;
        let admin = server.admin().await?;
        let odc = Odc::create(&admin, CONFERENCE).await?;
        let mut show = Show {
            server,
            admin,
            odc,
            sessions: vec![],
            polls: vec![],
            attendees: vec![],
        };
        for talk in self.talks {
            let session = show.add_session(talk).await?;
            show.sessions.push(session);
        }
        for poll in self.polls {
            let poll = show.add_poll(poll).await?;
            show.polls.push(poll);
        }
        for i in 0..self.attendees {
            let name = ATTENDEE_NAMES
                .get(i)
                .map_or_else(|| format!("Attendee {}", i + 1), |n| (*n).to_owned());
            let attendee = show.join(&name).await?;
            show.attendees.push(attendee);
        }
        Ok(show)
    }
}

impl IntoFuture for ShowBuilder {
    type Output = anyhow::Result<Show>;
    type IntoFuture = Pin<Box<dyn Future<Output = anyhow::Result<Show>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.set_up())
    }
}

/// The request that leaves `session` as it is: what a change starts from.
pub fn unchanged(session: &pb::Session) -> pb::UpdateSessionRequest {
    let utc = |t: &Option<pb::ZonedTime>| t.as_ref().and_then(|t| t.utc);
    let speakers = |backup: bool| {
        session
            .speakers
            .iter()
            .filter(|s| s.backup == backup)
            .map(|s| s.speaker_id.clone())
            .collect()
    };
    pb::UpdateSessionRequest {
        request_id: Client::request_id(),
        conference_id: session.conference_id.clone(),
        session_id: session.id.clone(),
        title: session.title.clone(),
        kind: session.kind,
        start: utc(&session.start),
        end: utc(&session.end),
        room_id: session.room_id.clone(),
        speaker_ids: speakers(false),
        backup_speaker_ids: speakers(true),
        failover: session.failover,
        expected_revision: Some(session.revision),
    }
}
