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
pub mod mining;
pub mod money;
pub mod pagination;
pub mod proto;
pub mod redis;
pub mod rewards;
pub mod startup;
pub mod streams;
pub mod transport;
pub mod treasury;

pub use error::{Error, FieldViolation};
