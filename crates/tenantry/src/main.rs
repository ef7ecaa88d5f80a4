//! The `tenantry` binary: `run` the proxy, or `check` a config file.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tenantry_proxy::{Otlp, Proxy};

#[derive(Parser)]
#[command(name = "tenantry", version, about = "A multi-tenant Redis proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve clients with the tenants and backends of a config file.
    Run {
        #[arg(long, short, env = "TENANTRY_CONFIG")]
        config: PathBuf,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value = "text", env = "TENANTRY_LOG_FORMAT")]
        log_format: LogFormat,
        /// How long to let clients finish on SIGTERM before closing them.
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        drain: Duration,
        /// Export sampled command spans over OTLP/HTTP to this URL
        /// (e.g. http://collector:4318/v1/traces). Off when not given.
        #[arg(long, env = "TENANTRY_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
        /// Fraction of commands traced when OTLP export is on.
        #[arg(long, default_value = "0.01", env = "TENANTRY_OTLP_SAMPLE_RATIO")]
        otlp_sample_ratio: f64,
    },
    /// Validate a config file: prints every error with file, line and field;
    /// exits with status 1 if there is any.
    Check { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 10s or 500ms")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Run { config, log_format, drain, otlp_endpoint, otlp_sample_ratio } => {
            let otlp = otlp_endpoint.map(|endpoint| Otlp { endpoint, sample_ratio: otlp_sample_ratio });
            let _tracing = match tenantry_proxy::init_tracing(matches!(log_format, LogFormat::Json), otlp) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("tenantry: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match run(config, drain) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `tenantry check`: the config's errors, its TLS files', and warnings
/// about tenants' backend users (read from their backends).
fn check(file: &std::path::Path) -> ExitCode {
    let config = match tenantry_config::load(file) {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Err(errors) = tenantry_proxy::tls::check(&config) {
        for e in errors {
            eprintln!("{}: {e}", file.display());
        }
        return ExitCode::FAILURE;
    }
    if config.tenants.values().any(|t| t.backend_auth.is_some()) {
        let warnings = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(tenantry_proxy::backend_users::check(&config)));
        match warnings {
            Ok(w) => w.iter().for_each(|w| eprintln!("{}: warning: {w}", file.display())),
            Err(e) => eprintln!("{}: warning: backend users not checked: {e}", file.display()),
        }
    }
    println!("{}: ok ({} tenants, {} backends)", file.display(), config.tenants.len(), config.backends.len());
    ExitCode::SUCCESS
}

/// One event loop thread: measured faster than a multi-threaded runtime for
/// this proxy (see the README's design notes).
#[tokio::main(flavor = "current_thread")]
async fn run(path: PathBuf, drain: Duration) -> anyhow::Result<()> {
    let proxy = Proxy::start_file(&path).await?;
    tracing::info!(config = %path.display(), version = %proxy.config_version(), "tenantry started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A drain asked for by POST /drain (a preStop hook's) goes on through
    // the SIGTERM that follows it; a second SIGTERM exits at once.
    let terms_to_exit = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: draining"); 1 }
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: draining"); 1 }
        _ = proxy.drain_requested() => { tracing::info!("POST /drain: draining"); 2 }
    };
    let terms = async {
        for _ in 0..terms_to_exit {
            term.recv().await;
        }
    };
    tokio::select! {
        _ = proxy.shutdown(drain) => {}
        _ = terms => tracing::warn!("second SIGTERM: exiting now"),
    }
    Ok(())
}
