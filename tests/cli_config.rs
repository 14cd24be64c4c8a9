//! `frontdesk check-config` and `frontdesk serve` reject bad config with exit
//! 64 and one line naming the key.

use std::process::Command;

fn run(args: &[&str], config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(args)
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_keys_and_values_exit_64_naming_the_key() {
    for (config, key) in [
        ("[vad]\nstart_ms = 0\n", "vad.start_ms"),
        ("[vad]\nstrat_ms = 200\n", "strat_ms"),
        (
            "[providers.llm]\nkind = \"scripted\"\nreply = 5\n",
            "providers.llm.reply",
        ),
        (
            "[providers.tts]\nkind = \"scripted\"\naudio = \"/nonexistent.wav\"\n",
            "providers.tts.audio",
        ),
        ("[call]\nchunk_ms = 30\n", "call.chunk_ms"),
    ] {
        for args in [
            &["check-config"][..],
            &["serve", "--listen", "127.0.0.1:0", "--config"][..],
        ] {
            let (code, err) = run(args, config);
            assert_eq!(code, 64, "{args:?} {config:?}: {err}");
            assert!(err.contains(key), "{args:?}: {err:?} should name {key}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
        }
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/frontdesk.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["check-config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_prints_only_the_address_on_stdout_and_logs_on_stderr() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("FRONTDESK_DATABASE_URL", "sqlite::memory:")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("listening on 127.0.0.1:"),
        "first stdout line: {line:?}"
    );
}
