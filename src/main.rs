//! The `frontdesk` command line: a thin shell over the library.
//!
//! Start-up order: tracing → config → store → providers → bind → serve.
//! A bad config exits 64 (EX_USAGE-style "data error") with one line naming the key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    /// A whole simulated call through the real server code over loopback:
    /// each AUDIO is one caller turn.
    Call(frontdesk::loadtest::simcall::CallArgs),
    /// Speak text with the offline voice into an 8 kHz WAV (test callers, prompts).
    Say {
        /// Where to write the WAV.
        #[arg(long)]
        out: PathBuf,
        /// Speaking rate: above 1 is slower (0.5–2.0).
        #[arg(long, default_value_t = 1.0)]
        length_scale: f32,
        /// How much two sayings differ (the voice's noise; 0–1.5): 0 makes
        /// the same audio from the same text every run.
        #[arg(long, default_value_t = 1.0)]
        variation: f32,
        /// The words.
        text: String,
    },
    /// Transcribe WAV files with the offline speech recogniser, one line each.
    Transcribe {
        /// Decode as a barge-in peek does (the first few words, a short
        /// window): what the receptionist hears of a sound under its speech.
        #[arg(long)]
        peek: bool,
        /// WAV (any rate) or raw 8 kHz μ-law files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Time the offline speech stack: Whisper per utterance, Piper to first audio.
    SpeechBench {
        /// Decodes per utterance.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Threads per Whisper decode.
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// whisper.cpp flash attention (`[providers.stt] flash_attn`).
        #[arg(long)]
        flash_attn: bool,
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

/// Third-party crates that log raw payloads at debug or trace: tungstenite
/// prints every WebSocket message (a `start` carries the caller's number and
/// name), hyper and h2 headers and bodies, reqwest provider requests, rustls
/// handshakes, sqlx statements, axum rejection bodies. They reach us through
/// tracing or, via tracing-subscriber's `log` bridge, through `log`.
const PAYLOAD_LOGGERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "sqlx",
    "axum",
];

fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // whisper.cpp reports every model and buffer size at info.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,whisper_rs=warn"));
    // `PAYLOAD_LOGGERS` stay at `info` or quieter whatever RUST_LOG says. This
    // is a second filter that every event must also pass, not directives
    // appended to RUST_LOG's: a more specific user directive
    // (`tungstenite::protocol=trace`) would win over an appended
    // `tungstenite=info`. Its level hint is the lower of the two, so `log`
    // records stay switched off at the source when RUST_LOG is quieter.
    let caps = PAYLOAD_LOGGERS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |caps, target| caps.with_target(*target, LevelFilter::INFO),
    );
    // Logs go to stderr: stdout carries only machine-readable lines
    // ("listening on ADDR") for scripts and tests. Colour only on a terminal:
    // escape codes in a file or a log collector are noise.
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter.and(caps));
    tracing_subscriber::registry().with(stderr_layer).init();
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
    // Recordings past their retention are deleted hourly, off the runtime.
    let dir = app.config.recording.dir.clone();
    let keep = Duration::from_secs(u64::from(app.config.recording.retention_days) * 86_400);
    tokio::spawn(async move {
        loop {
            let dir = dir.clone();
            let swept = tokio::task::spawn_blocking(move || {
                frontdesk::call::recording::sweep(&dir, keep, std::time::SystemTime::now())
            })
            .await
            .unwrap_or(0);
            if swept > 0 {
                tracing::info!(swept, "old recordings deleted");
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
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
        Command::Call(args) => {
            init_tracing();
            let env = Env::from_process();
            let config = match load_config(args.config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = App::validate(&config, &env) {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let json = args.json;
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(frontdesk::loadtest::simcall::run(args, config, env)) {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(s) => println!("{s}"),
                            Err(e) => eprintln!("call: {e}"),
                        }
                    } else {
                        print!("{}", report.human());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("call: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Say {
            out,
            length_scale,
            variation,
            text,
        } => speech_tool(move |env| async move {
            let cfg = frontdesk::config::LocalTtsConfig {
                length_scale,
                variation,
                ..Default::default()
            };
            cfg.validate("").map_err(|e| e.to_string())?;
            let tts = frontdesk::providers::local::LocalTts::load(&cfg, &env, "say")
                .map_err(|e| e.message)?;
            let mut pcm = Vec::new();
            for s in frontdesk::providers::local::sentences(&text) {
                pcm.extend_from_slice(&tts.say(&s).await?);
            }
            std::fs::write(&out, frontdesk::audio::wav::encode_wav_8k(&pcm))
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            eprintln!(
                "{}: {:.2} s ({})",
                out.display(),
                pcm.len() as f64 / 8000.0,
                tts.voice_name()
            );
            Ok(())
        }),
        Command::SpeechBench {
            runs,
            threads,
            flash_attn,
        } => speech_tool(move |env| async move {
            let r =
                frontdesk::providers::local::bench::run(&env, runs, threads, flash_attn).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
            Ok(())
        }),
        Command::Transcribe { peek, files } => speech_tool(move |env| async move {
            let stt = frontdesk::providers::local::LocalStt::load(
                &Default::default(),
                &env,
                "transcribe",
            )
            .map_err(|e| e.message)?;
            for f in &files {
                let pcm = frontdesk::loadtest::simcall::load_turn(f).map_err(|e| e.to_string())?;
                let text = if peek {
                    stt.engine().peek(pcm).await?
                } else {
                    stt.engine().transcribe(pcm).await?
                };
                println!("{text}");
            }
            Ok(())
        }),
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

/// `say` and `transcribe`: run `f` on a runtime; errors exit 1 with one line.
fn speech_tool<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(Env) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    init_tracing();
    let env = Env::from_process();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(f(env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
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
