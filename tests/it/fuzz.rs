//! Property-based fuzzing (proptest) of everything that reads caller input
//! before the database sees it: decimals, page tokens, metadata, the
//! request codec, the domain parse functions, and — through the real server
//! on both backends — whole requests built at random from the descriptors.
//!
//! The budget is fixed so CI time is bounded: [`CASES`] cases per property
//! (the gRPC property: [`GRPC_CASES_PER_RPC`] per RPC), with a fixed seed
//! (`AZORA_FUZZ_SEED` picks another; `AZORA_FUZZ_CASES` another budget).
//! `cargo test --test it fuzz:: -- --nocapture` prints each property's executions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{Backend, TestApp, authed};
use azora::codec::decode_request;
use azora::error::FieldViolation;
use azora::fixed::{format_units, parse_units};
use azora::money::{Amount, MAX_AMOUNT_MICROS, RequestId, format_azr};
use azora::pagination::{MAX_PAGE_SIZE, PageRequest};
use azora::transport::{MAX_JSON_DEPTH, MAX_JSON_OBJECT_BYTES, json_object, json_to_struct};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use rand::{Rng, SeedableRng};
use tonic::Code;

/// Cases per property.
const CASES: u32 = 2000;
/// Random requests per RPC in the gRPC property, per backend.
const GRPC_CASES_PER_RPC: u32 = 24;

fn seed() -> u64 {
    std::env::var("AZORA_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x0a20_2611)
}

fn config(cases: u32) -> Config {
    let cases = std::env::var("AZORA_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(cases);
    Config {
        rng_seed: RngSeed::Fixed(seed()),
        // Failures are reported with their input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

/// Runs one property for the fixed budget and prints how many cases ran.
fn check<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let executed = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config(CASES));
    let outcome = runner.run(&strategy, |value| {
        executed.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    println!(
        "fuzz {name}: {} executions (seed {})",
        executed.load(Ordering::Relaxed),
        seed()
    );
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
    }
}

/// Text as callers send it: anything, often with the characters that
/// matter (NUL, digits, signs, separators, non-ASCII).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9.+eE_, -]{0,24}",
        "[a-z0-9\\x00 ._-]{0,12}",
        "\\PC{0,8}",
    ]
}

#[test]
fn amounts_read_back_exactly_what_they_write() {
    check(
        "Amount: parse(format(x)) == x",
        1..=MAX_AMOUNT_MICROS,
        |micros| {
            let parsed = Amount::parse("amount", &format_azr(micros))
                .map_err(|violation| TestCaseError::fail(format!("{micros}: {violation:?}")))?;
            prop_assert_eq!(parsed.micros(), micros);
            Ok(())
        },
    );
    check(
        "parse_units(format_units(x, scale)) == x for every scale",
        (0..=i64::MAX, 0u32..=9),
        |(units, scale)| {
            prop_assert_eq!(
                parse_units("x", &format_units(units, scale), scale, i64::MAX),
                Ok(units)
            );
            Ok(())
        },
    );
}

#[test]
fn decimal_parsing_never_panics_and_accepts_only_plain_decimals() {
    check("decimal parsing of arbitrary text", text(), |text| {
        let parsed = Amount::parse("amount", &text);
        if let Ok(amount) = parsed {
            // Only a plain decimal is accepted: digits, at most one dot.
            prop_assert!(
                text.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{text:?} was accepted"
            );
            prop_assert!(amount.micros() > 0 && amount.micros() <= MAX_AMOUNT_MICROS);
        }
        for scale in [0, 2, 4, 6, 9] {
            let _ = parse_units("x", &text, scale, i64::MAX);
        }
        Ok(())
    });
}

#[test]
fn plain_decimals_are_accepted_exactly_when_they_fit() {
    check(
        "plain decimals against an exact oracle",
        (
            "[0-9]{1,30}",
            proptest::option::of("[0-9]{1,9}"),
            0u32..=9,
            any::<i64>(),
        ),
        |(whole, fraction, scale, max)| {
            let max = max.unsigned_abs().min(i64::MAX as u64) as i64;
            let text = match &fraction {
                Some(fraction) => format!("{whole}.{fraction}"),
                None => whole.clone(),
            };
            let fraction = fraction.unwrap_or_default();
            // The oracle: exact integer arithmetic in i128 (30 + 9 digits fit).
            let expected = if fraction.len() > scale as usize {
                None
            } else {
                let whole: i128 = whole.parse().unwrap();
                let padded = format!("{fraction:0<width$}", width = scale as usize);
                let fraction: i128 = if padded.is_empty() {
                    0
                } else {
                    padded.parse().unwrap()
                };
                whole
                    .checked_mul(10i128.pow(scale))
                    .map(|units| units + fraction)
                    .filter(|units| *units <= i128::from(max))
                    .map(|units| units as i64)
            };
            prop_assert_eq!(
                parse_units("x", &text, scale, max).ok(),
                expected,
                "{}",
                text
            );
            Ok(())
        },
    );
}

#[test]
fn page_tokens_never_panic_and_decode_only_for_their_own_filters() {
    check(
        "page parsing of arbitrary sizes, tokens and filters",
        (any::<i32>(), text(), text()),
        |(size, token, filters)| {
            match PageRequest::parse(size, &token, &filters) {
                Ok(page) => {
                    prop_assert!(size >= 0);
                    prop_assert!(page.size >= 1 && page.size <= MAX_PAGE_SIZE);
                }
                Err(violations) => {
                    prop_assert!(!violations.is_empty());
                    prop_assert!(
                        violations
                            .iter()
                            .all(|violation| violation.field == "page_size"
                                || violation.field == "page_token")
                    );
                }
            }
            Ok(())
        },
    );
    check(
        "a page token is bound to the filters it was issued for",
        (
            1i32..20,
            text(),
            text(),
            any::<u128>(),
            0usize..64,
            any::<u8>(),
        ),
        |(size, filters, other_filters, seed, position, replacement)| {
            let page = PageRequest::parse(size, "", &filters).unwrap();
            let mut rows: Vec<uuid::Uuid> = (0..=size as u128)
                .map(|offset| uuid::Uuid::from_u128(seed.wrapping_add(offset)))
                .collect();
            let ids = rows.clone();
            let token = page.finish(&mut rows, |id| *id);
            prop_assert!(!token.is_empty());
            let next = PageRequest::parse(size, &token, &filters).unwrap();
            prop_assert_eq!(next.after, Some(ids[size as usize - 1]));
            if other_filters != filters {
                prop_assert!(PageRequest::parse(size, &token, &other_filters).is_err());
            }
            // A damaged token never panics; it is refused or is another cursor.
            let mut damaged = token.into_bytes();
            let position = position % damaged.len();
            damaged[position] = replacement;
            if let Ok(damaged) = String::from_utf8(damaged) {
                let _ = PageRequest::parse(size, &damaged, &filters);
                let _ = PageRequest::parse(size, &damaged[..position], &filters);
            }
            Ok(())
        },
    );
}

fn json_value() -> impl Strategy<Value = prost_types::Value> {
    use prost_types::value::Kind;
    let leaf = prop_oneof![
        Just(Kind::NullValue(0)),
        any::<bool>().prop_map(Kind::BoolValue),
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            -1e6f64..1e6
        ]
        .prop_map(Kind::NumberValue),
        text().prop_map(Kind::StringValue),
    ]
    .prop_map(|kind| prost_types::Value { kind: Some(kind) });
    leaf.prop_recursive(12, 96, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|values| { Kind::ListValue(prost_types::ListValue { values }) }),
            proptest::collection::btree_map(text(), inner, 0..4).prop_map(|fields| {
                Kind::StructValue(prost_types::Struct {
                    fields: fields.into_iter().collect(),
                })
            }),
        ]
        .prop_map(|kind| prost_types::Value { kind: Some(kind) })
    })
}

fn json_struct() -> impl Strategy<Value = prost_types::Struct> {
    proptest::collection::btree_map(text(), json_value(), 0..5).prop_map(|fields| {
        prost_types::Struct {
            fields: fields.into_iter().collect(),
        }
    })
}

/// Objects and arrays around (and in) a value.
fn depth(value: &prost_types::Value) -> usize {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StructValue(object)) => 1 + object.fields.values().map(depth).max().unwrap_or(0),
        Some(Kind::ListValue(list)) => 1 + list.values.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn object_depth(object: &prost_types::Struct) -> usize {
    1 + object.fields.values().map(depth).max().unwrap_or(0)
}

/// The JSON a value stands for, if every number is finite: written
/// independently of `transport` to be its oracle.
fn oracle_json(value: &prost_types::Value) -> Option<serde_json::Value> {
    use prost_types::value::Kind;
    Some(match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => {
            serde_json::Value::Number(serde_json::Number::from_f64(*number)?)
        }
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(oracle_json).collect::<Option<_>>()?)
        }
        Some(Kind::StructValue(object)) => serde_json::Value::Object(oracle_object(object)?),
    })
}

fn oracle_object(
    object: &prost_types::Struct,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    object
        .fields
        .iter()
        .map(|(key, value)| Some((key.clone(), oracle_json(value)?)))
        .collect()
}

fn holds_nul(value: &prost_types::Value) -> bool {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(text)) => text.contains('\0'),
        Some(Kind::ListValue(list)) => list.values.iter().any(holds_nul),
        Some(Kind::StructValue(object)) => object_holds_nul(object),
        _ => false,
    }
}

fn object_holds_nul(object: &prost_types::Struct) -> bool {
    object
        .fields
        .iter()
        .any(|(key, value)| key.contains('\0') || holds_nul(value))
}

#[test]
fn metadata_converts_within_its_limits_and_round_trips() {
    check(
        "json_object of arbitrary Structs",
        json_struct(),
        |object| {
            let expected = oracle_object(&object).filter(|json| {
                object_depth(&object) <= MAX_JSON_DEPTH
                    && serde_json::Value::Object(json.clone()).to_string().len()
                        <= MAX_JSON_OBJECT_BYTES
            });
            match json_object("metadata", Some(object.clone())) {
                Ok(json) => {
                    prop_assert_eq!(Some(&json), expected.as_ref());
                    // json → Struct → json is the identity.
                    let again = json_object("metadata", Some(json_to_struct(json.clone())));
                    prop_assert_eq!(again, Ok(json));
                }
                Err(violation) => {
                    prop_assert!(expected.is_none(), "refused: {violation:?}");
                    prop_assert_eq!(violation.field, "metadata");
                }
            }
            Ok(())
        },
    );
}

#[test]
fn the_codec_refuses_exactly_the_requests_that_hold_nul() {
    use azora::proto::treasury::MintRequest;
    check(
        "the request codec on arbitrary MintRequests",
        (text(), text(), proptest::option::of(json_struct())),
        |(request_id, reason, metadata)| {
            let request = MintRequest {
                request_id: request_id.clone(),
                reason: reason.clone(),
                metadata: metadata.clone(),
                ..Default::default()
            };
            let nul = request_id.contains('\0')
                || reason.contains('\0')
                || metadata.as_ref().is_some_and(object_holds_nul);
            let deep = metadata
                .as_ref()
                .is_some_and(|object| object_depth(object) > MAX_JSON_DEPTH);
            let decoded = decode_request::<MintRequest>(
                "azora.treasury.v1.MintRequest",
                &request.encode_to_vec(),
            )
            .expect("MintRequest is a request type");
            match decoded {
                Ok(message) => {
                    prop_assert!(!nul, "NUL was let through");
                    // Compared encoded: NaN metadata is not equal to itself.
                    prop_assert_eq!(message.encode_to_vec(), request.encode_to_vec());
                }
                Err(FieldViolation { field, description }) => {
                    prop_assert!(nul || deep, "refused {field}: {description}");
                    prop_assert!(
                        field == "request_id" || field == "reason" || field.starts_with("metadata"),
                        "{field}"
                    );
                }
            }
            Ok(())
        },
    );
}

/// Every request message type of the azora services.
fn request_types() -> Vec<MessageDescriptor> {
    let pool = DescriptorPool::decode(azora::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut types: BTreeMap<String, MessageDescriptor> = BTreeMap::new();
    for service in pool
        .services()
        .filter(|service| service.package_name().starts_with("azora."))
    {
        for method in service.methods() {
            types.insert(method.input().full_name().to_owned(), method.input());
        }
    }
    types.into_values().collect()
}

/// A request of type `message` with random contents, from `seed`: strings
/// that are empty, ids, decimals, garbage or NUL; numbers at the extremes;
/// enums in and out of range; nested and repeated messages; metadata.
fn random_request(message: &MessageDescriptor, seed: u64) -> DynamicMessage {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    random_message(message, &mut rng, 0)
}

fn random_text(rng: &mut impl Rng) -> String {
    match rng.random_range(0..10) {
        0 => String::new(),
        1 => uuid::Uuid::from_u128(rng.random()).to_string(),
        2 => [
            "1",
            "0.000001",
            "1e400",
            "-1",
            "NaN",
            "1.1234567",
            "1000000000.000001",
        ][rng.random_range(0..7)]
        .to_owned(),
        3 => "a\0b".to_owned(),
        4 => "x".repeat(rng.random_range(0..3000)),
        5 => [
            "2026-11",
            "2026-13",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "DE",
            "en",
        ][rng.random_range(0..5)]
        .to_owned(),
        _ => (0..rng.random_range(0..12))
            .map(|_| char::from_u32(rng.random_range(0..0x2_0000)).unwrap_or('?'))
            .collect(),
    }
}

fn random_value(field: &prost_reflect::FieldDescriptor, rng: &mut impl Rng, depth: usize) -> Value {
    let number: i64 = match rng.random_range(0..5) {
        0 => 0,
        1 => i64::MAX,
        2 => i64::MIN,
        3 => -1,
        _ => rng.random_range(-1000..1000),
    };
    match field.kind() {
        Kind::String => Value::String(random_text(rng)),
        Kind::Bytes => Value::Bytes(Default::default()),
        Kind::Bool => Value::Bool(rng.random()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(number as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(number),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(number as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(number as u64),
        Kind::Double => {
            Value::F64([f64::NAN, f64::INFINITY, -1.0, 0.0, 50.0, 1e308][rng.random_range(0..6)])
        }
        Kind::Float => Value::F32([f32::NAN, -1.0, 1.0][rng.random_range(0..3)]),
        Kind::Enum(_) => Value::EnumNumber(rng.random_range(-2..8)),
        Kind::Message(inner) => Value::Message(match inner.full_name() {
            "google.protobuf.Timestamp" => {
                let bytes = prost_types::Timestamp {
                    seconds: match rng.random_range(0..4) {
                        0 => i64::MAX,
                        1 => -62_135_596_801,
                        _ => chrono::Utc::now().timestamp() + rng.random_range(-100_000..100_000),
                    },
                    nanos: [0, -1, 999_999_999, 1_000_000_000][rng.random_range(0..4)],
                }
                .encode_to_vec();
                DynamicMessage::decode(inner, bytes.as_slice()).unwrap()
            }
            "google.protobuf.Struct" => {
                let mut object = prost_types::Struct::default();
                let levels = rng.random_range(0..12);
                for level in 0..levels {
                    let value = prost_types::Value {
                        kind: Some(if level % 3 == 2 {
                            prost_types::value::Kind::ListValue(prost_types::ListValue {
                                values: vec![prost_types::Value {
                                    kind: Some(prost_types::value::Kind::StructValue(object)),
                                }],
                            })
                        } else {
                            prost_types::value::Kind::StructValue(object)
                        }),
                    };
                    object = prost_types::Struct {
                        fields: [(random_text(rng), value)].into_iter().collect(),
                    };
                }
                DynamicMessage::decode(inner, object.encode_to_vec().as_slice()).unwrap()
            }
            _ => random_message(&inner, rng, depth + 1),
        }),
    }
}

fn random_message(message: &MessageDescriptor, rng: &mut impl Rng, depth: usize) -> DynamicMessage {
    let mut built = DynamicMessage::new(message.clone());
    if depth > 3 {
        return built;
    }
    for field in message.fields() {
        if field.is_map() || rng.random_range(0..4) == 0 {
            continue;
        }
        let value = if field.is_list() {
            Value::List(
                (0..rng.random_range(0..3))
                    .map(|_| random_value(&field, rng, depth))
                    .collect(),
            )
        } else {
            random_value(&field, rng, depth)
        };
        built.set_field(&field, value);
    }
    built
}

/// Whether any string in `message` holds NUL, and whether its metadata
/// nests deeper than the limit.
fn refusable(message: &DynamicMessage) -> (bool, bool) {
    let (mut nul, mut deep) = (false, false);
    for (field, value) in message.fields() {
        let values = match value {
            Value::List(values) => values.iter().collect::<Vec<_>>(),
            value => vec![value],
        };
        for value in values {
            match value {
                Value::String(text) => nul |= text.contains('\0'),
                Value::Message(inner)
                    if field
                        .kind()
                        .as_message()
                        .is_some_and(|kind| kind.full_name() == "google.protobuf.Struct") =>
                {
                    let object =
                        prost_types::Struct::decode(inner.encode_to_vec().as_slice()).unwrap();
                    nul |= object_holds_nul(&object);
                    deep |= object_depth(&object) > MAX_JSON_DEPTH;
                }
                Value::Message(inner) => {
                    let (inner_nul, inner_deep) = refusable(inner);
                    nul |= inner_nul;
                    deep |= inner_deep;
                }
                _ => {}
            }
        }
    }
    (nul, deep)
}

#[test]
fn the_codec_never_panics_and_refuses_only_what_it_must_for_every_request_type() {
    let types = request_types();
    check(
        "the request codec on arbitrary bytes, for every request type",
        (
            0..types.len(),
            proptest::collection::vec(any::<u8>(), 0..200),
        ),
        |(index, bytes)| {
            let name = types[index].full_name();
            // `()` decodes any well-framed body; the codec then walks it as
            // the named request type.
            let outcome = decode_request::<()>(name, &bytes);
            prop_assert!(outcome.is_some(), "{name} is a request type");
            Ok(())
        },
    );
    check(
        "the request codec on random requests, for every request type",
        (0..types.len(), any::<u64>()),
        |(index, seed)| {
            let request = random_request(&types[index], seed);
            let bytes = request.encode_to_vec();
            let outcome = decode_request::<()>(types[index].full_name(), &bytes).unwrap();
            // Refused exactly when it must be: NUL anywhere; metadata too
            // deep when the body is walked at all (it holds a 0x00 byte;
            // otherwise `json_object` refuses it in the handler).
            let (nul, deep) = refusable(&request);
            let expected = nul || (deep && bytes.contains(&0));
            prop_assert_eq!(outcome.is_err(), expected, "{:?}", outcome);
            Ok(())
        },
    );
}

#[test]
fn domain_parse_functions_never_panic_on_arbitrary_text() {
    use azora::address::Address;
    use azora::compensation::domain::Month;
    use azora::identity::domain::{
        CountryCode, Email, LanguageTag, ReputationScore, Username, parse_label,
    };
    use azora::mining::domain::{parse_algorithm, parse_text};
    use azora::rewards::domain::{parse_evidence_hash, parse_score, parse_subject};
    use azora::transport::parse_id;
    check(
        "every domain parse function on arbitrary text",
        text(),
        |text| {
            let field = "field";
            let _ = Username::parse(field, &text);
            let _ = Email::parse(field, &text);
            let _ = Address::parse(field, &text);
            let _ = CountryCode::parse(field, &text);
            let _ = LanguageTag::parse(field, &text);
            let _ = ReputationScore::parse(field, &text);
            let _ = parse_label(field, &text);
            let _ = Month::parse(field, &text);
            let _ = RequestId::parse(field, &text);
            let _ = parse_score(field, &text);
            let _ = parse_evidence_hash(field, &text);
            let _ = parse_subject(field, &text);
            let _ = parse_algorithm(field, &text);
            let _ = parse_text(field, &text, true, 500);
            if parse_id(field, &text).is_ok() {
                prop_assert!(uuid::Uuid::parse_str(&text).is_ok());
            }
            Ok(())
        },
    );
    check(
        "CreateUserRequest → NewUser on arbitrary requests",
        (
            text(),
            text(),
            any::<i32>(),
            text(),
            text(),
            text(),
            text(),
            proptest::option::of(json_struct()),
        ),
        |(
            username,
            email,
            user_type,
            wallet_address,
            jurisdiction,
            country,
            language,
            metadata,
        )| {
            // Fields added to the request later (a request id) keep their
            // defaults here; the descriptor-driven properties fuzz them.
            #[allow(clippy::needless_update)]
            let request = azora::proto::identity::CreateUserRequest {
                username,
                email,
                user_type,
                wallet_address,
                jurisdiction,
                country,
                language,
                metadata,
                ..Default::default()
            };
            let _ = azora::identity::domain::NewUser::try_from(request);
            Ok(())
        },
    );
    check(
        "timestamps from arbitrary seconds and nanos",
        (any::<i64>(), any::<i32>()),
        |(seconds, nanos)| {
            let parsed =
                azora::transport::datetime_from("time", &prost_types::Timestamp { seconds, nanos });
            if let Ok(at) = parsed {
                prop_assert_eq!(at.timestamp(), seconds);
                prop_assert_eq!(i64::from(at.timestamp_subsec_nanos()), i64::from(nanos));
            }
            Ok(())
        },
    );
}

on_both_backends!(random_requests_to_every_rpc_never_fail_internally);

/// Whole random requests through the real server: the request → domain
/// conversions of every handler, and whatever lies behind them.
async fn random_requests_to_every_rpc_never_fail_internally(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.channel().await;
    let pool = DescriptorPool::decode(azora::proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<_> = pool
        .services()
        .filter(|service| service.package_name().starts_with("azora."))
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let cases = config(GRPC_CASES_PER_RPC).cases;
    let mut executions = 0;
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    let mut broken = Vec::new();
    for method in &methods {
        let path: http::uri::PathAndQuery =
            format!("/{}/{}", method.parent_service().full_name(), method.name())
                .parse()
                .unwrap();
        for _ in 0..cases {
            let request = random_request(&method.input(), rng.random());
            let body = request.encode_to_vec();
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let request_message = authed(&app.admin_key, body);
            let call = async {
                if method.is_server_streaming() {
                    match grpc
                        .server_streaming(request_message, path.clone(), Raw)
                        .await
                    {
                        Ok(response) => {
                            let mut stream = response.into_inner();
                            match tokio::time::timeout(Duration::from_millis(100), stream.message())
                                .await
                            {
                                Ok(Err(status)) => status.code(),
                                _ => Code::Ok,
                            }
                        }
                        Err(status) => status.code(),
                    }
                } else if method.is_client_streaming() {
                    grpc.client_streaming(
                        request_message.map(|body| futures::stream::iter(vec![body])),
                        path.clone(),
                        Raw,
                    )
                    .await
                    .map_or_else(|status| status.code(), |_| Code::Ok)
                } else {
                    grpc.unary(request_message, path.clone(), Raw)
                        .await
                        .map_or_else(|status| status.code(), |_| Code::Ok)
                }
            };
            let code = tokio::time::timeout(Duration::from_secs(15), call)
                .await
                .unwrap_or(Code::DeadlineExceeded);
            executions += 1;
            *histogram.entry(format!("{code:?}")).or_default() += 1;
            if matches!(
                code,
                Code::Internal | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
            ) {
                broken.push(format!("{} {request:?}: {code:?}", method.name()));
            }
        }
    }
    println!(
        "fuzz random requests on {backend:?}: {executions} executions over {} RPCs (seed {}); statuses {histogram:?}",
        methods.len(),
        seed()
    );
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Sends and receives message bodies as they are.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Self::Encoder {
        Raw
    }

    fn decoder(&mut self) -> Self::Decoder {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let length = buf.remaining();
        Ok(Some(buf.copy_to_bytes(length).to_vec()))
    }
}
