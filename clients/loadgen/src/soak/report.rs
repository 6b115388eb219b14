//! The soak's report: podiumd's figures after each day, the tallies checked, and the memory
//! target.

use std::fmt;

use podium_client::pb;

use super::Config;

/// Target (README, "Targets"): memory after the last day at most this times after the first.
pub const TARGET_GROWTH: f64 = 1.2;

/// podiumd's figures after one day.
#[derive(Debug, Clone)]
pub struct Day {
    pub process: pb::ProcessResponse,
    pub ballots: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    pub start: pb::ProcessResponse,
    pub days: Vec<Day>,
    pub polls_checked: usize,
    pub tally_mismatches: Vec<String>,
    pub failovers: u64,
    pub switches: u64,
    pub questions: u64,
}

impl Report {
    /// Resident memory after the last day as a ratio to after the first.
    pub fn growth(&self) -> Option<f64> {
        let first = self.days.first()?.process.resident_bytes;
        let last = self.days.last()?.process.resident_bytes;
        Some(last as f64 / first.max(1) as f64)
    }

    pub fn meets_target(&self) -> bool {
        self.tally_mismatches.is_empty() && self.growth().is_some_and(|g| g <= TARGET_GROWTH)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "conference      {} days x {} rooms x {} sessions, {} attendees, {} polls and {} questions a session",
            c.days, c.rooms, c.sessions, c.attendees, c.polls, c.questions
        )?;
        writeln!(
            f,
            "played          {} ballots, {} questions, {} failovers, {} moderator switches",
            self.days.iter().map(|d| d.ballots).sum::<u64>(),
            self.questions,
            self.failovers,
            self.switches
        )?;
        let p = &self.start;
        writeln!(
            f,
            "before day 1    RSS {:.1} MiB  open files {}  threads {}  tasks {}",
            mib(p.resident_bytes),
            p.open_files,
            p.threads,
            p.tasks
        )?;
        for (i, day) in self.days.iter().enumerate() {
            let p = &day.process;
            writeln!(
                f,
                "after day {}     RSS {:.1} MiB  open files {}  threads {}  tasks {}  ({} ballots in {:.0} s)",
                i + 1,
                mib(p.resident_bytes),
                p.open_files,
                p.threads,
                p.tasks,
                day.ballots,
                day.seconds
            )?;
        }
        writeln!(
            f,
            "tallies         {} polls checked against the attendees' latest ballots: {}",
            self.polls_checked,
            if self.tally_mismatches.is_empty() {
                "all equal".to_owned()
            } else {
                format!(
                    "{} DIFFER: {:?}",
                    self.tally_mismatches.len(),
                    self.tally_mismatches
                )
            }
        )?;
        match self.growth() {
            Some(growth) => write!(
                f,
                "target          RSS after day {} / after day 1 = {growth:.2}; at most {TARGET_GROWTH}: {}",
                self.days.len(),
                if growth <= TARGET_GROWTH {
                    "met"
                } else {
                    "MISSED"
                }
            ),
            None => write!(f, "target          no day played"),
        }
    }
}
