//! The Prometheus endpoint, scraped as Prometheus would: over HTTP with a
//! real client (curl), the text checked by `promtool check metrics`, and
//! the figures compared with what the test itself did.

use std::process::{Command, Stdio};

use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed};
use azora::config::Secret;
use azora::proto::compliance as cpb;
use azora::proto::treasury as tpb;
use azora_testkit::RedisServer;
use tonic::Code;

/// One scrape of `app`'s metrics, by curl.
async fn scrape(app: &TestApp) -> String {
    let url = format!(
        "http://{}/metrics",
        app.metrics_address.expect("metrics on")
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--include", &url])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response = String::from_utf8(output.stdout).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `name` whose labels include every one of
/// `labels`; None when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(label, value)| series_labels.contains(&format!("{label}=\"{value}\"")))
        })
        .map(|(_, value)| value.parse().unwrap())
}

fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required under CI (Debian package prometheus)"
        );
        eprintln!("skipped promtool: not installed (apt-get install prometheus)");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const TREASURY: &str = "azora.treasury.v1.TreasuryService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_count_what_the_calls_did_and_pass_promtool() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, move |settings| {
        settings.transport.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        settings.redis_url = Some(Secret::new(redis_url));
        settings.rate_limit = "admin=0,treasurer=1000,auditor=1000,member=3,service=1000".into();
    })
    .await;
    let (_, member_key, from) = app.member_with_wallet("payer").await;
    let (_, _, to) = app.member_with_wallet("payee").await;
    app.fund(&from, "10").await;
    let before = scrape(&app).await;
    let counted = |text: &str, method: &str, code: Code| {
        let code = (code as i32).to_string();
        sample(
            text,
            "rpc_server_duration_seconds_count",
            &[
                ("rpc_system", "grpc"),
                ("rpc_service", TREASURY),
                ("rpc_method", method),
                ("rpc_grpc_status_code", &code),
            ],
        )
        .unwrap_or(0.0)
    };

    let mut treasury = app.treasury().await;
    treasury
        .transfer(authed(
            &member_key,
            tpb::TransferRequest {
                request_id: "metrics-1".into(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("1"),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // Three calls a second for a member: some of ten at once are refused.
    let mut refused = 0;
    for _ in 0..10 {
        let balance = treasury
            .get_balance(authed(
                &member_key,
                tpb::GetBalanceRequest {
                    wallet_id: from.clone(),
                    ..Default::default()
                },
            ))
            .await;
        if let Err(status) = balance {
            assert_eq!(status.code(), Code::ResourceExhausted);
            refused += 1;
        }
    }
    assert!(refused > 0);
    // The admin is not limited: a miss, then a hit.
    for _ in 0..2 {
        app.balance(&to).await;
    }
    // A path that is no RPC of this server.
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let unknown = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/attacker.v1.Random/x9f3k2"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    // Refused before routing: no key.
    assert_eq!(unknown.code(), Code::Unauthenticated);
    // An open stream is a call in progress.
    let alerts = crate::common::compliance(&app)
        .await
        .watch_alerts(authed(&app.admin_key, cpb::WatchAlertsRequest::default()))
        .await
        .unwrap()
        .into_inner();

    let after = scrape(&app).await;
    promtool_accepts(&after);
    assert_eq!(
        counted(&after, "Transfer", Code::Ok) - counted(&before, "Transfer", Code::Ok),
        1.0
    );
    let limited = counted(&after, "GetBalance", Code::ResourceExhausted)
        - counted(&before, "GetBalance", Code::ResourceExhausted);
    assert_eq!(limited, f64::from(refused));
    let refusals = |text: &str| {
        sample(
            text,
            "azora_refused_calls_total",
            &[("reason", "rate_limited")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refusals(&after) - refusals(&before), f64::from(refused));
    assert!(!after.contains("attacker") && !after.contains("x9f3k2"));
    assert!(
        sample(
            &after,
            "rpc_server_duration_seconds_count",
            &[("rpc_service", "unknown"), ("rpc_grpc_status_code", "16")],
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &after,
            "rpc_server_active_requests",
            &[("rpc_method", "WatchAlerts")]
        ),
        Some(1.0)
    );
    let hits = sample(&after, "azora_cache_lookups_total", &[("result", "hit")]).unwrap();
    assert!(hits >= 1.0, "{hits}");
    assert!(sample(&after, "azora_ledger_batch_commands_count", &[]).unwrap() >= 2.0);
    assert!(sample(&after, "azora_ledger_batch_duration_seconds_sum", &[]).unwrap() > 0.0);
    assert_eq!(
        sample(&after, "azora_db_pool_connections", &[("state", "max")]),
        Some(16.0)
    );
    assert_eq!(
        sample(&after, "azora_health_serving", &[("entry", "readiness")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "azora_health_serving", &[("entry", "redis")]),
        Some(1.0)
    );
    assert!(sample(&after, "azora_audit_unchained_events", &[]).is_some());
    assert!(sample(&after, "azora_audit_chain_lag_seconds", &[]).unwrap() >= 0.0);
    assert_eq!(
        sample(
            &after,
            "azora_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // The stream closed: no longer in progress.
    drop(alerts);
    let mut closed = false;
    for _ in 0..50 {
        let text = scrape(&app).await;
        if sample(
            &text,
            "rpc_server_active_requests",
            &[("rpc_method", "WatchAlerts")],
        ) == Some(0.0)
        {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "a closed stream still counts as in progress");
}
