//! The malformed-input sweep: every RPC of every `azora.*` service in the
//! crate's descriptor set, every field of its request (recursively, into
//! nested, repeated and well-known messages), a table of malformed values
//! chosen by the field's type — sent as raw bytes over a real channel to
//! the real server, on PostgreSQL and on SQLite.
//!
//! Nothing here names an RPC or a field: requests are built from the
//! descriptors with `prost-reflect`, a malformed value is spliced into the
//! encoded request at the field's path, and a raw codec sends the bytes. A
//! plausible request (ids of real records, fresh request ids, a valid
//! amount…) is the baseline each malformed value is put into, so the value
//! reaches as deep as it can.
//!
//! Asserted: no INTERNAL, UNKNOWN or unexplained CANCELLED status, no
//! panic, no hang; NUL refused with a violation naming its exact path;
//! bodies that are not one message refused as such; nothing written by a
//! call that was refused; the same answer on both backends for the text and
//! nesting limits; and the server healthy afterwards.
//! `cargo test --test it malformed:: -- --nocapture` prints the sweep's size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::capture::{self, CaptureId};
use crate::common::money::{address, azr};
use crate::common::{Backend, TestApp, authed};
use azora::proto::compliance as cpb;
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
use azora::proto::identity as ipb;
use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::billing_service_client::BillingServiceClient;
use azora::proto::treasury::founder_compensation_service_client::FounderCompensationServiceClient;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};
use sea_orm::ConnectionTrait;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

on_both_backends!(
    every_rpc_refuses_malformed_input_without_internal_errors_or_writes,
    a_foreign_key_violation_is_classified_not_found_on_both_backends,
);

/// The service checks that referenced rows exist before it writes, so no
/// RPC reaches a foreign-key violation on purpose; a concurrent change
/// could. Here the database itself is asked to break one.
async fn a_foreign_key_violation_is_classified_not_found_on_both_backends(backend: Backend) {
    use azora::identity::entities::wallet;
    use sea_orm::{ActiveModelTrait, Set};
    let app = TestApp::spawn(backend).await;
    let missing_owner = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let refused = wallet::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        owner_id: Set(missing_owner),
        address: Set(address()),
        label: Set(String::new()),
        available_micros: Set(0),
        pending_micros: Set(0),
        staked_micros: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&app.db)
    .await
    .expect_err("the database refuses a wallet of a user that does not exist");
    let status = Status::from(azora::db::classify(refused));
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    if backend == Backend::Postgres {
        // PostgreSQL names the key; SQLite only says a reference failed.
        assert_eq!(status.message(), format!("user {missing_owner} not found"));
    }
}

/// Sends and receives message bodies as they are: the sweep encodes
/// requests itself.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let length = buf.remaining();
        Ok(Some(buf.copy_to_bytes(length).to_vec()))
    }
}

/// A field value as it goes on the wire, after the field's key.
#[derive(Clone)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(Vec<u8>),
}

fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl Wire {
    fn append(&self, number: u32, out: &mut Vec<u8>) {
        let wire_type = match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        put_varint((u64::from(number) << 3) | wire_type, out);
        match self {
            Wire::Varint(value) => put_varint(*value, out),
            Wire::Fixed64(value) => out.extend_from_slice(&value.to_le_bytes()),
            Wire::Fixed32(value) => out.extend_from_slice(&value.to_le_bytes()),
            Wire::Bytes(bytes) => {
                put_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
        }
    }

    fn text(text: &str) -> Self {
        Wire::Bytes(text.as_bytes().to_vec())
    }

    fn message(message: &impl Message) -> Self {
        Wire::Bytes(message.encode_to_vec())
    }
}

/// `message` encoded with the field at `path` replaced by `value` (one
/// element, for a repeated field on the way).
fn splice(message: &DynamicMessage, path: &[FieldDescriptor], value: &Wire) -> Vec<u8> {
    let field = &path[0];
    let mut rest = message.clone();
    rest.clear_field(field);
    let mut bytes = rest.encode_to_vec();
    if path.len() == 1 {
        value.append(field.number(), &mut bytes);
        return bytes;
    }
    let Kind::Message(inner) = field.kind() else {
        unreachable!("only messages have fields inside");
    };
    let child = match message.get_field(field).as_ref() {
        Value::Message(child) => child.clone(),
        Value::List(values) => match values.first() {
            Some(Value::Message(child)) => child.clone(),
            _ => DynamicMessage::new(inner),
        },
        _ => DynamicMessage::new(inner),
    };
    Wire::Bytes(splice(&child, &path[1..], value)).append(field.number(), &mut bytes);
    bytes
}

fn path_name(path: &[FieldDescriptor]) -> String {
    path.iter()
        .map(|field| {
            if field.is_list() {
                format!("{}[0]", field.name())
            } else {
                field.name().to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Types sent whole, with values of their own, instead of field by field.
fn is_leaf_message(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue"
            | "google.protobuf.Duration"
            | "azora.type.v1.Decimal"
    )
}

/// Every field path of `message`, nested messages included (and as a whole).
fn leaves(
    message: &MessageDescriptor,
    prefix: &[FieldDescriptor],
    out: &mut Vec<Vec<FieldDescriptor>>,
) {
    for field in message.fields() {
        let mut path = prefix.to_vec();
        path.push(field.clone());
        if let Kind::Message(inner) = field.kind()
            && !is_leaf_message(&inner)
            && !field.is_map()
            && path.len() < 4
        {
            leaves(&inner, &path, out);
        }
        out.push(path);
    }
}

fn timestamp(seconds: i64, nanos: i32) -> Wire {
    Wire::message(&prost_types::Timestamp { seconds, nanos })
}

fn text_value(text: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(text.into())),
    }
}

fn object(fields: Vec<(String, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields.into_iter().collect(),
    }
}

fn nested_object(levels: usize) -> prost_types::Struct {
    let mut inner = object(vec![("leaf".into(), text_value("x"))]);
    for _ in 1..levels {
        inner = object(vec![(
            "a".into(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StructValue(inner)),
            },
        )]);
    }
    inner
}

fn nested_list(levels: usize) -> prost_types::Struct {
    let mut inner = text_value("x");
    for _ in 1..levels {
        inner = prost_types::Value {
            kind: Some(prost_types::value::Kind::ListValue(
                prost_types::ListValue {
                    values: vec![inner],
                },
            )),
        };
    }
    object(vec![("list".into(), inner)])
}

/// The malformed values for one field, by its type.
fn malformed(field: &FieldDescriptor) -> Vec<(String, Wire)> {
    let mut values: Vec<(String, Wire)> = Vec::new();
    let mut add = |label: &str, wire: Wire| values.push((label.to_owned(), wire));
    let signed = |value: i64| Wire::Varint(value as u64);
    match field.kind() {
        Kind::String => {
            for (label, text) in [
                ("NUL inside", "a\0b".to_owned()),
                ("NUL alone", "\0".to_owned()),
                ("100 KiB", "x".repeat(100 * 1024)),
                ("600 characters", "y".repeat(600)),
                ("not a uuid", "not-a-uuid".to_owned()),
                ("an unknown uuid", uuid::Uuid::new_v4().to_string()),
                ("the nil uuid", uuid::Uuid::nil().to_string()),
                ("1e400", "1e400".to_owned()),
                ("-0.0000001", "-0.0000001".to_owned()),
                ("NaN", "NaN".to_owned()),
                ("1.1234567", "1.1234567".to_owned()),
                ("whitespace", " \t\n".to_owned()),
                ("odd unicode", "ünï🦀\u{202e}\u{feff}".to_owned()),
                ("SQL", "'; DROP TABLE users; --".to_owned()),
                ("a LIKE pattern", "%_\\".to_owned()),
            ] {
                add(label, Wire::text(&text));
            }
            add("invalid UTF-8", Wire::Bytes(vec![0xff, 0xfe, b'a']));
            add("wrong wire type", Wire::Varint(1));
        }
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64 => {
            let extremes: &[i64] = match field.kind() {
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                    &[i64::from(i32::MIN), i64::from(i32::MAX), -1]
                }
                _ => &[
                    i64::MIN,
                    i64::MAX,
                    -1,
                    i64::from(i32::MIN),
                    i64::from(i32::MAX),
                ],
            };
            for &value in extremes {
                let wire = match field.kind() {
                    Kind::Sint32 | Kind::Sint64 => {
                        Wire::Varint(((value << 1) ^ (value >> 63)) as u64)
                    }
                    Kind::Sfixed32 => Wire::Fixed32(value as i32 as u32),
                    Kind::Sfixed64 => Wire::Fixed64(value as u64),
                    _ => signed(value),
                };
                add(&value.to_string(), wire);
            }
            add("wrong wire type", Wire::text("x"));
        }
        Kind::Uint32 | Kind::Fixed32 => {
            add("u32::MAX", Wire::Varint(u64::from(u32::MAX)));
            add("wrong wire type", Wire::text("x"));
        }
        Kind::Uint64 | Kind::Fixed64 => {
            add("u64::MAX", Wire::Varint(u64::MAX));
            add("wrong wire type", Wire::text("x"));
        }
        Kind::Bool => {
            add("2", Wire::Varint(2));
            add("u64::MAX", Wire::Varint(u64::MAX));
        }
        Kind::Enum(_) => {
            for value in [-1i64, 999, i64::from(i32::MAX), i64::from(i32::MIN)] {
                add(&format!("enum {value}"), signed(value));
            }
            add("wrong wire type", Wire::text("x"));
        }
        Kind::Double => {
            for value in [
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -1.0,
                -0.0,
                1e308,
                f64::MIN_POSITIVE / 2.0,
            ] {
                add(&format!("{value:e}"), Wire::Fixed64(value.to_bits()));
            }
            add("wrong wire type", Wire::Varint(1));
        }
        Kind::Float => {
            for value in [f32::NAN, f32::INFINITY, -1.0, 3.4e38] {
                add(&format!("{value:e}"), Wire::Fixed32(value.to_bits()));
            }
        }
        Kind::Bytes => {
            add("100 KiB", Wire::Bytes(vec![0; 100 * 1024]));
        }
        Kind::Message(inner) => match inner.full_name() {
            "google.protobuf.Timestamp" => {
                add("seconds i64::MAX", timestamp(i64::MAX, 0));
                add("seconds i64::MIN", timestamp(i64::MIN, 0));
                add("nanos -1", timestamp(1_700_000_000, -1));
                add("nanos 1e9", timestamp(1_700_000_000, 1_000_000_000));
                add("year 10000", timestamp(253_402_300_800, 0));
                add("before year 1", timestamp(-62_135_596_801, 0));
                add("1970", timestamp(0, 0));
                add(
                    "in ten years",
                    timestamp(chrono::Utc::now().timestamp() + 315_576_000, 0),
                );
                add("wrong wire type", Wire::Varint(1));
            }
            "google.protobuf.Struct" => {
                add("nested 9 levels", Wire::message(&nested_object(9)));
                add("nested 40 levels", Wire::message(&nested_object(40)));
                add("nested 200 levels", Wire::message(&nested_object(200)));
                add("lists nested 40 levels", Wire::message(&nested_list(40)));
                add(
                    "NUL in a key",
                    Wire::message(&object(vec![("no\0te".into(), text_value("x"))])),
                );
                add(
                    "NUL in a value",
                    Wire::message(&object(vec![("note".into(), text_value("a\0b"))])),
                );
                add(
                    "20 KiB",
                    Wire::message(&object(vec![(
                        "big".into(),
                        text_value(&"z".repeat(20 * 1024)),
                    )])),
                );
                add(
                    "1000 keys",
                    Wire::message(&object(
                        (0..1000)
                            .map(|i| (format!("k{i}"), text_value("v")))
                            .collect(),
                    )),
                );
                add(
                    "NaN number",
                    Wire::message(&object(vec![(
                        "n".into(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
                        },
                    )])),
                );
                add("wrong wire type", Wire::Varint(1));
            }
            "azora.type.v1.Decimal" => {
                for text in [
                    "1e400",
                    "-0.0000001",
                    "NaN",
                    "1.1234567",
                    "",
                    "0",
                    "-1",
                    "+1",
                    " 1",
                    "1.",
                    ".5",
                    "0x10",
                    "1_000",
                    "１",
                    "1000000000.000001",
                    "99999999999999999999999999999999",
                    "9223372036854775807",
                    "0.000000000000000000000000000001",
                ] {
                    add(
                        &format!("decimal {text:?}"),
                        Wire::message(&azora::proto::types::Decimal { value: text.into() }),
                    );
                }
                add(
                    "decimal with NUL",
                    Wire::message(&azora::proto::types::Decimal {
                        value: "1\0".into(),
                    }),
                );
                add(
                    "decimal 100 KiB",
                    Wire::message(&azora::proto::types::Decimal {
                        value: "9".repeat(100 * 1024),
                    }),
                );
                add("empty message", Wire::Bytes(Vec::new()));
                add("wrong wire type", Wire::Varint(1));
            }
            _ => {
                add("empty message", Wire::Bytes(Vec::new()));
                add("undecodable message", Wire::Bytes(vec![0xff, 0xff]));
                add("wrong wire type", Wire::Varint(1));
            }
        },
    }
    values
}

/// Ids of real records, for plausible requests.
struct Fixtures {
    member_id: String,
    member_key: String,
    member_wallet: String,
    founder_id: String,
    founder_wallet: String,
    other_wallet: String,
    session_id: String,
    compensation_id: String,
    subscription_id: String,
    invoice_id: String,
    pending_transaction_id: String,
    report_id: String,
    audit_event_id: String,
    api_key_id: String,
}

impl Fixtures {
    async fn create(app: &TestApp) -> Self {
        let (member_id, member_key, member_wallet) = app.member_with_wallet("sweep_member").await;
        app.fund(&member_wallet, "1000").await;
        let (founder_id, _) = app
            .user_of_type("sweep_founder", ipb::UserType::Founder, ipb::Role::Member)
            .await;
        let founder_wallet = app.wallet_for(&founder_id).await;
        let (other_id, _) = app.user_with_role("sweep_other", ipb::Role::Member).await;
        let other_wallet = app.wallet_for(&other_id).await;
        app.mint("100000").await;

        let session_id = MiningServiceClient::new(app.channel().await)
            .start_session(authed(
                &member_key,
                mpb::StartSessionRequest {
                    wallet_id: member_wallet.clone(),
                    algorithm: "sha256".into(),
                    pool_name: "pool".into(),
                    pool_url: "stratum+tcp://pool.example:3333".into(),
                    worker_name: "rig-1".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("start a session")
            .into_inner()
            .session
            .unwrap()
            .id;
        let compensation_id = FounderCompensationServiceClient::new(app.channel().await)
            .create_founder_compensation(authed(
                &app.admin_key,
                tpb::CreateFounderCompensationRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    founder_id: founder_id.clone(),
                    wallet_id: founder_wallet.clone(),
                    month: "2026-10".into(),
                    r#type: tpb::CompensationType::Salary as i32,
                    amount: azr("1"),
                    notes: "sweep".into(),
                },
            ))
            .await
            .expect("create a compensation")
            .into_inner()
            .compensation
            .unwrap()
            .id;
        let subscribed = BillingServiceClient::new(app.channel().await)
            .create_subscription(authed(
                &app.admin_key,
                tpb::CreateSubscriptionRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    user_id: member_id.clone(),
                    tier: tpb::SubscriptionTier::Basic as i32,
                    currency: tpb::Currency::Azr as i32,
                    start_time: None,
                },
            ))
            .await
            .expect("subscribe")
            .into_inner();
        let subscription_id = subscribed.subscription.unwrap().id;
        let invoice_id = subscribed.invoices[0].id.clone();
        let pending_transaction_id = app
            .treasury()
            .await
            .withdraw(authed(
                &member_key,
                tpb::WithdrawRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    from_wallet_id: member_wallet.clone(),
                    amount: azr("1"),
                    destination_address: address(),
                    ..Default::default()
                },
            ))
            .await
            .expect("withdraw")
            .into_inner()
            .transaction
            .unwrap()
            .id;
        let mut compliance = ComplianceServiceClient::new(app.channel().await);
        let now = chrono::Utc::now().timestamp();
        let report_id = compliance
            .generate_compliance_report(authed(
                &app.admin_key,
                cpb::GenerateComplianceReportRequest {
                    report_type: cpb::ReportType::AdHoc as i32,
                    period_start: Some(prost_types::Timestamp {
                        seconds: now - 3600,
                        nanos: 0,
                    }),
                    period_end: Some(prost_types::Timestamp {
                        seconds: now,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
            ))
            .await
            .expect("generate a report")
            .into_inner()
            .report
            .unwrap()
            .id;
        let audit_event_id = compliance
            .list_audit_events(authed(
                &app.admin_key,
                cpb::ListAuditEventsRequest {
                    page_size: 1,
                    ..Default::default()
                },
            ))
            .await
            .expect("list audit events")
            .into_inner()
            .events[0]
            .id
            .clone();
        let api_key_id = app
            .identity()
            .await
            .create_api_key(authed(
                &app.admin_key,
                ipb::CreateApiKeyRequest {
                    user_id: member_id.clone(),
                    role: ipb::Role::Member as i32,
                    name: "spare".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create a spare key")
            .into_inner()
            .api_key
            .unwrap()
            .id;
        Self {
            member_id,
            member_key,
            member_wallet,
            founder_id,
            founder_wallet,
            other_wallet,
            session_id,
            compensation_id,
            subscription_id,
            invoice_id,
            pending_transaction_id,
            report_id,
            audit_event_id,
            api_key_id,
        }
    }

    /// A plausible value for a string field, by its name (and whether the
    /// request is about a founder).
    fn text_for(&self, name: &str, founder: bool) -> String {
        let fresh = || uuid::Uuid::new_v4().simple().to_string();
        match name {
            "request_id" | "source_transaction_id" => uuid::Uuid::new_v4().to_string(),
            "user_id" | "owner_id" | "miner_id" | "student_id" | "actor_user_id" | "id" => {
                self.member_id.clone()
            }
            "founder_id" => self.founder_id.clone(),
            "wallet_id" if founder => self.founder_wallet.clone(),
            "wallet_id" | "from_wallet_id" => self.member_wallet.clone(),
            "to_wallet_id" => self.other_wallet.clone(),
            "session_id" => self.session_id.clone(),
            "compensation_id" => self.compensation_id.clone(),
            "subscription_id" => self.subscription_id.clone(),
            "invoice_id" => self.invoice_id.clone(),
            "transaction_id" => self.pending_transaction_id.clone(),
            "report_id" => self.report_id.clone(),
            "event_id" => self.audit_event_id.clone(),
            "api_key_id" => self.api_key_id.clone(),
            "alert_id" => uuid::Uuid::new_v4().to_string(),
            "address" | "destination_address" | "wallet_address" => address(),
            "username" => format!("sweep_{}", &fresh()[..12]),
            "email" => format!("{}@example.com", &fresh()[..12]),
            "jurisdiction" | "country" => "DE".into(),
            "language" => "en".into(),
            "month" | "start_month" | "end_month" => "2026-11".into(),
            "tx_hash" => format!("0x{}{}", fresh(), fresh()),
            "evidence_hash" => format!("{}{}", fresh(), fresh()),
            "gas_price_wei" => "1000".into(),
            "algorithm" => "sha256".into(),
            "pool_url" => "stratum+tcp://pool.example:3333".into(),
            "resource_type" => "wallet".into(),
            "page_token" | "action" | "resource_id" => String::new(),
            "paths" => "metadata".into(),
            _ => "sweep".into(),
        }
    }

    /// A plausible request: every field set to what a sensible caller sends.
    fn plausible(
        &self,
        message: &MessageDescriptor,
        founder: bool,
        depth: usize,
    ) -> DynamicMessage {
        let mut built = DynamicMessage::new(message.clone());
        let now = chrono::Utc::now().timestamp();
        for field in message.fields() {
            let value = match field.kind() {
                Kind::String => Value::String(self.text_for(field.name(), founder)),
                Kind::Int32 => Value::I32(if field.name() == "page_size" { 10 } else { 1 }),
                Kind::Int64 => Value::I64(1),
                Kind::Uint32 => Value::U32(1),
                Kind::Uint64 => Value::U64(1),
                Kind::Double => Value::F64(if field.name().contains("temperature") {
                    50.0
                } else {
                    1.0
                }),
                Kind::Float => Value::F32(1.0),
                Kind::Bool => Value::Bool(false),
                // A system account is the other way to name a source.
                Kind::Enum(_) if field.name().contains("system_account") => Value::EnumNumber(0),
                Kind::Enum(values) => {
                    let preferred = values
                        .values()
                        .find(|value| {
                            value.name().ends_with("_MEMBER") || value.name().ends_with("_AD_HOC")
                        })
                        .map(|value| value.number());
                    Value::EnumNumber(preferred.unwrap_or(1))
                }
                Kind::Message(inner) => {
                    let encoded = match inner.full_name() {
                        "google.protobuf.Timestamp" => {
                            let seconds = match field.name() {
                                "expire_time" => now + 86_400,
                                name if name.starts_with("start")
                                    || name.starts_with("period_start") =>
                                {
                                    now - 3600
                                }
                                _ => now - 1,
                            };
                            Some(prost_types::Timestamp { seconds, nanos: 0 }.encode_to_vec())
                        }
                        "google.protobuf.Struct" => {
                            Some(object(vec![("note".into(), text_value("sweep"))]).encode_to_vec())
                        }
                        "azora.type.v1.Decimal" => Some(
                            azora::proto::types::Decimal {
                                value: if field.name() == "score" {
                                    "90".into()
                                } else {
                                    "1".into()
                                },
                            }
                            .encode_to_vec(),
                        ),
                        _ => None,
                    };
                    let inner_message = match encoded {
                        Some(bytes) => DynamicMessage::decode(inner.clone(), bytes.as_slice())
                            .expect("a well-known message decodes"),
                        None if depth < 3 => self.plausible(&inner, founder, depth + 1),
                        None => DynamicMessage::new(inner.clone()),
                    };
                    Value::Message(inner_message)
                }
                Kind::Bytes => Value::Bytes(Default::default()),
                Kind::Sfixed32 | Kind::Sint32 => Value::I32(1),
                Kind::Sfixed64 | Kind::Sint64 => Value::I64(1),
                Kind::Fixed32 => Value::U32(1),
                Kind::Fixed64 => Value::U64(1),
            };
            if field.is_map() {
                continue;
            }
            let value = if field.is_list() {
                Value::List(vec![value])
            } else {
                value
            };
            built.set_field(&field, value);
        }
        built
    }
}

/// Counts of every table a call may write (the chainer's and the health
/// prober's own tables left out) and the balances: equal before and after
/// a refused call, or the call wrote something.
async fn snapshot(app: &TestApp) -> Vec<i64> {
    const QUERIES: &[&str] = &[
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM wallets",
        "SELECT count(*) FROM api_keys",
        "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL",
        "SELECT count(*) FROM ledger_transactions",
        "SELECT count(*) FROM ledger_transactions WHERE status = 'pending'",
        "SELECT count(*) FROM ledger_entries",
        "SELECT count(*) FROM idempotency_keys",
        "SELECT CAST(coalesce(sum(available_micros + pending_micros + staked_micros), 0) AS BIGINT) FROM wallets",
        "SELECT CAST(coalesce(sum(balance_micros), 0) AS BIGINT) FROM system_accounts WHERE code NOT IN ('issuance', 'external')",
        "SELECT count(*) FROM mining_sessions",
        "SELECT count(*) FROM mining_sessions WHERE status = 'active'",
        "SELECT count(*) FROM mining_samples",
        "SELECT count(*) FROM founder_compensations",
        "SELECT count(*) FROM founder_compensations WHERE status = 'pending'",
        "SELECT count(*) FROM proofs_of_knowledge",
        "SELECT count(*) FROM student_earnings",
        "SELECT count(*) FROM subscriptions",
        "SELECT count(*) FROM subscriptions WHERE status = 'active'",
        "SELECT count(*) FROM invoices",
        "SELECT count(*) FROM invoices WHERE status = 'open'",
        "SELECT count(*) FROM compliance_reports",
        "SELECT count(*) FROM alerts",
        "SELECT count(*) FROM alerts WHERE acknowledged_at IS NULL",
        "SELECT count(*) FROM audit_events WHERE outcome = 'ok'",
    ];
    let sql = format!(
        "SELECT {}",
        QUERIES
            .iter()
            .map(|query| format!("({query})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            sql,
        ))
        .await
        .expect("snapshot query")
        .expect("one row");
    (0..QUERIES.len())
        .map(|index| row.try_get_by_index::<i64>(index).expect("a count"))
        .collect()
}

/// The snapshot once it has stopped moving: the same twice, a quarter second
/// apart (a call cut short may still be queued in the server, or in a
/// batch that has not committed yet), waiting at most ten seconds.
async fn settled_snapshot(app: &TestApp) -> Vec<i64> {
    let mut last = snapshot(app).await;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = snapshot(app).await;
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Unary,
    ServerStreaming,
    ClientStreaming,
}

/// What a call came back with: a status code, or that a server stream was
/// still open (and healthy) when the sweep stopped waiting.
#[derive(Clone, Debug)]
enum Outcome {
    /// Code, message, and the fields its BadRequest details name.
    Status(Code, String, Vec<String>),
    StreamOpen,
    Hung,
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Status(code, ..) => format!("{code:?}"),
            Outcome::StreamOpen => "Ok (stream open)".into(),
            Outcome::Hung => "no answer".into(),
        }
    }

    fn accepted(&self) -> bool {
        matches!(self, Outcome::Status(Code::Ok, ..) | Outcome::StreamOpen)
    }
}

async fn call(
    channel: &Channel,
    method: &MethodDescriptor,
    bodies: Vec<Vec<u8>>,
    key: &str,
    deadline: Option<Duration>,
) -> Outcome {
    let shape = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => Shape::Unary,
        (false, true) => Shape::ServerStreaming,
        (true, false) => Shape::ClientStreaming,
        (true, true) => unreachable!("no bidirectional RPCs"),
    };
    let path: http::uri::PathAndQuery =
        format!("/{}/{}", method.parent_service().full_name(), method.name())
            .parse()
            .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(usize::MAX);
    let attempt = async move {
        grpc.ready().await.expect("the channel is ready");
        let mut request = authed(key, ());
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let status = |result: Result<(), Status>| match result {
            Ok(()) => Outcome::Status(Code::Ok, String::new(), Vec::new()),
            Err(status) => {
                use tonic_types::StatusExt;
                let fields = status
                    .get_details_bad_request()
                    .map(|bad_request| {
                        bad_request
                            .field_violations
                            .into_iter()
                            .map(|violation| violation.field)
                            .collect()
                    })
                    .unwrap_or_default();
                Outcome::Status(status.code(), status.message().to_owned(), fields)
            }
        };
        // Not one message: sent as a stream whatever the RPC's shape, as a
        // client that gets the shape wrong (or a hostile one) would.
        let single = bodies.len() == 1;
        match shape {
            Shape::Unary if single => status(
                grpc.unary(
                    request.map(|()| bodies.into_iter().next().unwrap()),
                    path,
                    RawCodec,
                )
                .await
                .map(drop),
            ),
            Shape::Unary | Shape::ClientStreaming => status(
                grpc.client_streaming(
                    request.map(|()| futures::stream::iter(bodies)),
                    path,
                    RawCodec,
                )
                .await
                .map(drop),
            ),
            Shape::ServerStreaming => match grpc
                .streaming(
                    request.map(|()| futures::stream::iter(bodies)),
                    path,
                    RawCodec,
                )
                .await
            {
                Err(error) => status(Err(error)),
                Ok(response) => {
                    let mut stream = response.into_inner();
                    match tokio::time::timeout(Duration::from_millis(250), stream.message()).await {
                        Ok(Ok(_)) => Outcome::Status(Code::Ok, String::new(), Vec::new()),
                        Ok(Err(error)) => status(Err(error)),
                        Err(_) => Outcome::StreamOpen,
                    }
                }
            },
        }
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .unwrap_or(Outcome::Hung)
}

/// A subscriber that keeps the server's warnings and errors (an INTERNAL's
/// cause is logged, never sent), so a failure can say why.
fn server_log(log: Arc<Mutex<Vec<String>>>) -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::WARN)
        .with(Collector(log))
}

struct Collector(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collector {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        let mut fields = Fields(format!(
            "{} {}: ",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// Every panic of this sweep's threads since the hook was set, as "the call
/// in flight: the panic". Other tests share the process; their panics are
/// not the sweep's.
fn panics() -> Vec<String> {
    static PANICS: Mutex<Vec<(CaptureId, String)>> = Mutex::new(Vec::new());
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(sweep) = capture::current() {
                let call = in_flight()
                    .lock()
                    .map(|call| call.clone())
                    .unwrap_or_default();
                if let Ok(mut panics) = PANICS.lock() {
                    panics.push((sweep, format!("during {call}: {info}")));
                }
            }
            previous(info);
        }));
    });
    let sweep = capture::current().expect("the sweep runs captured");
    PANICS
        .lock()
        .unwrap()
        .iter()
        .filter(|(of, _)| *of == sweep)
        .map(|(_, panic)| panic.clone())
        .collect()
}

/// The call the sweep is making, for the panic hook.
fn in_flight() -> &'static Mutex<String> {
    static IN_FLIGHT: Mutex<String> = Mutex::new(String::new());
    &IN_FLIGHT
}

fn panic_count() -> usize {
    panics().len()
}

/// One call of the sweep.
struct Case {
    field: String,
    value: String,
    /// The messages sent: one, except for the cases about framing.
    bodies: Vec<Vec<u8>>,
    /// With the key the plausible request is allowed with, or the other.
    primary_key: bool,
    deadline: Option<Duration>,
}

struct Finding {
    rpc: String,
    field: String,
    value: String,
    outcome: Outcome,
    /// Panics while the call ran.
    panicked: usize,
    /// What the server logged (WARN and above) while the call ran.
    logged: Vec<String>,
}

#[derive(Default)]
struct Tally {
    calls: usize,
    rpcs: usize,
    histogram: BTreeMap<String, usize>,
    /// INTERNAL, UNKNOWN, CANCELLED without a deadline, a panic, or no
    /// answer.
    broken: Vec<Finding>,
    /// Refused, yet the snapshot moved.
    wrote: Vec<(Finding, Vec<i64>, Vec<i64>)>,
    /// Accepted calls that moved the snapshot: proof that it sees writes.
    accepted_writes: usize,
    /// Cases refused with the wrong code, or NUL refused without naming
    /// its field: (case, what came back).
    unnamed: Vec<(String, String)>,
    /// Outcomes of the cases about text and nesting limits, which must be
    /// the same on both backends: "rpc field = value" → status.
    limits: BTreeMap<String, String>,
    /// "RPC: status" of each RPC's plausible request.
    plausible: Vec<String>,
}

async fn every_rpc_refuses_malformed_input_without_internal_errors_or_writes(backend: Backend) {
    // One sweep at a time, so panics and log lines belong to the call that
    // caused them.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    capture::with_subscriber(server_log(log.clone()), sweep(backend, log)).await;
}

async fn sweep(backend: Backend, log: Arc<Mutex<Vec<String>>>) {
    let panics_before = panic_count();
    let started = Instant::now();
    let app = TestApp::spawn_with(backend, |settings| {
        // Nothing but the sweep's own calls may write while it runs.
        settings.billing_interval_ms = 3_600_000;
        // Nor the health prober: on a loaded machine a slow ping is an
        // outage, and the alert it raises once the database answers again
        // would be a write.
        settings.health_interval_ms = 3_600_000;
    })
    .await;
    let fixtures = Fixtures::create(&app).await;
    let channel = app.channel().await;
    let pool = DescriptorPool::decode(azora::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods: Vec<MethodDescriptor> = pool
        .services()
        .filter(|service| service.package_name().starts_with("azora."))
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect();
    // Calls that end or revoke a fixture go last, so the rest reach deep.
    let destructive = |method: &MethodDescriptor| {
        [
            "End",
            "Cancel",
            "Revoke",
            "Pay",
            "Approve",
            "Fail",
            "Confirm",
            "SetUserRole",
        ]
        .iter()
        .any(|verb| method.name().starts_with(verb))
    };
    methods.sort_by_key(|method| destructive(method));

    let mut tally = Tally::default();
    let mut before;
    for method in &methods {
        tally.rpcs += 1;
        let input = method.input();
        let founder = input.get_field_by_name("founder_id").is_some();
        let rpc = format!("{}/{}", method.parent_service().name(), method.name());
        let plausible = || fixtures.plausible(&input, founder, 0);
        // The key the plausible request is allowed with: money leaves a
        // wallet only by its owner's key, the rest is admin business.
        let probe = call(
            &channel,
            method,
            vec![plausible().encode_to_vec()],
            &app.admin_key,
            None,
        )
        .await;
        tally.calls += 1;
        let primary_is_admin = !matches!(probe, Outcome::Status(Code::PermissionDenied, ..));
        // The probe may have written (it is a plausible request).
        before = snapshot(&app).await;
        let case = |field: &str, value: &str, bodies: Vec<Vec<u8>>| Case {
            field: field.to_owned(),
            value: value.to_owned(),
            bodies,
            primary_key: true,
            deadline: None,
        };
        let whole = |value: &str, body: Vec<u8>| case("(whole)", value, vec![body]);
        let mut cases = vec![
            whole("plausible", plausible().encode_to_vec()),
            Case {
                primary_key: false,
                ..whole("plausible, with the other key", plausible().encode_to_vec())
            },
            whole("empty", Vec::new()),
            whole("garbage bytes", vec![0xff, 0xff, 0xff, 0x0f]),
            case("(whole)", "no message at all", Vec::new()),
            case(
                "(whole)",
                "two messages",
                vec![plausible().encode_to_vec(), plausible().encode_to_vec()],
            ),
            Case {
                deadline: Some(Duration::from_millis(1)),
                ..whole("1 ms deadline", plausible().encode_to_vec())
            },
        ];
        let mut truncated = plausible().encode_to_vec();
        truncated.pop();
        cases.push(whole("truncated", truncated));
        let mut unknown_field = plausible().encode_to_vec();
        Wire::Varint(7).append(999, &mut unknown_field);
        cases.push(whole("an unknown field", unknown_field));
        let mut oversized = plausible().encode_to_vec();
        Wire::Bytes(vec![b'o'; 4 * 1024 * 1024 + 1]).append(998, &mut oversized);
        cases.push(whole("over 4 MiB", oversized));
        let mut paths = Vec::new();
        leaves(&input, &[], &mut paths);
        for path in &paths {
            let leaf = path.last().unwrap();
            let name = path_name(path);
            for (label, wire) in malformed(leaf) {
                cases.push(case(&name, &label, vec![splice(&plausible(), path, &wire)]));
            }
            // Also the first few values alone, with nothing else set.
            for (label, wire) in malformed(leaf).into_iter().take(3) {
                let body = splice(&DynamicMessage::new(input.clone()), path, &wire);
                cases.push(case(&name, &format!("{label}, alone"), vec![body]));
            }
        }
        let mut plausible_outcome = None;
        for Case {
            field,
            value,
            bodies,
            primary_key,
            deadline,
        } in cases
        {
            let key = if primary_key == primary_is_admin {
                &app.admin_key
            } else {
                &fixtures.member_key
            };
            *in_flight().lock().unwrap() = format!("{rpc} {field} = {value}");
            let panics_at_start = panic_count();
            let log_at_start = log.lock().unwrap().len();
            let outcome = call(&channel, method, bodies, key, deadline).await;
            let panicked = panic_count() - panics_at_start;
            let logged: Vec<String> = log.lock().unwrap()[log_at_start..].to_vec();
            tally.calls += 1;
            if plausible_outcome.is_none() {
                plausible_outcome = Some(outcome.label());
            }
            *tally.histogram.entry(outcome.label()).or_default() += 1;
            let about_limits = ["NUL", "UTF-8", "nested", "KiB"]
                .iter()
                .any(|topic| value.contains(topic));
            if about_limits {
                tally
                    .limits
                    .insert(format!("{rpc} {field} = {value}"), outcome.label());
            }
            // NUL is refused naming the field it is in, wherever that is.
            let nul_at = match value.as_str() {
                "NUL inside" | "NUL alone" | "NUL inside, alone" | "NUL alone, alone" => {
                    Some(field.clone())
                }
                "decimal with NUL" => Some(format!("{field}.value")),
                "NUL in a value" => Some(format!("{field}.note")),
                "NUL in a key" => Some(field.clone()),
                _ => None,
            };
            // Bodies that are not one well-formed message are refused as such.
            let allowed: &[Code] = match (field.as_str(), value.as_str()) {
                ("(whole)", "garbage bytes" | "no message at all") => &[Code::InvalidArgument],
                ("(whole)", "over 4 MiB") => &[Code::OutOfRange, Code::ResourceExhausted],
                _ => &[],
            };
            if !allowed.is_empty()
                && !matches!(&outcome, Outcome::Status(code, ..) if allowed.contains(code))
            {
                tally.unnamed.push((
                    format!("{rpc} {field} = {value}"),
                    format!("expected one of {allowed:?}, got {outcome:?}"),
                ));
            }
            if let Some(expected) = nul_at {
                let named = matches!(&outcome, Outcome::Status(Code::InvalidArgument, _, fields) if fields.contains(&expected));
                if !named {
                    tally
                        .unnamed
                        .push((format!("{rpc} {field} = {value}"), format!("{outcome:?}")));
                }
            }
            let finding = Finding {
                rpc: rpc.clone(),
                field,
                value,
                outcome: outcome.clone(),
                panicked,
                logged,
            };
            let cut_short = deadline.is_some()
                && matches!(
                    outcome,
                    Outcome::Status(Code::DeadlineExceeded | Code::Cancelled, ..)
                );
            if finding.panicked > 0 {
                tally.broken.push(finding);
                before = snapshot(&app).await;
                continue;
            }
            if cut_short {
                // Whether a call cut short was applied is not known to its
                // caller, nor when: let it settle and count from there.
                before = settled_snapshot(&app).await;
                continue;
            }
            let after = snapshot(&app).await;
            match &outcome {
                // Without a deadline, CANCELLED means the server dropped the
                // call (a panicking handler's stream is reset).
                Outcome::Status(Code::Internal | Code::Unknown | Code::Cancelled, ..)
                | Outcome::Hung => tally.broken.push(finding),
                outcome if !outcome.accepted() && after != before => {
                    tally.wrote.push((finding, before.clone(), after.clone()))
                }
                _ if after != before => tally.accepted_writes += 1,
                _ => {}
            }
            before = after;
        }
        tally.plausible.push(format!(
            "{} {}",
            method.name(),
            plausible_outcome.unwrap_or_default()
        ));
    }

    // Still serving: health, and a normal call.
    println!(
        "malformed sweep on {backend:?}, the plausible request of each RPC: {}",
        tally.plausible.join(", ")
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers after the sweep")
        .into_inner()
        .status;
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let balance = app.available(&fixtures.member_wallet).await;
    assert!(!balance.is_empty());
    let panicked = panic_count() - panics_before;

    println!(
        "malformed sweep on {backend:?}: {} RPCs, {} calls in {:.1} s ({} accepted calls wrote); statuses: {:?}; panics: {panicked}",
        tally.rpcs,
        tally.calls,
        started.elapsed().as_secs_f64(),
        tally.accepted_writes,
        tally.histogram
    );
    let mut failures = Vec::new();
    for finding in &tally.broken {
        let message = match &finding.outcome {
            Outcome::Status(_, message, _) => message.clone(),
            _ => String::new(),
        };
        let panicked = if finding.panicked > 0 {
            format!(" after {} panic(s) in the server", finding.panicked)
        } else {
            String::new()
        };
        let logged: Vec<String> = finding
            .logged
            .iter()
            .map(|line| {
                format!(
                    "\n      server: {}",
                    line.chars().take(300).collect::<String>()
                )
            })
            .collect();
        failures.push(format!(
            "  {} {} = {}: {} {:?}{panicked}{}",
            finding.rpc,
            finding.field,
            finding.value,
            finding.outcome.label(),
            message.chars().take(200).collect::<String>(),
            logged.concat()
        ));
    }
    for (finding, before, after) in &tally.wrote {
        failures.push(format!(
            "  {} {} = {}: refused ({}) but wrote: {before:?} -> {after:?}",
            finding.rpc,
            finding.field,
            finding.value,
            finding.outcome.label()
        ));
    }
    *in_flight().lock().unwrap() = String::new();
    assert!(
        tally.accepted_writes > 10,
        "the snapshot saw only {} writes by accepted calls: it cannot tell a refused call that wrote",
        tally.accepted_writes
    );
    let panic_lines: Vec<String> = panics()[panics_before..]
        .iter()
        .map(|line| format!("  {}", line.replace('\n', " ")))
        .collect();
    for (case, outcome) in &tally.unnamed {
        failures.push(format!(
            "  {case}: not refused as it must be: {}",
            outcome.chars().take(300).collect::<String>()
        ));
    }
    // PostgreSQL cannot store what SQLite can: the edge refuses it on both.
    static FIRST_BACKEND: Mutex<Option<(Backend, BTreeMap<String, String>)>> = Mutex::new(None);
    let mut first = FIRST_BACKEND.lock().unwrap();
    match first.as_ref() {
        None => *first = Some((backend, tally.limits.clone())),
        Some((other, limits)) => {
            for (case, outcome) in &tally.limits {
                if let Some(theirs) = limits.get(case)
                    && theirs != outcome
                {
                    failures.push(format!(
                        "  {case}: {outcome} on {backend:?} but {theirs} on {other:?}"
                    ));
                }
            }
        }
    }
    drop(first);
    assert!(
        failures.is_empty() && panicked == 0,
        "{} finding(s) on {backend:?}:\n{}\n{panicked} panic(s) in the server:\n{}",
        failures.len(),
        failures.join("\n"),
        panic_lines.join("\n")
    );
}
