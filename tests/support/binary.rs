//! The real `frontdesk serve` binary on a loopback port, with its own temp
#![allow(dead_code)]
//! directory (config file, SQLite database), killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `frontdesk serve`.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:PORT` from its first stdout line.
    pub addr: String,
    /// Holds the config and the database (`t.db`).
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `frontdesk serve` with `config` as its config file, a fresh SQLite
/// database, `RUST_LOG=warn`, and `envs` added to its environment.
pub fn spawn(config: &str, envs: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frontdesk.toml");
    std::fs::write(&path, config).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env(
            "FRONTDESK_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("t.db").display()),
        )
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn frontdesk");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .expect("first line");
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr, dir }
}
