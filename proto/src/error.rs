//! The one mapping from podium's errors to gRPC status codes.
//!
//! Every service keeps its own error enum (what it can refuse, in its own words) and says, in
//! one exhaustive `match`, which [`ServiceErrorCode`] each variant is. [`into_status`] is the
//! only place that turns such an error into a `tonic::Status`: it picks the gRPC code, logs
//! server-side failures with their cause, and sends the client a short message it can act on.
//! [`service_error_status!`](crate::service_error_status) writes the `From<E> for Status` that
//! lets handlers use `?`; each is a call of [`into_status`], never a mapping of its own.

use tonic::{Code, Status};

/// The small set of outcomes a podium RPC can be refused with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceErrorCode {
    /// A field of the request is malformed; the message names the field.
    InvalidArgument,
    /// The thing asked for does not exist, or the caller may not know that it does.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The request does not fit the current state (a closed poll, a session not live).
    FailedPrecondition,
    /// Lost a race with another writer; read again and retry.
    Aborted,
    /// The caller is known but its role may not do this.
    PermissionDenied,
    /// No token, or a token that is not valid.
    Unauthenticated,
    /// A size or rate limit was reached.
    ResourceExhausted,
    /// The server cannot do it now (storage unavailable, disk full); nothing was written.
    Unavailable,
    /// No answer came in time from the node that does it: what was asked may still take
    /// effect, so look before asking again.
    DeadlineExceeded,
    /// A bug or corrupt state on the server; the client cannot fix it.
    Internal,
}

impl ServiceErrorCode {
    /// The gRPC code clients see.
    pub fn grpc_code(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::Aborted => Code::Aborted,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unavailable => Code::Unavailable,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Internal => Code::Internal,
        }
    }
}

/// An error a service can answer a request with.
pub trait ServiceError: std::error::Error {
    /// Which outcome this is; one exhaustive `match` per error type.
    fn error_code(&self) -> ServiceErrorCode;

    /// What the client is told. By default the error's own message; errors whose display
    /// carries server detail (paths, causes) say something shorter here.
    fn client_message(&self) -> String {
        self.to_string()
    }
}

/// The one conversion of a service error into a gRPC status. Internal errors are logged with
/// their cause and reach the client as "internal error"; unavailable ones are logged too.
pub fn into_status<E: ServiceError + ?Sized>(error: &E) -> Status {
    let code = error.error_code();
    match code {
        ServiceErrorCode::Internal => {
            tracing::error!(error = %error, "request failed on the server");
            Status::internal("internal error")
        }
        ServiceErrorCode::Unavailable => {
            tracing::error!(error = %error, "request refused: server unavailable");
            Status::new(code.grpc_code(), error.client_message())
        }
        _ => Status::new(code.grpc_code(), error.client_message()),
    }
}

/// Writes `impl From<E> for tonic::Status` through [`into_status`] for each error type named,
/// so handlers can use `?`.
#[macro_export]
macro_rules! service_error_status {
    ($($error:ty),+ $(,)?) => {$(
        impl ::core::convert::From<$error> for ::tonic::Status {
            fn from(error: $error) -> Self {
                $crate::error::into_status(&error)
            }
        }
    )+};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("poll p1 is closed")]
        Closed,
        #[error("disk at /data failed: EIO")]
        Broken,
    }

    impl ServiceError for Sample {
        fn error_code(&self) -> ServiceErrorCode {
            match self {
                Self::Closed => ServiceErrorCode::FailedPrecondition,
                Self::Broken => ServiceErrorCode::Internal,
            }
        }
    }

    #[test]
    fn a_refusal_keeps_its_message_and_an_internal_error_hides_its_cause() {
        let closed = into_status(&Sample::Closed);
        assert_eq!(closed.code(), Code::FailedPrecondition);
        assert_eq!(closed.message(), "poll p1 is closed");
        let broken = into_status(&Sample::Broken);
        assert_eq!(broken.code(), Code::Internal);
        assert_eq!(broken.message(), "internal error");
    }
}
