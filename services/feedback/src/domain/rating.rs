//! Session ratings with no storage or transport: what a rating may say, and the fold that keeps
//! each attendee's latest rating and the counts per point.
//!
//! **The counts are always those of each attendee's latest rating**: a new rating takes the
//! old one out before it is counted.

use std::collections::HashMap;

use podium_core::InvalidField;
use podium_text::Limit;

use crate::error::RatingError;

/// Lowest and highest rating.
pub const MIN: i32 = 1;
pub const MAX: i32 = 5;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;
/// A comment: one line or several, may be empty.
pub const COMMENT: Limit = Limit::lines(MAX_COMMENT_CHARS).optional();

/// Checks a rating and returns the comment cleaned under podium's text policy.
pub fn check(rating: i32, comment: &str) -> Result<String, RatingError> {
    if !(MIN..=MAX).contains(&rating) {
        return Err(RatingError::from(InvalidField::new(
            "rating",
            format!("must be {MIN} to {MAX}, not {rating}"),
        )));
    }
    Ok(podium_text::clean("comment", comment, &COMMENT)?)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Latest {
    rating: i32,
    comment: String,
    /// Log position, to list comments oldest first.
    position: u64,
}

/// A session's ratings as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionRatings {
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    latest: HashMap<String, Latest>,
    /// Count per point, from [`MIN`].
    counts: [u64; (MAX - MIN + 1) as usize],
}

impl SessionRatings {
    /// Counts `rater`'s rating in place of their earlier one; true if it replaced one.
    /// Ratings outside the scale are ignored.
    pub fn rate(&mut self, rater: &str, rating: i32, comment: &str, position: u64) -> bool {
        let Some(slot) = usize::try_from(rating - MIN)
            .ok()
            .filter(|i| *i < self.counts.len())
        else {
            return false;
        };
        let earlier = self.latest.insert(
            rater.to_owned(),
            Latest {
                rating,
                comment: comment.to_owned(),
                position,
            },
        );
        if let Some(earlier) = &earlier
            && let Some(n) = self.counts.get_mut((earlier.rating - MIN) as usize)
        {
            *n = n.saturating_sub(1);
        }
        self.counts[slot] += 1;
        earlier.is_some()
    }

    /// Forgets `rater`'s comment (their person was erased), keeping their rating in the
    /// counts; true when there was one.
    pub fn erase_comment(&mut self, rater: &str) -> bool {
        match self.latest.get_mut(rater) {
            Some(latest) if !latest.comment.is_empty() => {
                latest.comment = podium_eventlog::personal::ERASED.to_owned();
                true
            }
            _ => false,
        }
    }

    /// (count, mean, count per point from [`MIN`]).
    pub fn summary(&self) -> (u64, f64, Vec<u64>) {
        let count: u64 = self.counts.iter().sum();
        let sum: i64 = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| (MIN as i64 + i as i64) * *n as i64)
            .sum();
        let mean = if count == 0 {
            0.0
        } else {
            sum as f64 / count as f64
        };
        (count, mean, self.counts.to_vec())
    }

    /// The non-empty comments of each attendee's latest rating, oldest first, without raters.
    pub fn comments(&self) -> Vec<String> {
        let mut latest: Vec<&Latest> = self
            .latest
            .values()
            .filter(|l| !l.comment.is_empty())
            .collect();
        latest.sort_by_key(|l| l.position);
        latest.into_iter().map(|l| l.comment.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_rating_replaces_the_old_one() {
        let mut r = SessionRatings::default();
        assert!(!r.rate("att-1", 5, "great", 1));
        assert!(!r.rate("att-2", 3, "", 2));
        assert!(r.rate("att-1", 4, "good, on reflection", 3));
        assert!(!r.rate("att-3", 9, "", 4), "outside the scale");
        let (count, mean, distribution) = r.summary();
        assert_eq!((count, mean), (2, 3.5));
        assert_eq!(distribution, [0, 0, 1, 1, 0]);
        assert_eq!(r.comments(), ["good, on reflection"]);
    }

    #[test]
    fn ratings_and_comments_are_checked() {
        assert!(check(0, "").is_err());
        assert!(matches!(
            check(6, ""),
            Err(RatingError::Invalid(InvalidField {
                field: "rating",
                ..
            }))
        ));
        assert_eq!(check(5, "  two\nlines ").unwrap(), "two\nlines");
        assert!(check(5, &"x".repeat(1001)).is_err());
        assert!(matches!(
            check(1, "\u{1b}[31m"),
            Err(RatingError::Text(podium_text::TextError {
                field: "comment",
                ..
            }))
        ));
    }
}
