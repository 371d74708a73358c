//! The one error type of the service layer and its one mapping to
//! `tonic::Status`.
//!
//! Every operation returns [`Error`]; handlers turn it into a status with `?`.
//! The mapping is exhaustive (no catch-all arm), so a new variant cannot reach
//! callers without a deliberate code. Internal causes are logged here and never
//! sent to the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `google.rpc.ErrorInfo` azora sends.
pub const ERROR_DOMAIN: &str = "azora";

/// One invalid field of a request, named by its path in the request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; nothing was read or written.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("a {entity} with this {field} already exists")]
    AlreadyExists { entity: &'static str, field: String },
    #[error("permission denied")]
    PermissionDenied,
    /// A value that is well-formed but outside what the system covers, such
    /// as a time before the records began.
    #[error("{field}: {message}")]
    OutOfRange {
        field: &'static str,
        message: String,
    },
    #[error("unauthenticated")]
    Unauthenticated,
    /// The request is well-formed but the system is not in a state that
    /// allows it. `reason` is a stable UPPER_SNAKE_CASE code for clients.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// The caller holds too much of something (open streams); retrying once
    /// it has released some may succeed. `reason` is a stable code.
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
    },
    /// A dependency (the database) did not answer in time; retrying later
    /// may succeed.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected state: logged in full, reported as INTERNAL.
    #[error("internal error: {0}")]
    Internal(String),
    /// One item of an all-or-nothing batch failed, and with it the batch:
    /// the item's own error, with its code, naming the item (`list[index]`,
    /// and `field` within it when known).
    #[error("{list}[{index}]: {source}")]
    InBatch {
        list: &'static str,
        index: usize,
        field: Option<&'static str>,
        source: Box<Error>,
    },
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<Vec<FieldViolation>> for Error {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument(violations)
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

fn info(reason: &str, metadata: Vec<(&str, String)>) -> ErrorDetails {
    ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        metadata
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<std::collections::HashMap<_, _>>(),
    )
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let message = format!("invalid request: {}", describe(&violations));
                let mut details = info("INVALID_ARGUMENT", vec![]);
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|violation| {
                            tonic_types::FieldViolation::new(violation.field, violation.description)
                        })
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { entity, id } => Status::with_error_details(
                Code::NotFound,
                format!("{entity} {id} not found"),
                info("NOT_FOUND", vec![("entity", entity.to_owned()), ("id", id)]),
            ),
            Error::AlreadyExists { entity, field } => Status::with_error_details(
                Code::AlreadyExists,
                format!("a {entity} with this {field} already exists"),
                info(
                    "ALREADY_EXISTS",
                    vec![("entity", entity.to_owned()), ("field", field)],
                ),
            ),
            Error::PermissionDenied => Status::with_error_details(
                Code::PermissionDenied,
                "permission denied",
                info("PERMISSION_DENIED", vec![]),
            ),
            Error::OutOfRange { field, message } => {
                let mut details = info("OUT_OF_RANGE", vec![]);
                details.set_bad_request(vec![tonic_types::FieldViolation::new(
                    field,
                    message.clone(),
                )]);
                Status::with_error_details(Code::OutOfRange, format!("{field}: {message}"), details)
            }
            // No detail at all: a caller probing keys learns nothing.
            Error::Unauthenticated => Status::unauthenticated("missing or invalid credentials"),
            Error::FailedPrecondition { reason, message } => {
                Status::with_error_details(Code::FailedPrecondition, message, info(reason, vec![]))
            }
            Error::ResourceExhausted { reason, message } => {
                Status::with_error_details(Code::ResourceExhausted, message, info(reason, vec![]))
            }
            Error::Unavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable");
                Status::with_error_details(
                    Code::Unavailable,
                    "the database is unavailable; retry later",
                    info("DEPENDENCY_UNAVAILABLE", vec![]),
                )
            }
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error")
            }
            Error::InBatch {
                list,
                index,
                field,
                source,
            } => {
                let item = format!("{list}[{index}]");
                let inner = Status::from(*source);
                let inner_details = inner.get_error_details();
                let reason = inner_details
                    .error_info()
                    .map_or_else(|| format!("{:?}", inner.code()), |info| info.reason.clone());
                let mut violations: Vec<tonic_types::FieldViolation> = inner_details
                    .bad_request()
                    .map(|bad| {
                        bad.field_violations
                            .iter()
                            .map(|violation| {
                                tonic_types::FieldViolation::new(
                                    format!("{item}.{}", violation.field),
                                    violation.description.clone(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if violations.is_empty() {
                    let named =
                        field.map_or_else(|| item.clone(), |field| format!("{item}.{field}"));
                    violations.push(tonic_types::FieldViolation::new(named, inner.message()));
                }
                let mut details = info(&reason, vec![("index", index.to_string())]);
                details.set_bad_request(violations);
                Status::with_error_details(
                    inner.code(),
                    format!("{item}: {}", inner.message()),
                    details,
                )
            }
        }
    }
}
