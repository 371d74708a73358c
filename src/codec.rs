//! The codec every azora service is generated with (`build.rs`:
//! `codec_path`): prost's encoding unchanged, and a request decoder that
//! refuses, with INVALID_ARGUMENT and a field violation naming the field,
//! what prost or the databases cannot take.
//!
//! - **A body that does not decode** is the caller's mistake, not ours:
//!   INVALID_ARGUMENT (tonic-prost answers INTERNAL), naming the field where
//!   the bytes went wrong when it can be found.
//! - **NUL in any string** (fields, map keys and values, strings nested in a
//!   `google.protobuf.Struct`): PostgreSQL `text`/`jsonb` cannot store it and
//!   SQLite can, so without this the backends would disagree. Refusing it
//!   here, for every request type at once, means no field can be forgotten.
//! - **Metadata nested deeper than [`MAX_JSON_DEPTH`]** is refused with the
//!   same words as [`crate::transport::json_object`], also when it is too
//!   deep for prost to decode at all (prost's recursion limit of 100 messages
//!   is ~33 `Struct` levels).
//!
//! Cost: a string holding NUL is encoded with a 0x00 byte, so a body with no
//! 0x00 byte at all (one `memchr`) is decoded exactly as prost does. Only a
//! body with a 0x00 byte (doubles, empty messages, …) or one prost refuses is
//! walked, once, over its wire format, guided by a plan compiled from the
//! crate's descriptor set: no allocation unless something is found.
//!
//! Only request types (the input of some RPC in `azora.*`) are checked;
//! anything else — a generated client decoding a response — decodes exactly
//! as with tonic-prost.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::bytes::Buf;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

use crate::error::{Error, FieldViolation};
use crate::transport::{MAX_JSON_DEPTH, too_deep};

/// prost's own limit on nested messages; the walk stops at the same depth.
const MAX_MESSAGE_DEPTH: usize = 100;
/// Field paths in violations are cut to this many characters: error details
/// travel in HTTP/2 headers, and a key may be 100 KiB long.
const MAX_PATH_CHARS: usize = 256;
/// Map keys (and `Struct` keys) are shown up to this many characters.
const MAX_KEY_CHARS: usize = 48;

/// Encodes as `tonic_prost::ProstCodec`; decodes requests through
/// [`EdgeDecoder`].
pub struct EdgeCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for EdgeCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for EdgeCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = EdgeDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EdgeDecoder {
            request: Schema::get().request(U::PACKAGE, U::NAME),
            _type: PhantomData,
        }
    }
}

/// Decodes `U`; when `U` is a request type, refuses what
/// [`decode_request`] refuses.
pub struct EdgeDecoder<U> {
    /// The plan of `U` when it is a request type.
    request: Option<usize>,
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for EdgeDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let Some(request) = self.request else {
            // As tonic-prost: a response that does not decode is INTERNAL.
            return U::decode(buf)
                .map(Some)
                .map_err(|error| Status::internal(error.to_string()));
        };
        let length = buf.remaining();
        let decoded = {
            // tonic hands over one contiguous buffer; copy only if not.
            let bytes = if buf.chunk().len() >= length {
                Cow::Borrowed(&buf.chunk()[..length])
            } else {
                Cow::Owned(buf.copy_to_bytes(length).to_vec())
            };
            decode_request_with::<U>(request, &bytes)
        };
        if buf.remaining() >= length {
            buf.advance(length);
        }
        decoded
            .map(Some)
            .map_err(|error| Status::from(Error::from(error)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes a request message of type `U` (whose full protobuf name is
/// `full_name`) the way the server does: prost, then the checks above.
/// `None` when `full_name` is not a request type of any azora RPC.
pub fn decode_request<U: Message + Default>(
    full_name: &str,
    bytes: &[u8],
) -> Option<Result<U, FieldViolation>> {
    let (package, name) = full_name.rsplit_once('.')?;
    let plan = Schema::get().request(package, name)?;
    Some(decode_request_with(plan, bytes))
}

fn decode_request_with<U: Message + Default>(
    plan: usize,
    bytes: &[u8],
) -> Result<U, FieldViolation> {
    let schema = Schema::get();
    match U::decode(bytes) {
        // No 0x00 byte: no string holds NUL. Metadata that prost decoded is
        // left to `json_object`'s depth check in the handler.
        Ok(message) if !bytes.contains(&0) => Ok(message),
        Ok(message) => schema.walk(plan, bytes).map(|()| message),
        Err(error) => Err(schema.walk(plan, bytes).err().unwrap_or_else(|| {
            FieldViolation::new("", format!("the request body does not decode: {error}"))
        })),
    }
}

/// Answers a unary (or server-streaming) call whose body carries no
/// message at all with INVALID_ARGUMENT. tonic refuses it before any codec
/// runs, with INTERNAL "Missing request message."; only that exact status is
/// rewritten, so every other answer passes untouched.
#[derive(Clone, Copy, Default)]
pub struct MissingMessageLayer;

impl<S> tower::Layer<S> for MissingMessageLayer {
    type Service = MissingMessage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MissingMessage { inner }
    }
}

#[derive(Clone)]
pub struct MissingMessage<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for MissingMessage<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let missing = Status::from_header_map(response.headers()).is_some_and(|status| {
                status.code() == tonic::Code::Internal
                    && status.message() == "Missing request message."
            });
            if !missing {
                return Ok(response);
            }
            let refused = Error::invalid(
                "",
                "the request carries no message; a unary call sends exactly one",
            );
            Ok(Status::from(refused).into_http())
        })
    }
}

/// What the walk needs to know about one message type.
struct MessagePlan {
    shape: Shape,
    /// Sorted by number.
    fields: Vec<FieldPlan>,
    /// Whether a string, or a `Struct`, can be reached from here; if not,
    /// the walk skips it.
    reaches_text: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    MapEntry,
    /// `google.protobuf.Struct` and `ListValue`: one level of metadata
    /// depth each, their field names left out of paths.
    JsonContainer,
    /// `google.protobuf.Value`: its field names are left out of paths.
    JsonValue,
}

struct FieldPlan {
    number: u32,
    name: String,
    repeated: bool,
    kind: FieldKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Text,
    Message(usize),
    Other,
}

/// The plans of every message in the crate's descriptor set, and which of
/// them are requests.
struct Schema {
    messages: Vec<MessagePlan>,
    /// Request message name → (package, plan).
    requests: HashMap<String, Vec<(String, usize)>>,
}

impl Schema {
    fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
                .expect("the descriptor set built by build.rs decodes");
            Schema::build(&pool)
        })
    }

    fn build(pool: &DescriptorPool) -> Schema {
        let descriptors: Vec<MessageDescriptor> = pool.all_messages().collect();
        let index: HashMap<String, usize> = descriptors
            .iter()
            .enumerate()
            .map(|(position, message)| (message.full_name().to_owned(), position))
            .collect();
        let mut messages: Vec<MessagePlan> = descriptors
            .iter()
            .map(|message| {
                let shape = match message.full_name() {
                    "google.protobuf.Struct" | "google.protobuf.ListValue" => Shape::JsonContainer,
                    "google.protobuf.Value" => Shape::JsonValue,
                    _ if message.is_map_entry() => Shape::MapEntry,
                    _ => Shape::Plain,
                };
                let mut fields: Vec<FieldPlan> = message
                    .fields()
                    .map(|field| FieldPlan {
                        number: field.number(),
                        name: field.name().to_owned(),
                        repeated: field.is_list(),
                        kind: match field.kind() {
                            Kind::String => FieldKind::Text,
                            Kind::Message(inner) => FieldKind::Message(index[inner.full_name()]),
                            _ => FieldKind::Other,
                        },
                    })
                    .collect();
                fields.sort_by_key(|field| field.number);
                let reaches_text = shape == Shape::JsonContainer
                    || fields.iter().any(|field| field.kind == FieldKind::Text);
                MessagePlan {
                    shape,
                    fields,
                    reaches_text,
                }
            })
            .collect();
        // Propagate `reaches_text` through message fields until stable
        // (messages may be recursive, as Struct and Value are).
        loop {
            let mut changed = false;
            for position in 0..messages.len() {
                if messages[position].reaches_text {
                    continue;
                }
                let reaches = messages[position]
                    .fields
                    .iter()
                    .any(|field| match field.kind {
                        FieldKind::Message(inner) => messages[inner].reaches_text,
                        _ => false,
                    });
                if reaches {
                    messages[position].reaches_text = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut requests: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for service in pool.services() {
            if !service.package_name().starts_with("azora.") {
                continue;
            }
            for method in service.methods() {
                let input = method.input();
                let entry = requests.entry(input.name().to_owned()).or_default();
                let package = input.package_name().to_owned();
                if !entry.iter().any(|(known, _)| *known == package) {
                    entry.push((package, index[input.full_name()]));
                }
            }
        }
        Schema { messages, requests }
    }

    fn request(&self, package: &str, name: &str) -> Option<usize> {
        self.requests
            .get(name)?
            .iter()
            .find(|(known, _)| known == package)
            .map(|(_, plan)| *plan)
    }

    /// Walks an encoded message of plan `plan`: the first string holding NUL
    /// or not UTF-8, metadata nested too deep, or malformed bytes.
    fn walk(&'static self, plan: usize, bytes: &[u8]) -> Result<(), FieldViolation> {
        let mut walk = Walk {
            schema: self,
            path: Vec::new(),
        };
        walk.message(plan, bytes, Depth::default())
            .map_err(|found| found.into_violation())
    }
}

#[derive(Clone, Copy, Default)]
struct Depth {
    messages: usize,
    /// Objects and arrays of the metadata being walked.
    json: usize,
    /// Length of the path at the metadata field itself.
    json_root: Option<usize>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Field(&'static str),
    Index(usize),
    Key(&'a [u8]),
}

struct Found {
    path: String,
    description: String,
}

impl Found {
    fn into_violation(self) -> FieldViolation {
        if self.path.is_empty() {
            // Not inside any field: the body as a whole.
            return FieldViolation::new("", format!("the request body {}", self.description));
        }
        FieldViolation::new(self.path, self.description)
    }
}

struct Walk<'a> {
    schema: &'static Schema,
    path: Vec<Segment<'a>>,
}

impl<'a> Walk<'a> {
    fn found(&self, length: usize, description: impl Into<String>) -> Found {
        Found {
            path: render(&self.path[..length.min(self.path.len())]),
            description: description.into(),
        }
    }

    fn here(&self, description: impl Into<String>) -> Found {
        self.found(self.path.len(), description)
    }

    fn message(&mut self, plan: usize, bytes: &'a [u8], mut depth: Depth) -> Result<(), Found> {
        let schema = self.schema;
        let message = &schema.messages[plan];
        depth.messages += 1;
        if depth.messages > MAX_MESSAGE_DEPTH {
            return Err(self.here(format!(
                "nests messages deeper than {MAX_MESSAGE_DEPTH} levels"
            )));
        }
        if message.shape == Shape::JsonContainer {
            depth.json += 1;
            let root = *depth.json_root.get_or_insert(self.path.len());
            if depth.json > MAX_JSON_DEPTH {
                return Err(self.found(root, too_deep()));
            }
        }
        let transparent = matches!(message.shape, Shape::JsonContainer | Shape::JsonValue);
        let mut reader = Reader { bytes, position: 0 };
        // (field number, elements seen) of repeated fields, for `[i]`.
        let mut counts: Vec<(u32, usize)> = Vec::new();
        while !reader.is_done() {
            let (number, wire) = reader.key().map_err(|why| self.here(why))?;
            let field = message
                .fields
                .binary_search_by_key(&number, |field| field.number)
                .ok()
                .map(|position| &message.fields[position]);
            let Some(field) = field.filter(|field| field.kind != FieldKind::Other) else {
                reader.skip(wire, number).map_err(|why| self.here(why))?;
                continue;
            };
            let pushed = self.path.len();
            if !transparent {
                self.path.push(Segment::Field(field.name.as_str()));
            }
            if field.repeated {
                let count = match counts.iter_mut().find(|(seen, _)| *seen == number) {
                    Some((_, count)) => count,
                    None => {
                        counts.push((number, 0));
                        &mut counts.last_mut().expect("just pushed").1
                    }
                };
                self.path.push(Segment::Index(*count));
                *count += 1;
            }
            if wire != WIRE_LEN {
                return Err(self.here(match field.kind {
                    FieldKind::Text => "is not encoded as a string",
                    _ => "is not encoded as a message",
                }));
            }
            let payload = reader.length_delimited().map_err(|why| self.here(why))?;
            match field.kind {
                FieldKind::Text => self.text(payload)?,
                FieldKind::Message(inner) if schema.messages[inner].shape == Shape::MapEntry => {
                    if field.repeated {
                        // A map's entries are named by key, not position.
                        self.path.pop();
                    }
                    self.map_entry(inner, payload, depth)?;
                }
                FieldKind::Message(inner) if schema.messages[inner].reaches_text => {
                    self.message(inner, payload, depth)?
                }
                FieldKind::Message(_) | FieldKind::Other => {}
            }
            self.path.truncate(pushed);
        }
        Ok(())
    }

    /// A map entry: the key first (to name the value), then the value.
    fn map_entry(&mut self, plan: usize, bytes: &'a [u8], depth: Depth) -> Result<(), Found> {
        let entry = &self.schema.messages[plan];
        let kind_of = |number: u32| {
            entry
                .fields
                .iter()
                .find(|field| field.number == number)
                .map_or(FieldKind::Other, |field| field.kind)
        };
        let (key_kind, value_kind) = (kind_of(1), kind_of(2));
        let mut key: Option<&'a [u8]> = None;
        let mut value: Option<&'a [u8]> = None;
        let mut reader = Reader { bytes, position: 0 };
        while !reader.is_done() {
            let (number, wire) = reader.key().map_err(|why| self.here(why))?;
            let wanted = match number {
                1 => key_kind,
                2 => value_kind,
                _ => FieldKind::Other,
            };
            if wanted == FieldKind::Other {
                reader.skip(wire, number).map_err(|why| self.here(why))?;
                continue;
            }
            if wire != WIRE_LEN {
                return Err(self.here("has an entry that is not encoded as its type"));
            }
            let payload = reader.length_delimited().map_err(|why| self.here(why))?;
            // The last occurrence wins, as in protobuf.
            if number == 1 {
                key = Some(payload);
            } else {
                value = Some(payload);
            }
        }
        let pushed = self.path.len();
        if let Some(key) = key {
            match text_problem(key) {
                Some(problem) => return Err(self.here(format!("has a key that {problem}"))),
                None => self.path.push(Segment::Key(key)),
            }
        }
        match (value, value_kind) {
            (Some(value), FieldKind::Text) => self.text(value)?,
            (Some(value), FieldKind::Message(inner))
                if self.schema.messages[inner].reaches_text =>
            {
                self.message(inner, value, depth)?
            }
            _ => {}
        }
        self.path.truncate(pushed);
        Ok(())
    }

    fn text(&self, bytes: &[u8]) -> Result<(), Found> {
        match text_problem(bytes) {
            Some(problem) => Err(self.here(problem)),
            None => Ok(()),
        }
    }
}

/// Why a string cannot be taken, if it cannot.
fn text_problem(bytes: &[u8]) -> Option<&'static str> {
    if std::str::from_utf8(bytes).is_err() {
        Some("is not valid UTF-8")
    } else if bytes.contains(&0) {
        Some("contains a NUL character (U+0000), which cannot be stored")
    } else {
        None
    }
}

/// `samples[3].pool`, `metadata.note`, ``metadata.`odd key`[2]``.
fn render(path: &[Segment<'_>]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Field(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(name);
            }
            Segment::Index(index) => text.push_str(&format!("[{index}]")),
            Segment::Key(key) => {
                let key = String::from_utf8_lossy(key);
                if !text.is_empty() {
                    text.push('.');
                }
                let plain = !key.is_empty()
                    && key.len() <= MAX_KEY_CHARS
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    text.push_str(&key);
                } else {
                    let shown: String = key.chars().take(MAX_KEY_CHARS).collect();
                    let cut = if key.chars().count() > MAX_KEY_CHARS {
                        "…"
                    } else {
                        ""
                    };
                    text.push('`');
                    text.push_str(&shown.escape_debug().to_string().replace('`', "\\`"));
                    text.push_str(cut);
                    text.push('`');
                }
            }
        }
    }
    if text.chars().count() > MAX_PATH_CHARS {
        text = text.chars().take(MAX_PATH_CHARS).collect::<String>() + "…";
    }
    text
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_START_GROUP: u64 = 3;
const WIRE_END_GROUP: u64 = 4;
const WIRE_FIXED32: u64 = 5;

/// The protobuf wire format, read just enough to find fields.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn is_done(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value: u64 = 0;
        for shift in 0..10 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err("is not valid protobuf: the message ends inside a number");
            };
            self.position += 1;
            if shift == 9 && byte > 1 {
                return Err("is not valid protobuf: a number is longer than 64 bits");
            }
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("is not valid protobuf: a number is longer than 64 bits")
    }

    fn key(&mut self) -> Result<(u32, u64), &'static str> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err("is not valid protobuf: a field number is out of range");
        }
        Ok((number as u32, key & 7))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], &'static str> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("is not valid protobuf: a field runs past the end of the message")?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], &'static str> {
        let length = self.varint()?;
        let length = usize::try_from(length)
            .map_err(|_| "is not valid protobuf: a field runs past the end of the message")?;
        self.take(length)
    }

    /// Skips one field's value; a group up to its end, within prost's depth.
    fn skip(&mut self, wire: u64, number: u32) -> Result<(), &'static str> {
        self.skip_within(wire, number, 0)
    }

    fn skip_within(&mut self, wire: u64, number: u32, depth: usize) -> Result<(), &'static str> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.length_delimited().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            WIRE_START_GROUP => {
                if depth >= MAX_MESSAGE_DEPTH {
                    return Err("is not valid protobuf: groups nest too deeply");
                }
                loop {
                    if self.is_done() {
                        return Err("is not valid protobuf: a group is not closed");
                    }
                    let (inner, inner_wire) = self.key()?;
                    if inner_wire == WIRE_END_GROUP {
                        return if inner == number {
                            Ok(())
                        } else {
                            Err("is not valid protobuf: a group is closed by another field")
                        };
                    }
                    self.skip_within(inner_wire, inner, depth + 1)?;
                }
            }
            WIRE_END_GROUP => Err("is not valid protobuf: a group ends that never began"),
            _ => Err("is not valid protobuf: unknown wire type"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::identity::CreateUserRequest;
    use crate::proto::mining::{RecordStatisticsRequest, Sample};
    use crate::proto::treasury::MintRequest;

    fn decode<U: Message + Name + Default>(message: &impl Message) -> Result<U, FieldViolation> {
        decode_request::<U>(&U::full_name(), &message.encode_to_vec()).expect("a request type")
    }

    fn text(value: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(value.into())),
        }
    }

    fn object(fields: Vec<(&str, prost_types::Value)>) -> prost_types::Struct {
        prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        }
    }

    fn nested(levels: usize) -> prost_types::Struct {
        let mut value = object(vec![("leaf", text("x"))]);
        for _ in 1..levels {
            value = object(vec![(
                "a",
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StructValue(value)),
                },
            )]);
        }
        value
    }

    #[test]
    fn a_request_without_nul_decodes_as_prost_does() {
        let request = CreateUserRequest {
            username: "alice".into(),
            ..Default::default()
        };
        assert_eq!(decode::<CreateUserRequest>(&request), Ok(request));
    }

    #[test]
    fn nul_in_a_plain_string_names_the_field() {
        let request = CreateUserRequest {
            username: "al\0ice".into(),
            ..Default::default()
        };
        let violation = decode::<CreateUserRequest>(&request).unwrap_err();
        assert_eq!(violation.field, "username");
        assert!(violation.description.contains("NUL"), "{violation:?}");
    }

    #[test]
    fn nul_in_a_repeated_message_names_its_index() {
        let sample = |earnings: &str| Sample {
            hashrate_mhs: 1.5,
            earnings_usd: Some(crate::proto::types::Decimal {
                value: earnings.into(),
            }),
            ..Default::default()
        };
        let request = RecordStatisticsRequest {
            samples: vec![sample("a"), sample("b"), sample("c"), sample("d\0")],
            ..Default::default()
        };
        let violation = decode::<RecordStatisticsRequest>(&request).unwrap_err();
        assert_eq!(violation.field, "samples[3].earnings_usd.value");
    }

    #[test]
    fn nul_in_metadata_names_the_key_path() {
        let request = MintRequest {
            metadata: Some(object(vec![
                ("fine", text("ok")),
                (
                    "note",
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::ListValue(
                            prost_types::ListValue {
                                values: vec![text("ok"), text("bad\0")],
                            },
                        )),
                    },
                ),
            ])),
            ..Default::default()
        };
        let violation = decode::<MintRequest>(&request).unwrap_err();
        assert_eq!(violation.field, "metadata.note[1]");

        let request = MintRequest {
            metadata: Some(object(vec![("odd key\0", text("ok"))])),
            ..Default::default()
        };
        let violation = decode::<MintRequest>(&request).unwrap_err();
        assert_eq!(violation.field, "metadata");
        assert!(
            violation.description.starts_with("has a key"),
            "{violation:?}"
        );
    }

    #[test]
    fn metadata_too_deep_for_prost_is_named_like_the_depth_limit() {
        // Shallower metadata that prost decodes is left to `json_object`
        // unless the body holds a 0x00 byte: the fast path stays one memchr.
        let request = MintRequest {
            metadata: Some(nested(MAX_JSON_DEPTH + 1)),
            ..Default::default()
        };
        assert!(decode::<MintRequest>(&request).is_ok());
        for levels in [40, 200] {
            let request = MintRequest {
                metadata: Some(nested(levels)),
                ..Default::default()
            };
            let violation = decode::<MintRequest>(&request).unwrap_err();
            assert_eq!(violation.field, "metadata", "{levels} levels");
            assert_eq!(violation.description, too_deep(), "{levels} levels");
        }
        let request = MintRequest {
            metadata: Some(nested(MAX_JSON_DEPTH)),
            request_id: "has\0nul".into(),
            ..Default::default()
        };
        assert_eq!(
            decode::<MintRequest>(&request).unwrap_err().field,
            "request_id"
        );
    }

    #[test]
    fn bytes_that_do_not_decode_are_a_violation_not_a_panic() {
        for bytes in [
            &[0xff_u8][..],
            &[0x0a, 0x05, b'a'][..],
            &[0x0a, 0x02, 0xc3, 0x28][..],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
            &[0x0b][..],
            &[0x00][..],
        ] {
            let outcome =
                decode_request::<CreateUserRequest>(&CreateUserRequest::full_name(), bytes)
                    .unwrap();
            assert!(outcome.is_err(), "{bytes:?} decoded");
        }
        let violation = decode_request::<CreateUserRequest>(
            &CreateUserRequest::full_name(),
            &[0x0a, 0x02, 0xc3, 0x28],
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(violation.field, "username");
    }

    #[test]
    fn responses_are_not_request_types() {
        assert!(
            decode_request::<crate::proto::identity::CreateUserResponse>(
                "azora.identity.v1.CreateUserResponse",
                &[]
            )
            .is_none()
        );
    }

    #[test]
    fn long_keys_are_cut_in_paths() {
        let key = "k".repeat(10_000);
        let path = render(&[Segment::Field("metadata"), Segment::Key(key.as_bytes())]);
        assert!(path.chars().count() <= MAX_PATH_CHARS + 1, "{path}");
    }
}
