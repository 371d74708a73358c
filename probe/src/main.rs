//! The `azora-probe` binary; see the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match azora_probe::Probe::parse().check().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("azora-probe: {reason}");
            ExitCode::FAILURE
        }
    }
}
