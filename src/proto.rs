//! Code generated from `proto/` by `build.rs`, and the descriptor set that
//! server reflection serves.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod azora {
    pub mod r#type {
        pub mod v1 {
            tonic::include_proto!("azora.r#type.v1");
        }
    }
    pub mod compliance {
        pub mod v1 {
            tonic::include_proto!("azora.compliance.v1");
        }
    }
    pub mod identity {
        pub mod v1 {
            tonic::include_proto!("azora.identity.v1");
        }
    }
    pub mod mining {
        pub mod v1 {
            tonic::include_proto!("azora.mining.v1");
        }
    }
    pub mod treasury {
        pub mod v1 {
            tonic::include_proto!("azora.treasury.v1");
        }
    }
}

pub use azora::compliance::v1 as compliance;
pub use azora::identity::v1 as identity;
pub use azora::mining::v1 as mining;
pub use azora::treasury::v1 as treasury;
pub use azora::r#type::v1 as types;

/// Every file under `proto/` and its imports, encoded, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/azora_descriptor.bin"));
