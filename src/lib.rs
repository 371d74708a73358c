//! azora: the treasury of the AZR token economy, served over gRPC.
//!
//! Layout: one folder per service (`identity/`), each split into `transport`
//! (gRPC handlers), `operations` (use cases, authorization, transactions),
//! `store` (SeaORM queries) and `domain` (types parsed at the edge). Shared
//! pieces live beside them: configuration, startup, errors, authentication,
//! health, pagination and exact fixed-point numbers.

/// A closed set of values stored and sent as lowercase text: the enum, its
/// `ALL` list, `as_str`, `parse`, and (de)serialisation as that text.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} {text:?}", stringify!($name)))
                })
            }
        }
    };
}

/// A [`text_enum!`] that also has a proto enum on the wire, with the same
/// variant names plus `Unspecified`: `From<Self>` for the proto enum,
/// `to_wire`, and `from_wire` (UNSPECIFIED is "not given") /
/// `require_wire` (UNSPECIFIED is a violation) that name the field when the
/// number is not one the proto knows. A variant missing on either side is a
/// compile error, so the two lists cannot drift apart.
macro_rules! wire_enum {
    ($name:ident as $proto:path, $noun:literal {
        $($variant:ident => $text:literal),+ $(,)?
    }) => {
        text_enum!($name { $($variant => $text),+ });

        impl From<$name> for $proto {
            fn from(value: $name) -> Self {
                type Wire = $proto;
                match value { $($name::$variant => Wire::$variant),+ }
            }
        }

        impl $name {
            /// The number this value has on the wire.
            pub fn to_wire(self) -> i32 {
                <$proto>::from(self) as i32
            }

            /// An optional value: UNSPECIFIED is `None`.
            pub fn from_wire(
                field: &str,
                value: i32,
            ) -> Result<Option<Self>, crate::error::FieldViolation> {
                type Wire = $proto;
                match Wire::try_from(value) {
                    Ok(Wire::Unspecified) => Ok(None),
                    $(Ok(Wire::$variant) => Ok(Some($name::$variant)),)+
                    Err(_) => Err(crate::error::FieldViolation::new(
                        field,
                        concat!("is not a known ", $noun),
                    )),
                }
            }

            /// A required value: UNSPECIFIED is a violation too.
            pub fn require_wire(
                field: &str,
                value: i32,
            ) -> Result<Self, crate::error::FieldViolation> {
                Self::from_wire(field, value).ok().flatten().ok_or_else(|| {
                    crate::error::FieldViolation::new(
                        field,
                        format!(
                            "must be a {} other than {}",
                            $noun,
                            <$proto>::Unspecified.as_str_name()
                        ),
                    )
                })
            }
        }
    };
}

pub mod access;
pub mod address;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod codec;
pub mod compensation;
pub mod compliance;
pub mod config;
pub mod db;
pub mod error;
pub mod fixed;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod mining;
pub mod money;
pub mod pagination;
pub mod proto;
pub mod redis;
pub mod rewards;
pub mod startup;
pub mod streams;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod treasury;

pub use error::{Error, FieldViolation};
