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
        _ => {
            eprintln!("not yet implemented");
            ExitCode::FAILURE
        }
    }
}
