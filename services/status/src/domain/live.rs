//! A session's persistent status and its fold: [`SessionLive::apply`] is the only way it
//! changes, for events the machine just decided and for events read back from the log alike,
//! so **a replay rebuilds it exactly**.

use std::collections::BTreeMap;

use super::types::{Alert, Cause, Figures, Lifecycle, LinkState, Millis, Source, StatusEvent};

/// Alerts kept per session.
const MAX_ALERTS: usize = 10;

/// A speaker's link as the status shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    pub state: LinkState,
    /// The latest figures logged: at a change of state, and sampled while the state holds.
    pub figures: Figures,
    /// When the state last changed.
    pub changed_at: Millis,
    /// When `figures` were measured.
    #[serde(default)]
    pub figures_at: Millis,
}

/// The persistent status of one session: a fold of its events.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionLive {
    pub lifecycle: Lifecycle,
    pub source: Option<Source>,
    pub pinned: bool,
    pub went_live_at: Option<Millis>,
    pub links: BTreeMap<String, LinkView>,
    pub alerts: Vec<Alert>,
    pub cause: Option<Cause>,
    /// The speaker a rule took off air, to return to under `return_when_stable`.
    pub fell_back_from: Option<String>,
}

impl Default for SessionLive {
    fn default() -> Self {
        Self {
            lifecycle: Lifecycle::Scheduled,
            source: None,
            pinned: false,
            went_live_at: None,
            links: BTreeMap::new(),
            alerts: Vec::new(),
            cause: None,
            fell_back_from: None,
        }
    }
}

impl SessionLive {
    pub fn apply(&mut self, event: &StatusEvent) {
        match event {
            StatusEvent::WentLive { source, at, .. } => {
                self.lifecycle = Lifecycle::Live;
                self.source = Some(source.clone());
                self.went_live_at = Some(*at);
                self.cause = Some(Cause::SessionStarted);
                self.fell_back_from = None;
            }
            StatusEvent::Ended { .. } => self.lifecycle = Lifecycle::Ended,
            StatusEvent::Switched {
                from, to, cause, ..
            } => {
                if cause.automatic_failover() {
                    if let Some(speaker) = from.live_speaker() {
                        self.fell_back_from = Some(speaker.to_owned());
                    }
                } else {
                    self.fell_back_from = None;
                }
                self.source = Some(to.clone());
                self.cause = Some(*cause);
            }
            StatusEvent::Pinned { pinned, .. } => self.pinned = *pinned,
            StatusEvent::Link {
                speaker_id,
                state,
                figures,
                at,
            } => {
                // The same state again is a sample of the figures: the change keeps its time.
                let changed_at = match self.links.get(speaker_id) {
                    Some(view) if view.state == *state => view.changed_at,
                    _ => *at,
                };
                self.links.insert(
                    speaker_id.clone(),
                    LinkView {
                        state: *state,
                        figures: *figures,
                        changed_at,
                        figures_at: *at,
                    },
                );
            }
            StatusEvent::Alert(alert) => {
                self.alerts.push(alert.clone());
                if self.alerts.len() > MAX_ALERTS {
                    self.alerts.remove(0);
                }
            }
        }
    }

    pub(crate) fn link_state(&self, speaker_id: &str) -> LinkState {
        self.links
            .get(speaker_id)
            .map_or(LinkState::Offline, |l| l.state)
    }
}
