//! The gRPC layer of feedback: the `podium.v1.Polls`, `podium.v1.Questions` and
//! `podium.v1.Ratings` services, and the publisher that streams poll results and Q&A to
//! watchers. The only place that sees prost requests and `tonic::Status`: each handler checks
//! the caller's role, parses the request once into a domain value, calls one command (or
//! reads the model), and converts the service's one error enum at the end.

mod publisher;

pub mod polls;
pub mod qa;
pub mod ratings;

pub(crate) use podium_access::MODERATORS;
pub use polls::{PollsService, Published};
pub use publisher::{COALESCE, Pace};
