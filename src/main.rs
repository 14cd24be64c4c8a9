//! The `frontdesk` command line: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match frontdesk::config::Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(64)
            }
        },
        Command::Migrate { config } => migrate(config),
        _ => {
            eprintln!("not yet implemented");
            ExitCode::FAILURE
        }
    }
}

/// `frontdesk migrate`: apply pending migrations to the configured database.
fn migrate(config: Option<PathBuf>) -> ExitCode {
    let cfg = match config {
        Some(path) => match frontdesk::config::Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(64);
            }
        },
        None => frontdesk::config::Config::default(),
    };
    let url = cfg.storage.url_from_env();
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
