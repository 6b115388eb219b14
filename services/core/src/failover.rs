//! A session's failover policy: how long a speaker may be silent or on a poor link before the
//! session falls back to a recording, and whether it returns to the speaker when the link is
//! stable again. The agenda validates and stores it; the status service folds it from the
//! agenda's events and runs its failover machine by it, so both must read the same defaults.

use crate::InvalidField;

/// What happens once a session has fallen back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Failback {
    /// Stay on the fallback until a moderator switches.
    Sticky,
    /// Return to the speaker once their link has been healthy for `clear_after_ms`.
    ReturnWhenStable,
}

/// How a session falls back to its recording, every default filled in. Milliseconds and
/// percentages, as in `podium.v1.FailoverPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailoverPolicy {
    pub failover_after_ms: u32,
    pub failback: Failback,
    pub clear_after_ms: u32,
    pub max_loss_percent: u32,
    pub max_round_trip_ms: u32,
    pub poor_for_ms: u32,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            failover_after_ms: 1000,
            failback: Failback::Sticky,
            clear_after_ms: 10_000,
            max_loss_percent: 10,
            max_round_trip_ms: 2500,
            poor_for_ms: 5000,
        }
    }
}

impl FailoverPolicy {
    /// The policy a request or stored event asks for, where 0 means "the default" (protobuf's
    /// unset value), so a client names only what it changes.
    pub fn or_defaults(self) -> Self {
        let d = Self::default();
        let or = |v: u32, default: u32| if v == 0 { default } else { v };
        Self {
            failover_after_ms: or(self.failover_after_ms, d.failover_after_ms),
            failback: self.failback,
            clear_after_ms: or(self.clear_after_ms, d.clear_after_ms),
            max_loss_percent: or(self.max_loss_percent, d.max_loss_percent),
            max_round_trip_ms: or(self.max_round_trip_ms, d.max_round_trip_ms),
            poor_for_ms: or(self.poor_for_ms, d.poor_for_ms),
        }
    }

    /// Checks the limits a real show needs.
    pub fn validated(self) -> Result<Self, InvalidField> {
        if self.failover_after_ms < 100 || self.failover_after_ms > 60_000 {
            return Err(InvalidField::new(
                "failover.failover_after_ms",
                "must be 100 to 60000",
            ));
        }
        if self.clear_after_ms > 600_000 {
            return Err(InvalidField::new(
                "failover.clear_after_ms",
                "must be at most 600000",
            ));
        }
        if self.max_loss_percent == 0 || self.max_loss_percent > 100 {
            return Err(InvalidField::new(
                "failover.max_loss_percent",
                "must be 1 to 100",
            ));
        }
        if self.poor_for_ms > 600_000 {
            return Err(InvalidField::new(
                "failover.poor_for_ms",
                "must be at most 600000",
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_take_the_defaults_and_limits_name_the_field() {
        let asked = FailoverPolicy {
            failover_after_ms: 0,
            failback: Failback::ReturnWhenStable,
            clear_after_ms: 0,
            max_loss_percent: 0,
            max_round_trip_ms: 0,
            poor_for_ms: 3000,
        };
        let filled = asked.or_defaults();
        assert_eq!(
            filled,
            FailoverPolicy {
                failback: Failback::ReturnWhenStable,
                poor_for_ms: 3000,
                ..FailoverPolicy::default()
            }
        );
        assert_eq!(filled.validated(), Ok(filled));
        let fast = FailoverPolicy {
            failover_after_ms: 50,
            ..FailoverPolicy::default()
        };
        assert_eq!(
            fast.validated().unwrap_err().to_string(),
            "failover.failover_after_ms: must be 100 to 60000"
        );
    }
}
