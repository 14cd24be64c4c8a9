//! A scripted reply server for manual runs of `frontdesk loadtest` (to
//! measure the generator itself): replies 450 ms after each utterance with a
//! 2 s reply (10 frames at once, then one frame per 20 ms, then a mark) and
//! clears on 200 ms of barge-in speech. Runs until killed:
//!
//! ```text
//! LOADTEST_SERVER_ADDR=127.0.0.1:9099 cargo run --release --example reply_server
//! ```

#[path = "../tests/support/script_server.rs"]
mod script_server;

use script_server::{ms, server_on, Out, Script};

#[tokio::main]
async fn main() {
    let addr = std::env::var("LOADTEST_SERVER_ADDR").unwrap_or_else(|_| "127.0.0.1:9099".into());
    let mut script: Script = vec![(ms(450), Out::Media(1))];
    script.extend((0..9).map(|_| (ms(0), Out::Media(1))));
    script.extend((0..90).map(|_| (ms(20), Out::Media(1))));
    script.push((ms(0), Out::Mark("end")));
    let (url, _problems) = server_on(&addr, script, true).await;
    println!("serving {url} as pid {}", std::process::id());
    std::future::pending::<()>().await;
}
