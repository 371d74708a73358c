use std::process::ExitCode;

use azora::config::{LogFormat, Settings};
use azora::telemetry::Exporter;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    let cli = azora::cli::Cli::parse();
    let exporter = match init_logging(&cli.settings) {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = azora::cli::run(cli).await;
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, as text on a terminal and JSON lines otherwise
/// (`AZORA_LOG_FORMAT` decides when set): one object per line, with the
/// event's fields at the top level, for a log shipper to index. With
/// `AZORA_OTLP_ENDPOINT` the trace spans go to the collector as well; they
/// never reach the log.
fn init_logging(settings: &Settings) -> anyhow::Result<Option<Exporter>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{}=off", azora::telemetry::TARGET).parse()?);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = if json {
        log.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        log.with_ansi(terminal).with_filter(filter).boxed()
    };
    let exporter = settings
        .otlp_endpoint
        .as_deref()
        .map(Exporter::otlp)
        .transpose()?;
    tracing_subscriber::registry()
        .with(log)
        .with(exporter.as_ref().map(|exporter| exporter.layer()))
        .init();
    Ok(exporter)
}
