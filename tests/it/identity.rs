//! IdentityService over a real gRPC channel, on PostgreSQL and SQLite.

use std::collections::HashSet;

use crate::common::{Backend, TestApp, authed, violated_fields};
use azora::identity::entities::api_key;
use azora::proto::identity as pb;
use azora::proto::types::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

on_both_backends!(
    an_admin_creates_a_user_and_reads_it_back_in_canonical_form,
    duplicate_usernames_emails_and_addresses_are_already_exists,
    invalid_create_requests_name_every_bad_field_and_write_nothing,
    missing_malformed_unknown_revoked_and_expired_keys_are_unauthenticated,
    each_role_sees_only_what_it_may,
    pagination_walks_every_page_without_duplicates_or_gaps,
    update_user_changes_only_the_masked_fields,
    changing_a_role_revokes_keys_of_the_old_role_and_keeps_the_last_admin,
    kyc_status_is_set_by_admins_and_auditors_with_a_reason_for_rejection,
    wallets_are_created_listed_and_validated,
    api_keys_are_shown_once_listed_without_secrets_and_revocable,
    a_key_revoked_elsewhere_stops_working_within_the_cache_ttl,
);

const ADDRESS: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

async fn an_admin_creates_a_user_and_reads_it_back_in_canonical_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let mut metadata = prost_types::Struct::default();
    metadata.fields.insert(
        "course".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("rust-101".into())),
        },
    );
    let created = identity
        .create_user(authed(
            &app.admin_key,
            pb::CreateUserRequest {
                username: "Alice.Smith".into(),
                email: "Alice@Example.COM".into(),
                user_type: pb::UserType::Student as i32,
                wallet_address: ADDRESS.to_lowercase(),
                jurisdiction: "de".into(),
                country: "PT".into(),
                language: "pt-BR".into(),
                metadata: Some(metadata.clone()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.username, "alice.smith");
    assert_eq!(created.email, "alice@example.com");
    assert_eq!(
        created.wallet_address, ADDRESS,
        "returned EIP-55 checksummed"
    );
    assert_eq!(created.jurisdiction, "DE");
    assert_eq!(created.country, "PT");
    assert_eq!(created.language, "pt-BR");
    assert_eq!(created.role, pb::Role::Member as i32);
    assert_eq!(created.kyc_status, pb::KycStatus::Pending as i32);
    assert_eq!(
        created.reputation_score,
        Some(Decimal {
            value: "0.0000".into()
        })
    );
    assert_eq!(created.metadata, Some(metadata));
    assert!(created.create_time.is_some() && created.update_time.is_some());

    let read = identity
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(read, created);

    let missing = identity
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = identity
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: "not-a-uuid".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), ["user_id"]);
}

async fn duplicate_usernames_emails_and_addresses_are_already_exists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let request = |username: &str, email: &str, address: &str| {
        authed(
            &app.admin_key,
            pb::CreateUserRequest {
                username: username.into(),
                email: email.into(),
                user_type: pb::UserType::Teacher as i32,
                wallet_address: address.into(),
                ..Default::default()
            },
        )
    };
    identity
        .create_user(request("bob", "bob@example.com", ADDRESS))
        .await
        .unwrap();
    let other = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
    for (username, email, address, field) in [
        ("BOB", "other@example.com", other, "username"),
        ("bobby", "BOB@example.com", other, "email"),
        ("robert", "robert@example.com", ADDRESS, "wallet_address"),
    ] {
        let status = identity
            .create_user(request(username, email, address))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
}

async fn invalid_create_requests_name_every_bad_field_and_write_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let mut big = prost_types::Struct::default();
    big.fields.insert(
        "blob".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".repeat(20_000))),
        },
    );
    let status = identity
        .create_user(authed(
            &app.admin_key,
            pb::CreateUserRequest {
                username: "a".into(),
                email: "no-at-sign".into(),
                user_type: 0,
                wallet_address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD".into(),
                jurisdiction: "XX".into(),
                country: "Germany".into(),
                language: "en_US".into(),
                metadata: Some(big),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    let fields: HashSet<String> = violated_fields(&status).into_iter().collect();
    let expected: HashSet<String> = [
        "username",
        "email",
        "user_type",
        "wallet_address",
        "jurisdiction",
        "country",
        "language",
        "metadata",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(fields, expected);

    let users = identity
        .list_users(authed(&app.admin_key, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1, "only the bootstrap admin exists");
}

async fn missing_malformed_unknown_revoked_and_expired_keys_are_unauthenticated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (user_id, key) = app.user_with_role("carol", pb::Role::Member).await;
    let (_, expiring_key) = app.user_with_role("dave", pb::Role::Member).await;

    let no_key = identity
        .get_user(pb::GetUserRequest {
            user_id: user_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::Unauthenticated);
    for bad in [
        "garbage",
        "azr_",
        &format!("{}x", &key[..key.len() - 1]),
        &key.to_uppercase(),
    ] {
        let status = identity
            .get_user(authed(
                bad,
                pb::GetUserRequest {
                    user_id: user_id.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
        assert!(status.details().is_empty(), "no detail for a bad key");
    }
    let mut basic = tonic::Request::new(pb::GetUserRequest {
        user_id: user_id.clone(),
    });
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {key}").parse().unwrap());
    assert_eq!(
        identity.get_user(basic).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // The key works, then is revoked, then does not.
    identity
        .get_user(authed(
            &key,
            pb::GetUserRequest {
                user_id: user_id.clone(),
            },
        ))
        .await
        .unwrap();
    let keys = identity
        .list_api_keys(authed(
            &app.admin_key,
            pb::ListApiKeysRequest {
                user_id: user_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    identity
        .revoke_api_key(authed(
            &app.admin_key,
            pb::RevokeApiKeyRequest {
                api_key_id: keys[0].id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let revoked = identity
        .get_user(authed(&key, pb::GetUserRequest { user_id }))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);

    // An expired key: its expiry moved into the past directly in the database.
    api_key::Entity::update_many()
        .col_expr(
            api_key::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(api_key::Column::KeyHash.eq(azora::auth::hash_secret(&expiring_key)))
        .exec(&app.db)
        .await
        .unwrap();
    let expired = identity
        .list_users(authed(&expiring_key, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
}

async fn each_role_sees_only_what_it_may(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (member_id, member) = app.user_with_role("member1", pb::Role::Member).await;
    let (other_id, _) = app.user_with_role("member2", pb::Role::Member).await;
    let (_, treasurer) = app.user_with_role("treasurer1", pb::Role::Treasurer).await;
    let (_, auditor) = app.user_with_role("auditor1", pb::Role::Auditor).await;
    let service = identity
        .create_api_key(authed(
            &member,
            pb::CreateApiKeyRequest {
                user_id: member_id.clone(),
                role: pb::Role::Service as i32,
                name: "rig-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let other_wallet = identity
        .create_wallet(authed(
            &app.admin_key,
            pb::CreateWalletRequest {
                owner_id: other_id.clone(),
                address: ADDRESS.into(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallet
        .unwrap();
    let missing = uuid::Uuid::now_v7().to_string();

    // GetUser: own / other / missing, per role.
    let get_user = |key: &str, id: &str| authed(key, pb::GetUserRequest { user_id: id.into() });
    for (name, key, own_id, other, missing_code) in [
        (
            "admin",
            app.admin_key.as_str(),
            app.admin_id.as_str(),
            Ok(()),
            Code::NotFound,
        ),
        ("treasurer", treasurer.as_str(), "", Ok(()), Code::NotFound),
        ("auditor", auditor.as_str(), "", Ok(()), Code::NotFound),
        (
            "member",
            member.as_str(),
            member_id.as_str(),
            Err(Code::PermissionDenied),
            Code::PermissionDenied,
        ),
        (
            "service",
            service.as_str(),
            member_id.as_str(),
            Err(Code::PermissionDenied),
            Code::PermissionDenied,
        ),
    ] {
        if !own_id.is_empty() {
            identity
                .get_user(get_user(key, own_id))
                .await
                .unwrap_or_else(|s| panic!("{name} own: {s:?}"));
        }
        let result = identity
            .get_user(get_user(key, &other_id))
            .await
            .map(|_| ())
            .map_err(|s| s.code());
        assert_eq!(result, other, "{name} reading another user");
        let status = identity
            .get_user(get_user(key, &missing))
            .await
            .unwrap_err();
        assert_eq!(status.code(), missing_code, "{name} reading a missing user");

        // Wallets: another's, and a missing one, look the same to members.
        let result = identity
            .get_wallet(authed(
                key,
                pb::GetWalletRequest {
                    wallet_id: other_wallet.id.clone(),
                },
            ))
            .await
            .map(|_| ())
            .map_err(|s| s.code());
        assert_eq!(result, other, "{name} reading another's wallet");
        let status = identity
            .get_wallet(authed(
                key,
                pb::GetWalletRequest {
                    wallet_id: missing.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            missing_code,
            "{name} reading a missing wallet"
        );

        let result = identity
            .list_wallets(authed(
                key,
                pb::ListWalletsRequest {
                    owner_id: other_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ())
            .map_err(|s| s.code());
        assert_eq!(result, other, "{name} listing another's wallets");
    }

    // Members listing users see only themselves.
    let listed = identity
        .list_users(authed(&member, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(
        listed
            .iter()
            .map(|user| user.id.as_str())
            .collect::<Vec<_>>(),
        [member_id.as_str()]
    );

    // Admin-only changes.
    for (name, key) in [
        ("treasurer", &treasurer),
        ("auditor", &auditor),
        ("member", &member),
        ("service", &service),
    ] {
        let status = identity
            .create_user(authed(
                key,
                pb::CreateUserRequest {
                    username: format!("new-{name}"),
                    user_type: pb::UserType::Student as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{name} creating a user"
        );
        let status = identity
            .set_user_role(authed(
                key,
                pb::SetUserRoleRequest {
                    user_id: member_id.clone(),
                    role: pb::Role::Admin as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{name} setting a role"
        );
        let status = identity
            .create_api_key(authed(
                key,
                pb::CreateApiKeyRequest {
                    user_id: other_id.clone(),
                    role: pb::Role::Member as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{name} creating another's key"
        );
    }
    // A service key acts for its user but cannot mint more keys.
    let status = identity
        .create_api_key(authed(
            &service,
            pb::CreateApiKeyRequest {
                user_id: member_id.clone(),
                role: pb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn pagination_walks_every_page_without_duplicates_or_gaps(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let mut created = vec![app.admin_id.clone()];
    for index in 0..23 {
        let user_type = if index % 2 == 0 {
            pb::UserType::Student
        } else {
            pb::UserType::Teacher
        };
        let user = identity
            .create_user(authed(
                &app.admin_key,
                pb::CreateUserRequest {
                    username: format!("user{index:02}"),
                    user_type: user_type as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        created.push(user.id);
    }

    let walk = |user_type: pb::UserType, page_size: i32| {
        let mut identity = identity.clone();
        let key = app.admin_key.clone();
        async move {
            let mut seen = Vec::new();
            let mut token = String::new();
            let mut pages = 0;
            loop {
                let page = identity
                    .list_users(authed(
                        &key,
                        pb::ListUsersRequest {
                            page_size,
                            page_token: token.clone(),
                            user_type: user_type as i32,
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                pages += 1;
                assert!(page.users.len() <= page_size as usize);
                seen.extend(page.users.into_iter().map(|user| user.id));
                if page.next_page_token.is_empty() {
                    return (seen, pages);
                }
                token = page.next_page_token;
            }
        }
    };
    let (all, pages) = walk(pb::UserType::Unspecified, 5).await;
    assert_eq!(all, created, "every user once, oldest first");
    assert_eq!(pages, 5);
    let (students, _) = walk(pb::UserType::Student, 4).await;
    assert_eq!(students.len(), 12);
    assert_eq!(students.iter().collect::<HashSet<_>>().len(), 12);

    let first = identity
        .list_users(authed(
            &app.admin_key,
            pb::ListUsersRequest {
                page_size: 3,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let reused = identity
        .list_users(authed(
            &app.admin_key,
            pb::ListUsersRequest {
                page_size: 3,
                page_token: first.next_page_token,
                user_type: pb::UserType::Teacher as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reused), ["page_token"]);
    let negative = identity
        .list_users(authed(
            &app.admin_key,
            pb::ListUsersRequest {
                page_size: -1,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&negative), ["page_size"]);
    let garbage = identity
        .list_users(authed(
            &app.admin_key,
            pb::ListUsersRequest {
                page_token: "abc".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&garbage), ["page_token"]);
}

async fn update_user_changes_only_the_masked_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (member_id, member) = app.user_with_role("erin", pb::Role::Member).await;
    let before = identity
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: member_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    let changed = identity
        .update_user(authed(
            &member,
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: member_id.clone(),
                    email: "erin@example.com".into(),
                    language: "fr".into(),
                    username: "ignored-not-in-mask".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["email", "language"]),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(changed.email, "erin@example.com");
    assert_eq!(changed.language, "fr");
    assert_eq!(changed.username, "erin");
    assert_eq!(changed.create_time, before.create_time);
    let (old, new) = (before.update_time.unwrap(), changed.update_time.unwrap());
    assert!(
        (new.seconds, new.nanos) > (old.seconds, old.nanos),
        "the database moves updated_at"
    );

    // Members may not change their own standing.
    let status = identity
        .update_user(authed(
            &member,
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: member_id.clone(),
                    reputation_score: Some(Decimal { value: "99".into() }),
                    ..Default::default()
                }),
                update_mask: mask(&["reputation_score"]),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let admin_change = identity
        .update_user(authed(
            &app.admin_key,
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: member_id.clone(),
                    reputation_score: Some(Decimal {
                        value: "12.3456".into(),
                    }),
                    email: String::new(),
                    ..Default::default()
                }),
                update_mask: mask(&["reputation_score", "email"]),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        admin_change.reputation_score.as_ref().unwrap().value,
        "12.3456"
    );
    assert_eq!(
        admin_change.email, "",
        "an empty value clears an optional field"
    );

    for (paths, score) in [
        (vec!["role"], "1"),
        (vec!["kyc_status"], "1"),
        (vec!["nonsense"], "1"),
        (vec![], "1"),
        (vec!["reputation_score"], "1.00001"),
        (vec!["reputation_score"], "1e3"),
    ] {
        let status = identity
            .update_user(authed(
                &app.admin_key,
                pb::UpdateUserRequest {
                    user: Some(pb::User {
                        id: member_id.clone(),
                        reputation_score: Some(Decimal {
                            value: score.into(),
                        }),
                        ..Default::default()
                    }),
                    update_mask: mask(&paths),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{paths:?} {score}");
    }
    let unchanged = identity
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest { user_id: member_id },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(unchanged, admin_change, "rejected updates wrote nothing");
}

async fn changing_a_role_revokes_keys_of_the_old_role_and_keeps_the_last_admin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (frank_id, frank) = app.user_with_role("frank", pb::Role::Member).await;
    let frank_service = identity
        .create_api_key(authed(
            &frank,
            pb::CreateApiKeyRequest {
                user_id: frank_id.clone(),
                role: pb::Role::Service as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;

    let demote_last = identity
        .set_user_role(authed(
            &app.admin_key,
            pb::SetUserRoleRequest {
                user_id: app.admin_id.clone(),
                role: pb::Role::Member as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(demote_last.code(), Code::FailedPrecondition);

    let promoted = identity
        .set_user_role(authed(
            &app.admin_key,
            pb::SetUserRoleRequest {
                user_id: frank_id.clone(),
                role: pb::Role::Admin as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(promoted.role, pb::Role::Admin as i32);
    let old_key = identity
        .get_user(authed(
            &frank,
            pb::GetUserRequest {
                user_id: frank_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        old_key.code(),
        Code::Unauthenticated,
        "the member key died with the member role"
    );
    identity
        .get_user(authed(
            &frank_service,
            pb::GetUserRequest {
                user_id: frank_id.clone(),
            },
        ))
        .await
        .expect("service keys survive a role change");

    // With two admins, one may be demoted.
    identity
        .set_user_role(authed(
            &app.admin_key,
            pb::SetUserRoleRequest {
                user_id: app.admin_id.clone(),
                role: pb::Role::Auditor as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let status = identity
        .set_user_role(authed(
            &app.admin_key,
            pb::SetUserRoleRequest {
                user_id: frank_id,
                role: pb::Role::Member as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "the demoted admin's key is revoked"
    );
    let unspecified = identity
        .set_user_role(authed(
            &frank_service,
            pb::SetUserRoleRequest {
                user_id: "x".into(),
                role: 0,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument);
}

async fn kyc_status_is_set_by_admins_and_auditors_with_a_reason_for_rejection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (grace_id, grace) = app.user_with_role("grace", pb::Role::Member).await;
    let (_, auditor) = app.user_with_role("auditor2", pb::Role::Auditor).await;
    let set = |key: &str, status: pb::KycStatus, reason: &str| {
        authed(
            key,
            pb::SetKycStatusRequest {
                user_id: grace_id.clone(),
                kyc_status: status as i32,
                reason: reason.into(),
                ..Default::default()
            },
        )
    };
    let no_reason = identity
        .set_kyc_status(set(&app.admin_key, pb::KycStatus::Rejected, " "))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let member = identity
        .set_kyc_status(set(&grace, pb::KycStatus::Verified, ""))
        .await
        .unwrap_err();
    assert_eq!(member.code(), Code::PermissionDenied);

    let rejected = identity
        .set_kyc_status(set(&auditor, pb::KycStatus::Rejected, "document expired"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(rejected.kyc_status, pb::KycStatus::Rejected as i32);
    assert_eq!(rejected.kyc_reason, "document expired");
    assert!(rejected.kyc_update_time.is_some());

    let verified = identity
        .set_kyc_status(set(&app.admin_key, pb::KycStatus::Verified, ""))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(verified.kyc_status, pb::KycStatus::Verified as i32);
    assert_eq!(verified.kyc_reason, "");

    let listed = identity
        .list_users(authed(
            &app.admin_key,
            pb::ListUsersRequest {
                kyc_status: pb::KycStatus::Verified as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(listed.len(), 1);
    let missing = identity
        .set_kyc_status(authed(
            &app.admin_key,
            pb::SetKycStatusRequest {
                user_id: uuid::Uuid::now_v7().to_string(),
                kyc_status: pb::KycStatus::Verified as i32,
                reason: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn wallets_are_created_listed_and_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (owner_id, owner) = app.user_with_role("heidi", pb::Role::Member).await;
    let wallet = identity
        .create_wallet(authed(
            &owner,
            pb::CreateWalletRequest {
                owner_id: owner_id.clone(),
                address: ADDRESS.to_uppercase().replace("0X", "0x"),
                label: "savings".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallet
        .unwrap();
    assert_eq!(wallet.address, ADDRESS);
    assert_eq!(wallet.owner_id, owner_id);
    for balance in [
        &wallet.balance,
        &wallet.pending_balance,
        &wallet.staked_balance,
    ] {
        assert_eq!(balance.as_ref().unwrap().value, "0.000000");
    }
    let second = identity
        .create_wallet(authed(
            &owner,
            pb::CreateWalletRequest {
                owner_id: owner_id.clone(),
                address: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallet
        .unwrap();
    let listed = identity
        .list_wallets(authed(&owner, pb::ListWalletsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .wallets;
    assert_eq!(
        listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        [wallet.id.clone(), second.id]
    );

    let duplicate = identity
        .create_wallet(authed(
            &app.admin_key,
            pb::CreateWalletRequest {
                owner_id: app.admin_id.clone(),
                address: ADDRESS.to_lowercase(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let unknown_owner = identity
        .create_wallet(authed(
            &app.admin_key,
            pb::CreateWalletRequest {
                owner_id: uuid::Uuid::now_v7().to_string(),
                address: "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB".into(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_owner.code(), Code::NotFound);
    let bad = identity
        .create_wallet(authed(
            &owner,
            pb::CreateWalletRequest {
                owner_id: owner_id.clone(),
                address: "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6Fb".into(),
                label: "x".repeat(65),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["address", "label"]);
    let for_other = identity
        .create_wallet(authed(
            &owner,
            pb::CreateWalletRequest {
                owner_id: app.admin_id.clone(),
                address: "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB".into(),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(for_other.code(), Code::PermissionDenied);
}

async fn api_keys_are_shown_once_listed_without_secrets_and_revocable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (ivan_id, ivan) = app.user_with_role("ivan", pb::Role::Member).await;
    let expiry = chrono::Utc::now() + chrono::Duration::days(30);
    let created = identity
        .create_api_key(authed(
            &ivan,
            pb::CreateApiKeyRequest {
                user_id: ivan_id.clone(),
                name: "laptop".into(),
                role: pb::Role::Member as i32,
                expire_time: Some(prost_types::Timestamp {
                    seconds: expiry.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    assert!(created.secret.starts_with(&key.prefix));
    assert_eq!(
        key.expire_time.as_ref().unwrap().seconds,
        expiry.timestamp()
    );

    let wrong_role = identity
        .create_api_key(authed(
            &ivan,
            pb::CreateApiKeyRequest {
                user_id: ivan_id.clone(),
                role: pb::Role::Admin as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&wrong_role), ["role"]);
    let past = identity
        .create_api_key(authed(
            &ivan,
            pb::CreateApiKeyRequest {
                user_id: ivan_id.clone(),
                role: pb::Role::Member as i32,
                expire_time: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&past), ["expire_time"]);

    let listed = identity
        .list_api_keys(authed(&ivan, pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|k| k.user_id == ivan_id && k.prefix.len() == 12)
    );
    let other_list = identity
        .list_api_keys(authed(
            &ivan,
            pb::ListApiKeysRequest {
                user_id: app.admin_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other_list.code(), Code::PermissionDenied);

    let revoked = identity
        .revoke_api_key(authed(
            &ivan,
            pb::RevokeApiKeyRequest {
                api_key_id: key.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    let again = identity
        .revoke_api_key(authed(
            &ivan,
            pb::RevokeApiKeyRequest {
                api_key_id: key.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(revoked.revoke_time.is_some());
    assert_eq!(
        again.revoke_time, revoked.revoke_time,
        "revoking twice keeps the first time"
    );
    let dead = identity
        .list_users(authed(&created.secret, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(dead.code(), Code::Unauthenticated);

    let admin_keys = identity
        .list_api_keys(authed(&app.admin_key, pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    let foreign = identity
        .revoke_api_key(authed(
            &ivan,
            pb::RevokeApiKeyRequest {
                api_key_id: admin_keys[0].id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let missing = identity
        .revoke_api_key(authed(
            &ivan,
            pb::RevokeApiKeyRequest {
                api_key_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::PermissionDenied,
        "members cannot probe for key ids"
    );
}

/// Another replica's revocation reaches this one only through the database:
/// the key cache may serve the key for at most its TTL (1 s by default).
async fn a_key_revoked_elsewhere_stops_working_within_the_cache_ttl(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut identity = app.identity().await;
    let (judy_id, judy) = app.user_with_role("judy", pb::Role::Member).await;
    let read = || {
        authed(
            &judy,
            pb::GetUserRequest {
                user_id: judy_id.clone(),
            },
        )
    };
    identity
        .get_user(read())
        .await
        .expect("the key works and is now cached");
    api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(chrono::Utc::now()))
        .filter(api_key::Column::KeyHash.eq(azora::auth::hash_secret(&judy)))
        .exec(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let status = identity.get_user(read()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
