//! ListTransactions filtered by metadata pairs, on both backends: only
//! transactions holding every pair (as JSON strings), combined with the
//! other filters, paged without gaps or duplicates; bad filters are named.

use std::collections::HashMap;

use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed, request_id, violated_fields};
use azora::proto::treasury as pb;
use prost_types::{Struct, Value, value::Kind};

on_both_backends!(
    a_metadata_filter_pages_through_every_match_once,
    a_bad_metadata_filter_is_named,
);

fn metadata(pairs: &[(&str, Kind)]) -> Option<Struct> {
    Some(Struct {
        fields: pairs
            .iter()
            .map(|(key, kind)| {
                (
                    (*key).to_owned(),
                    Value {
                        kind: Some(kind.clone()),
                    },
                )
            })
            .collect(),
    })
}

fn text(value: &str) -> Kind {
    Kind::StringValue(value.into())
}

fn filter(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

async fn a_metadata_filter_pages_through_every_match_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, alice, wallet) = app.member_with_wallet("alice").await;
    let (_, _, other) = app.member_with_wallet("bob").await;
    app.fund(&wallet, "100").await;
    let mut treasury = app.treasury().await;
    let mut expected = Vec::new();
    for i in 0..23 {
        // Every third is another order; every fifth carries the order id as
        // a number, which a string filter does not match.
        let order = if i % 3 == 0 { "B-2" } else { "A-1" };
        let order_value = if i % 5 == 0 {
            Kind::NumberValue(1.0)
        } else {
            text(order)
        };
        let transfer = treasury
            .transfer(authed(
                &alice,
                pb::TransferRequest {
                    request_id: request_id(),
                    from_wallet_id: wallet.clone(),
                    to_wallet_id: other.clone(),
                    amount: azr("1"),
                    reason: String::new(),
                    metadata: metadata(&[("order", order_value), ("channel", text("web"))]),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .transaction
            .unwrap();
        if order == "A-1" && i % 5 != 0 {
            expected.push(transfer.id);
        }
    }
    expected.reverse();
    let page_through = |pairs: HashMap<String, String>, r#type: pb::TransactionType| {
        let mut treasury = treasury.clone();
        let key = alice.clone();
        async move {
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = treasury
                    .list_transactions(authed(
                        &key,
                        pb::ListTransactionsRequest {
                            page_size: 4,
                            page_token: token.clone(),
                            r#type: r#type as i32,
                            metadata: pairs.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                seen.extend(page.transactions.into_iter().map(|t| t.id));
                if page.next_page_token.is_empty() {
                    return seen;
                }
                token = page.next_page_token;
            }
        }
    };
    let seen = page_through(
        filter(&[("order", "A-1"), ("channel", "web")]),
        pb::TransactionType::Unspecified,
    )
    .await;
    assert_eq!(seen, expected, "newest first, every match once, no gaps");
    let transfers = page_through(filter(&[("order", "A-1")]), pb::TransactionType::Transfer).await;
    assert_eq!(transfers, expected, "combined with the type filter");
    let deposits = page_through(filter(&[("order", "A-1")]), pb::TransactionType::Deposit).await;
    assert!(deposits.is_empty());
    let none = page_through(
        filter(&[("order", "A-1"), ("channel", "app")]),
        pb::TransactionType::Unspecified,
    )
    .await;
    assert!(none.is_empty(), "every pair must match");
    // A token is bound to its filter.
    let first = treasury
        .list_transactions(authed(
            &alice,
            pb::ListTransactionsRequest {
                page_size: 4,
                metadata: filter(&[("order", "A-1")]),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mismatched = treasury
        .list_transactions(authed(
            &alice,
            pb::ListTransactionsRequest {
                page_size: 4,
                page_token: first.next_page_token,
                metadata: filter(&[("order", "B-2")]),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&mismatched), ["page_token"]);
}

async fn a_bad_metadata_filter_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut treasury = app.treasury().await;
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    for pairs in [
        filter(&[("", "v")]),
        filter(&[("k\0", "v")]),
        filter(&[("k", "v\0")]),
        filter(&[(&"k".repeat(129), "v")]),
        filter(&[("k", &"v".repeat(513))]),
        eleven.into_iter().collect(),
    ] {
        let status = treasury
            .list_transactions(authed(
                &app.admin_key,
                pb::ListTransactionsRequest {
                    metadata: pairs.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        // A NUL is refused by the request decoder, which names the entry
        // (`metadata.k`); the rest by the filter's own checks.
        let fields = violated_fields(&status);
        assert!(
            fields.len() == 1 && fields[0].starts_with("metadata"),
            "{pairs:?}: {fields:?}"
        );
    }
}
