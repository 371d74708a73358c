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

/// The crate's contracts, decoded once from [`FILE_DESCRIPTOR_SET`].
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built by build.rs decodes")
    })
}

/// The RPCs whose proto marks them `option idempotency_level =
/// NO_SIDE_EFFECTS;`, as gRPC paths (`/azora.identity.v1.IdentityService/GetUser`).
///
/// The contract, not the method's name, says whether a call changes
/// anything: a read-only RPC carries the option, and every RPC without it
/// is taken to mutate (so the auth guard expects it to record an audit
/// event).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOnlyMethods {
    paths: std::collections::HashSet<String>,
}

impl ReadOnlyMethods {
    /// Every method marked NO_SIDE_EFFECTS in `pool`.
    pub fn from_descriptors(pool: &prost_reflect::DescriptorPool) -> Self {
        use prost_types::method_options::IdempotencyLevel;
        let paths = pool
            .services()
            .flat_map(|service| service.methods().collect::<Vec<_>>())
            .filter(|method| {
                method
                    .method_descriptor_proto()
                    .options
                    .as_ref()
                    .is_some_and(|options| {
                        options.idempotency_level() == IdempotencyLevel::NoSideEffects
                    })
            })
            .map(|method| format!("/{}/{}", method.parent_service().full_name(), method.name()))
            .collect();
        Self { paths }
    }

    /// The read-only methods of this crate's contracts.
    pub fn of_this_crate() -> Self {
        Self::from_descriptors(descriptor_pool())
    }

    /// Is `path` (`/package.Service/Method`) marked read-only?
    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Descriptors for tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A pool with one service whose methods are named against their
    /// options: a read-only `CheckThing` and a mutating `GetThing`.
    pub(crate) fn pool_with_misleading_names() -> prost_reflect::DescriptorPool {
        use prost_types::method_options::IdempotencyLevel;
        use prost_types::{
            DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
            MethodOptions, ServiceDescriptorProto,
        };
        let method = |name: &str, level: Option<IdempotencyLevel>| MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(".example.v1.Empty".into()),
            output_type: Some(".example.v1.Empty".into()),
            options: level.map(|level| MethodOptions {
                idempotency_level: Some(level as i32),
                ..Default::default()
            }),
            ..Default::default()
        };
        let file = FileDescriptorProto {
            name: Some("example/v1/example.proto".into()),
            package: Some("example.v1".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("Empty".into()),
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("ExampleService".into()),
                method: vec![
                    method("CheckThing", Some(IdempotencyLevel::NoSideEffects)),
                    method("GetThing", None),
                    method("ListThings", Some(IdempotencyLevel::Idempotent)),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        prost_reflect::DescriptorPool::from_file_descriptor_set(FileDescriptorSet {
            file: vec![file],
        })
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/package.Service/Method` of azora's own services.
    fn azora_methods() -> Vec<(String, prost_reflect::MethodDescriptor)> {
        descriptor_pool()
            .services()
            .filter(|service| service.package_name().starts_with("azora."))
            .flat_map(|service| service.methods().collect::<Vec<_>>())
            .map(|method| {
                let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
                (path, method)
            })
            .collect()
    }

    #[test]
    fn every_read_rpc_is_marked_read_only_in_its_proto_and_every_write_is_not() {
        let read_only = ReadOnlyMethods::of_this_crate();
        let methods = azora_methods();
        assert!(methods.len() > 50, "{} methods", methods.len());
        for (path, method) in &methods {
            let name = method.name();
            let reads = ["Get", "List", "Watch"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || name == "VerifyAuditLog";
            assert_eq!(read_only.contains(path), reads, "{path}");
        }
        for writes in [
            "/azora.treasury.v1.TreasuryService/Transfer",
            "/azora.compliance.v1.ComplianceService/GenerateComplianceReport",
            "/azora.compliance.v1.ComplianceService/AcknowledgeAlert",
            "/azora.mining.v1.MiningService/RecordStatistics",
        ] {
            assert!(!read_only.contains(writes), "{writes}");
        }
        assert!(read_only.contains("/azora.mining.v1.MiningService/WatchSession"));
    }

    #[test]
    fn the_option_decides_and_the_name_does_not() {
        let read_only = ReadOnlyMethods::from_descriptors(&testing::pool_with_misleading_names());
        assert!(read_only.contains("/example.v1.ExampleService/CheckThing"));
        assert!(!read_only.contains("/example.v1.ExampleService/GetThing"));
        assert!(
            !read_only.contains("/example.v1.ExampleService/ListThings"),
            "IDEMPOTENT is not NO_SIDE_EFFECTS"
        );
        assert_eq!(read_only.len(), 1);
    }
}
