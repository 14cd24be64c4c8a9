//! The `frontdesk` command line: a thin shell over the library.
//!
//! Start-up order: tracing → config → store → providers → bind → serve.
//! A bad config exits 64 (EX_USAGE-style "data error") with one line naming the key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use frontdesk::app::{App, AppError};
use frontdesk::clock::SystemClock;
use frontdesk::config::{Config, Env};

#[derive(Parser)]
#[command(
    name = "frontdesk",
    version,
    about = "AI voice receptionist media server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no config: the built-in demo business, scripted providers).
    Serve {
        /// Config file (also `FRONTDESK_CONFIG`).
        #[arg(long, env = "FRONTDESK_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding `[server] listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Carrier-style load test against a running server.
    Loadtest(frontdesk::loadtest::LoadtestArgs),
    /// Create or update the database schema.
    Migrate {
        /// Config file (also `FRONTDESK_CONFIG`).
        #[arg(long, env = "FRONTDESK_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file; exit 64 with one line naming the bad key.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

const EXIT_CONFIG: u8 = 64;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries only machine-readable lines
    // ("listening on ADDR") for scripts and tests.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(p) => Config::load(p).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }),
        None => Ok(Config::default()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

async fn serve(config: Config, env: Env, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let app = match App::build(config, &env, Arc::new(SystemClock)).await {
        Ok(a) => a,
        Err(AppError::Config(e)) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listen.unwrap_or(app.config.server.listen);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    tracing::info!(addr = %local, providers = ?app.providers, "frontdesk listening");
    // A machine-readable line for scripts and tests that bind port 0.
    println!("listening on {local}");
    let state = frontdesk::http::AppState::new(&app);
    // The notify outbox worker (Slack cards, digest, escalation, post-call
    // webhook) runs beside the server and stops after it.
    let stop_worker = tokio_util::sync::CancellationToken::new();
    let worker = app.services.notify.clone().map(|n| {
        let w = frontdesk::notify::worker::Worker::new(n);
        tokio::spawn(w.run(std::time::Duration::from_secs(1), stop_worker.clone()))
    });
    let served = frontdesk::http::serve(listener, state, shutdown_signal()).await;
    stop_worker.cancel();
    if let Some(w) = worker {
        let _ = w.await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => {
            let env = Env::from_process();
            // Exactly the checks `serve` makes before it connects anything.
            match Config::load(&file).and_then(|cfg| App::validate(&cfg, &env)) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Serve { config, listen } => {
            init_tracing();
            let env = Env::from_process();
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Validate before the runtime, the store or the port.
            if let Err(e) = App::validate(&config, &env) {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            match runtime() {
                Ok(rt) => rt.block_on(serve(config, env, listen)),
                Err(code) => code,
            }
        }
        Command::Migrate { config } => migrate(config),
        Command::Loadtest(args) => {
            let json = args.json;
            let run = tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(frontdesk::loadtest::run(args))
                        .map_err(|e| e.to_string())
                });
            match run {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(s) => println!("{s}"),
                            Err(e) => eprintln!("loadtest: {e}"),
                        }
                    } else {
                        print!("{}", report.human());
                    }
                    if report.passed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("loadtest: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `frontdesk migrate`: apply pending migrations to the configured database.
fn migrate(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load_config(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let env = Env::from_process();
    let url = match cfg.database_url(&env) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let run = async { frontdesk::store::migrate(&url, &cfg.storage).await };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run).map_err(anyhow::Error::from));
    match result {
        Ok(r) => {
            for (version, description) in &r.applied {
                println!("applied {version} {description}");
            }
            println!(
                "{} ({:?}): {} applied, {} already present",
                r.url,
                r.backend,
                r.applied.len(),
                r.already
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrate failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
