//! Conversions every gRPC transport shares: collecting field violations,
//! ids, amounts, reasons and request ids, optional fields, timestamps, JSON
//! objects carried as `Struct`, and database-polled server streams.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use uuid::Uuid;

use crate::error::{Error, FieldViolation};
use crate::money::{Amount, RequestId};
use crate::proto::types::Decimal;

/// The retry key of a unary request from its optional `request_id` field
/// (see [`crate::idempotency`]).
pub fn request_key(
    message: &impl prost::Message,
    request_id: &str,
) -> Result<Option<crate::idempotency::RequestKey>, Error> {
    crate::idempotency::RequestKey::of("request_id", request_id, message).map_err(Error::from)
}

/// A required UUID (an empty string is a missing field).
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, FieldViolation> {
    if text.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Uuid::parse_str(text).map_err(|_| FieldViolation::new(field, "must be a UUID"))
}

/// The longest free-text reason a mutating call may carry.
pub const MAX_REASON: usize = 500;

/// A positive AZR amount from the wire's exact decimal.
pub fn amount(field: &str, value: Option<&Decimal>) -> Result<Amount, FieldViolation> {
    Amount::parse(
        field,
        value
            .map(|decimal| decimal.value.as_str())
            .unwrap_or_default(),
    )
}

pub fn reason(field: &str, text: String) -> Result<String, FieldViolation> {
    if text.chars().count() > MAX_REASON {
        Err(FieldViolation::new(
            field,
            format!("must be at most {MAX_REASON} characters"),
        ))
    } else {
        Ok(text)
    }
}

/// The request id a ledger call must carry (its idempotency key), recorded
/// as a violation when missing or malformed.
pub fn required_request_id(v: &mut Violations, request_id: &str) -> Option<RequestId> {
    v.check(RequestId::parse("request_id", request_id))
}

/// Collects field violations so a request reports all of them at once.
#[derive(Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|violation| self.0.push(violation)).ok()
    }

    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Error> {
        match (self.0.is_empty(), build()) {
            (true, Some(value)) => Ok(value),
            (false, _) => Err(Error::InvalidArgument(self.0)),
            (true, None) => Err(Error::internal(
                "a parsed field went missing without a violation",
            )),
        }
    }
}

pub fn optional<T>(
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldViolation>,
) -> Result<Option<T>, FieldViolation> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some)
    }
}

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn datetime_from(field: &str, value: &Timestamp) -> Result<DateTime<Utc>, FieldViolation> {
    u32::try_from(value.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
        .ok_or_else(|| FieldViolation::new(field, "is not a valid timestamp"))
}

/// An optional timestamp field (absent is `None`).
pub fn optional_time(
    field: &str,
    value: Option<&Timestamp>,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    value.map(|at| datetime_from(field, at)).transpose()
}

pub fn struct_to_json(
    field: &str,
    object: prost_types::Struct,
) -> Result<serde_json::Map<String, serde_json::Value>, FieldViolation> {
    object_to_json(field, object, 1)
}

pub fn value_to_json(
    field: &str,
    value: prost_types::Value,
) -> Result<serde_json::Value, FieldViolation> {
    value_at_depth(field, value, 0)
}

/// `depth` is the number of objects and arrays around `object`, itself
/// included.
fn object_to_json(
    field: &str,
    object: prost_types::Struct,
    depth: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, FieldViolation> {
    if depth > MAX_JSON_DEPTH {
        return Err(FieldViolation::new(field, too_deep()));
    }
    object
        .fields
        .into_iter()
        .map(|(key, value)| Ok((key, value_at_depth(field, value, depth)?)))
        .collect()
}

/// `depth` is the number of objects and arrays around `value`.
fn value_at_depth(
    field: &str,
    value: prost_types::Value,
    depth: usize,
) -> Result<serde_json::Value, FieldViolation> {
    use prost_types::value::Kind;
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(flag),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text),
        Some(Kind::NumberValue(number)) => serde_json::Number::from_f64(number)
            .map(serde_json::Value::Number)
            .ok_or_else(|| FieldViolation::new(field, "numbers must be finite"))?,
        Some(Kind::StructValue(object)) => {
            serde_json::Value::Object(object_to_json(field, object, depth + 1)?)
        }
        Some(Kind::ListValue(list)) => {
            if depth + 1 > MAX_JSON_DEPTH {
                return Err(FieldViolation::new(field, too_deep()));
            }
            serde_json::Value::Array(
                list.values
                    .into_iter()
                    .map(|value| value_at_depth(field, value, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

pub fn json_to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_to_struct(object: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .into_iter()
            .map(|(key, value)| (key, json_to_value(value)))
            .collect(),
    }
}

/// The largest JSON object (metadata) a request may carry, serialised.
pub const MAX_JSON_OBJECT_BYTES: usize = 16 * 1024;

/// The deepest metadata a request may carry: objects and arrays nested at
/// most this many levels, the metadata object itself being level 1
/// (`{"a": {"b": [1]}}` has 3). Why so low: every JSON level is three
/// protobuf messages (`Struct`, its map entry, `Value`), and stock clients
/// refuse deep responses — prost and Python's protobuf stop at 100 nested
/// messages (~33 levels), so a deeper request cannot even be decoded and a
/// response close to that cannot be read back. 8 levels stay far below
/// every limit, inside whatever message carries the metadata.
pub const MAX_JSON_DEPTH: usize = 8;

/// The violation's description for metadata nested deeper than
/// [`MAX_JSON_DEPTH`]; the codec uses the same words.
pub fn too_deep() -> String {
    format!(
        "nests objects and arrays deeper than {MAX_JSON_DEPTH} levels; at most {MAX_JSON_DEPTH} are allowed"
    )
}

/// A JSON object from an optional `Struct`, at most 16 KiB serialised and
/// [`MAX_JSON_DEPTH`] levels deep.
pub fn json_object(
    field: &str,
    value: Option<prost_types::Struct>,
) -> Result<serde_json::Map<String, serde_json::Value>, FieldViolation> {
    let object = match value {
        Some(object) => struct_to_json(field, object)?,
        None => serde_json::Map::new(),
    };
    let size = serde_json::Value::Object(object.clone()).to_string().len();
    if size > MAX_JSON_OBJECT_BYTES {
        return Err(FieldViolation::new(
            field,
            format!("is {size} bytes as JSON; at most {MAX_JSON_OBJECT_BYTES} are allowed"),
        ));
    }
    Ok(object)
}

/// A JSON value as returned to callers: objects become `Struct`, anything
/// else an empty one.
pub fn struct_from_json(value: serde_json::Value) -> prost_types::Struct {
    match value {
        serde_json::Value::Object(object) => json_to_struct(object),
        _ => prost_types::Struct::default(),
    }
}

/// An amount of micro-AZR (or micro-USD) as the wire's exact decimal.
pub fn azr_decimal(micros: i64) -> Option<crate::proto::types::Decimal> {
    Some(crate::proto::types::Decimal {
        value: crate::money::format_azr(micros),
    })
}

/// What one poll of a watched source found.
pub enum Polled<T> {
    /// Messages to send; the source is polled again at once.
    Messages(Vec<T>),
    /// Nothing new; the source is polled again after the interval.
    Nothing,
    /// The source is done; the stream ends.
    Finished,
}

impl<T> Polled<T> {
    /// The same finding with each message converted (to its proto form).
    pub fn map<M>(self, convert: impl FnMut(T) -> M) -> Polled<M> {
        match self {
            Polled::Messages(items) => Polled::Messages(items.into_iter().map(convert).collect()),
            Polled::Nothing => Polled::Nothing,
            Polled::Finished => Polled::Finished,
        }
    }
}

/// A server stream fed by polling the database, so that it sees what any
/// replica wrote. `poll` takes the cursor and returns the next one with what
/// it found. The stream ends when `poll` reports the source finished or fails
/// (the error is sent), when the caller's key is no longer valid
/// (UNAUTHENTICATED, see [`crate::streams`]), when the client goes away, or
/// when `shutdown` fires. `permit` is held by the task feeding the stream, so
/// the key's stream slot is freed whichever way it ends.
pub fn polling_stream<T, C, F, Fut>(
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut permit: crate::streams::WatchPermit,
    mut cursor: C,
    mut poll: F,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>
where
    T: Send + 'static,
    C: Send + 'static,
    F: FnMut(C) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(C, Polled<T>), Error>> + Send,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            if let Err(error) = permit.check_key().await {
                let _ = sender.send(Err(tonic::Status::from(error))).await;
                return;
            }
            match poll(cursor).await {
                Ok((next, Polled::Messages(messages))) => {
                    cursor = next;
                    for message in messages {
                        if sender.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok((next, Polled::Nothing)) => cursor = next,
                Ok((_, Polled::Finished)) => return,
                Err(error) => {
                    let _ = sender.send(Err(tonic::Status::from(error))).await;
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sender.closed() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// A value the request must give: `None` (an UNSPECIFIED enum, an empty
/// optional field) becomes "is required" on `field`.
pub fn required<T>(
    field: &str,
    value: Result<Option<T>, FieldViolation>,
) -> Result<T, FieldViolation> {
    value.and_then(|value| value.ok_or_else(|| FieldViolation::new(field, "is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize, list_every_other: bool) -> prost_types::Struct {
        use prost_types::value::Kind;
        let mut value = prost_types::Value {
            kind: Some(Kind::StringValue("leaf".into())),
        };
        // Innermost first: `levels - 1` containers around the leaf, inside
        // the top object.
        for level in 1..levels {
            value = prost_types::Value {
                kind: Some(if list_every_other && level % 2 == 0 {
                    Kind::ListValue(prost_types::ListValue {
                        values: vec![value],
                    })
                } else {
                    Kind::StructValue(prost_types::Struct {
                        fields: [("a".to_owned(), value)].into(),
                    })
                }),
            };
        }
        prost_types::Struct {
            fields: [("a".to_owned(), value)].into(),
        }
    }

    #[test]
    fn metadata_may_nest_objects_and_arrays_up_to_the_limit_and_no_deeper() {
        for lists in [false, true] {
            assert!(json_object("metadata", Some(nested(MAX_JSON_DEPTH, lists))).is_ok());
            let violation = json_object("metadata", Some(nested(MAX_JSON_DEPTH + 1, lists)))
                .expect_err("one level too deep");
            assert_eq!(violation.field, "metadata");
            assert_eq!(violation.description, too_deep());
        }
    }
}
