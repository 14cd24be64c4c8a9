//! Two `frontdesk serve` processes on one PostgreSQL: 50 concurrent holds of
//! one slot, split between them, give exactly one hold. The guarantee lives
//! in the database, not in either process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

const TOKEN: &str = "two-process-test-token";

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(db_url: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("FRONTDESK_DATABASE_URL", db_url)
        .env("FRONTDESK_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn frontdesk");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Proc {
        child,
        base: format!("http://{addr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_holds_across_two_processes_give_one() {
    let db = common::TestDb::postgres().await;
    let a = spawn(&db.url);
    let b = spawn(&db.url);
    let http = reqwest::Client::new();

    // A real free slot, as the first process sees it now.
    let slots: Value = http
        .get(format!("{}/api/slots?owner=alex&days=14", a.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("slots")
        .json()
        .await
        .expect("json");
    let start = slots["slots"][0]["start"]
        .as_str()
        .expect("a free slot")
        .to_string();

    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let http = http.clone();
        let body = json!({"owner": "alex", "start": start});
        tasks.push(tokio::spawn(async move {
            http.post(format!("{base}/api/holds"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("task"));
    }
    let created = codes.iter().filter(|&&c| c == 201).count();
    let conflict = codes.iter().filter(|&&c| c == 409).count();
    assert_eq!((created, conflict), (1, 49), "{codes:?}");

    // The slot is no longer offered by either process.
    for p in [&a, &b] {
        let slots: Value = http
            .get(format!("{}/api/slots?owner=alex&days=14", p.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("slots")
            .json()
            .await
            .expect("json");
        let offered = slots["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .any(|s| s["start"] == start.as_str());
        assert!(!offered, "{} still offers the held slot", p.base);
    }
}
