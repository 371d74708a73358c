//! The `azora` binary itself: it serves on the embedded SQLite default and
//! exits 0 on SIGTERM after draining.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[cfg(unix)]
#[tokio::test]
async fn the_binary_serves_and_exits_zero_on_sigterm() {
    let directory =
        std::env::temp_dir().join(format!("azora_binary_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_azora"))
        .arg("serve")
        .current_dir(&directory)
        .env_remove("AZORA_DATABASE_URL")
        .env("AZORA_LISTEN_ADDR", "127.0.0.1:0")
        .env("AZORA_SHUTDOWN_GRACE_MS", "5000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start azora");
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let serving = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("serving") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the server starts within 30 s");
    assert!(serving, "the server logged that it is serving");
    assert!(
        directory.join("azora.db").exists(),
        "the default database is an SQLite file in the working directory"
    );

    let pid = server.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the drain is bounded")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&directory);
}
