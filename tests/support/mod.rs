//! An in-process server on port 0 for the HTTP-level tests.
#![allow(dead_code)]

use std::sync::Arc;

use frontdesk::clock::SystemClock;
use frontdesk::config::Config;
use frontdesk::config::Env;
use frontdesk::http::{self, AppState};

/// Serve `config` on 127.0.0.1:0; returns the address, a shutdown trigger and the server task.
pub async fn start(
    config: Config,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = frontdesk::app::App::build(config, &Env::default(), Arc::new(SystemClock))
        .await
        .unwrap();
    let state = AppState::new(&app);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        http::serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, task)
}

/// No greeting, an in-memory database.
pub fn quiet_config() -> Config {
    let mut c =
        Config::from_toml("[call]\ngreeting = \"\"\n[brain]\nkind = \"scripted\"\n").unwrap();
    c.storage.url = Some("sqlite::memory:".into());
    c
}
