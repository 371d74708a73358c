//! The server as other clients see it: a Python client generated from
//! `proto/` with grpcio-tools, and grpcurl 1.8.6 through server reflection.
//!
//! The tools come from `tests/python/requirements.txt`. Without them the test
//! says so and passes on a developer machine, but fails under CI (`CI` set),
//! where `.ci/run` installs them.

use std::process::Command;

use crate::common::{Backend, TestApp};

fn available(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|output| output.status.success())
}

fn tools_present(what: &str, present: bool) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required under CI: pip install -r tests/python/requirements.txt"
        );
        eprintln!(
            "skipped: {what} is not installed (pip install -r tests/python/requirements.txt)"
        );
    }
    present
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .expect("run the tool");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_protos_creates_and_reads_a_user() {
    if !tools_present(
        "python grpcio-tools",
        available("python3", &["-c", "import grpc, grpc_tools"]),
    ) {
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite).await;
    let address = app.address.to_string();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/identity_client.py"
    );
    let output = tokio::task::spawn_blocking(move || {
        run("python3", &[script, &address, &app.admin_key, proto_dir])
    })
    .await
    .unwrap();
    assert!(output.contains("created and read back user"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_checks_health_and_calls_with_json() {
    if !tools_present("grpcurl", available("grpcurl", &["-version"])) {
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite).await;
    let address = app.address.to_string();
    let key = app.admin_key.clone();
    tokio::task::spawn_blocking(move || {
        let services = run("grpcurl", &["-plaintext", &address, "list"]);
        for service in ["azora.identity.v1.IdentityService", "grpc.health.v1.Health"] {
            assert!(services.contains(service), "{services}");
        }
        let description = run(
            "grpcurl",
            &[
                "-plaintext",
                &address,
                "describe",
                "azora.identity.v1.IdentityService",
            ],
        );
        assert!(description.contains("rpc CreateUser"), "{description}");
        let health = run(
            "grpcurl",
            &[
                "-plaintext",
                "-d",
                r#"{"service":"readiness"}"#,
                &address,
                "grpc.health.v1.Health/Check",
            ],
        );
        assert!(health.contains("SERVING"), "{health}");

        let authorization = format!("authorization: Bearer {key}");
        let created = run(
            "grpcurl",
            &[
                "-plaintext",
                "-H",
                &authorization,
                "-d",
                r#"{"username":"curl-user","user_type":"USER_TYPE_TEACHER","jurisdiction":"FR"}"#,
                &address,
                "azora.identity.v1.IdentityService/CreateUser",
            ],
        );
        let created: serde_json::Value = serde_json::from_str(&created).unwrap();
        let id = created["user"]["id"].as_str().unwrap().to_owned();
        let fetched = run(
            "grpcurl",
            &[
                "-plaintext",
                "-H",
                &authorization,
                "-d",
                &format!(r#"{{"user_id":"{id}"}}"#),
                &address,
                "azora.identity.v1.IdentityService/GetUser",
            ],
        );
        let fetched: serde_json::Value = serde_json::from_str(&fetched).unwrap();
        assert_eq!(fetched["user"]["username"], "curl-user");
        assert_eq!(fetched["user"]["userType"], "USER_TYPE_TEACHER");

        // The services added on top of the ledger are reflected as well.
        let listed = run("grpcurl", &["-plaintext", &address, "list"]);
        for service in [
            "azora.treasury.v1.FounderCompensationService",
            "azora.treasury.v1.KnowledgeRewardService",
            "azora.treasury.v1.BillingService",
        ] {
            assert!(listed.contains(service), "{service} missing from {listed}");
        }
        let subscribed = run(
            "grpcurl",
            &[
                "-plaintext",
                "-H",
                &authorization,
                "-d",
                &format!(
                    r#"{{"request_id":"curl-1","user_id":"{id}","tier":"SUBSCRIPTION_TIER_PRO","currency":"CURRENCY_USD"}}"#
                ),
                &address,
                "azora.treasury.v1.BillingService/CreateSubscription",
            ],
        );
        let subscribed: serde_json::Value = serde_json::from_str(&subscribed).unwrap();
        assert_eq!(subscribed["invoices"][0]["amount"]["value"], "29.990000");
        let summary = run(
            "grpcurl",
            &[
                "-plaintext",
                "-H",
                &authorization,
                "-d",
                r#"{"start_month":"2026-01"}"#,
                &address,
                "azora.treasury.v1.FounderCompensationService/GetFounderCompensationSummary",
            ],
        );
        let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(summary["totals"]["totalAzr"]["value"], "0.000000");

        // Error details decode through reflection too.
        let output = Command::new("grpcurl")
            .args([
                "-plaintext",
                "-H",
                &authorization,
                "-d",
                r#"{"user_id":"x"}"#,
                &address,
                "azora.identity.v1.IdentityService/GetUser",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            text.contains("InvalidArgument") && text.contains("user_id"),
            "{text}"
        );
        assert!(
            !text.contains("is not recognized"),
            "error details must be decodable: {text}"
        );
    })
    .await
    .unwrap();
}
