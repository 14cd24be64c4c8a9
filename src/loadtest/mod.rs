//! Carrier-style load generator: N concurrent Twilio media streams in real
//! time against a server, with carrier playout emulation. (Placeholder.)

/// `frontdesk loadtest` arguments.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Media WebSocket URL, e.g. `ws://127.0.0.1:8080/media/twilio`.
    #[arg(long)]
    pub url: String,
}
