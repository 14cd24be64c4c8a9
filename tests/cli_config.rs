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

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Run `frontdesk ARGS` in a cleared environment (PATH, HOME and `env` only),
/// in a scratch directory, killing it after `limit`. Returns (exit code, stderr,
/// how long it ran); a process that had to be killed is code -1.
fn run_isolated(
    args: &[&str],
    env: &[(&str, &str)],
    dir: &std::path::Path,
    limit: std::time::Duration,
) -> (i32, String, std::time::Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (code, err, started.elapsed())
}

/// (what is wrong, config file, extra environment, the key or variable named).
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);

const CALCOM_OWNER: &str = "[calendar]\nprovider = \"calcom\"\n\
    [[calendar.owners]]\nid = \"alex\"\ncalcom_event_type_id = 7\n\
    [calendar.owners.hours]\nmon = [\"09:00-17:00\"]\n";

/// Acceptance: whatever `check-config F` refuses, `serve --config F` refuses
/// the same way — exit 64, one line naming the same key or variable — and
/// before it opens the database (each case also points
/// FRONTDESK_DATABASE_URL, where the case does not set it itself, at a
/// PostgreSQL port nobody listens on, which would take seconds or fail with
/// another code if serve tried it).
#[test]
fn check_config_and_serve_refuse_the_same_configs_naming_the_same_key() {
    let pg_closed = format!(
        "postgres://fd:hunter2@127.0.0.1:{}/frontdesk",
        closed_port()
    );
    let cases: Vec<Case> = vec![
        (
            "the offline speech model is not installed",
            String::new(),
            vec![("FRONTDESK_MODELS_DIR", "/nonexistent/frontdesk-models")],
            "scripts/fetch-models",
        ),
        (
            "unknown region",
            "[business]\ndefault_region = \"XX\"\n".into(),
            vec![],
            "business.default_region",
        ),
        (
            "calcom without its key",
            CALCOM_OWNER.into(),
            vec![],
            "CALCOM_API_KEY",
        ),
        (
            "calcom owner without an event type",
            "[calendar]\nprovider = \"calcom\"\n".into(),
            vec![("CALCOM_API_KEY", "cal_live_x")],
            "calendar.owners[0].calcom_event_type_id",
        ),
        (
            "hubspot without its token",
            "[crm]\nprovider = \"hubspot\"\n".into(),
            vec![],
            "HUBSPOT_TOKEN",
        ),
        (
            "hubspot token blank",
            "[crm]\nprovider = \"hubspot\"\n".into(),
            vec![("HUBSPOT_TOKEN", "  ")],
            "HUBSPOT_TOKEN",
        ),
        (
            "max_calls beyond the semaphore",
            "[server]\nmax_calls = 9223372036854775807\n".into(),
            vec![],
            "server.max_calls",
        ),
        (
            "media timeout 0",
            "[call]\nmedia_timeout_ms = 0\n".into(),
            vec![],
            "call.media_timeout_ms",
        ),
        (
            "reply timeout 0",
            "[call]\nreply_timeout_ms = 0\n".into(),
            vec![],
            "call.reply_timeout_ms",
        ),
        (
            "transcript timeout 0",
            "[call]\ntranscript_timeout_ms = 0\n".into(),
            vec![],
            "call.transcript_timeout_ms",
        ),
        (
            "drain grace beyond TOML integers",
            "[server]\ndrain_grace_s = 18446744073709551615\n".into(),
            vec![],
            "server.drain_grace_s",
        ),
        (
            "a stream start wait of zero",
            "[server]\nstart_timeout_ms = 0\n".into(),
            vec![],
            "server.start_timeout_ms",
        ),
        (
            "a language that is not a tag",
            "[call]\nlanguage = \"en GB\"\n".into(),
            vec![],
            "call.language",
        ),
        (
            "drain grace of centuries",
            "[server]\ndrain_grace_s = 9223372036854775807\n".into(),
            vec![],
            "server.drain_grace_s",
        ),
        (
            "public url not a url",
            "[server]\npublic_url = \"not a url\"\n".into(),
            vec![],
            "server.public_url",
        ),
        (
            "empty database url",
            String::new(),
            vec![("FRONTDESK_DATABASE_URL", "")],
            "FRONTDESK_DATABASE_URL",
        ),
        (
            "sqlite url without a path",
            String::new(),
            vec![("FRONTDESK_DATABASE_URL", "sqlite://")],
            "FRONTDESK_DATABASE_URL",
        ),
        (
            "postgres url with a bad port",
            String::new(),
            vec![("FRONTDESK_DATABASE_URL", "postgres://fd:hunter2@db:port/x")],
            "FRONTDESK_DATABASE_URL",
        ),
        (
            "bad storage.url",
            "[storage]\nurl = \"mysql://db/x\"\n".into(),
            vec![],
            "storage.url",
        ),
        (
            "provider section with a wrong type",
            "[providers.stt]\nkind = \"scripted\"\nfinal_after_ms = \"soon\"\n".into(),
            vec![],
            "providers.stt.final_after_ms",
        ),
        (
            "provider section without kind",
            "[providers.llm]\nreply = \"hi\"\n".into(),
            vec![],
            "providers.llm",
        ),
        (
            "provider section of an unknown kind",
            "[providers.tts]\nkind = \"shouty\"\n".into(),
            vec![],
            "providers.tts",
        ),
        (
            "the offline voice's variation out of range",
            "[providers.tts]\nkind = \"local\"\nvariation = 2.0\n".into(),
            vec![],
            "providers.tts.variation",
        ),
        (
            "deepgram without its key",
            "[providers.stt]\nkind = \"deepgram\"\n".into(),
            vec![],
            "DEEPGRAM_API_KEY",
        ),
        (
            "deepgram key blank, in a chain",
            "[providers.stt]\nchain = [\"deepgram\", \"scripted\"]\n".into(),
            vec![("DEEPGRAM_API_KEY", " ")],
            "DEEPGRAM_API_KEY",
        ),
        (
            "openai without its key",
            "[providers.llm]\nkind = \"openai\"\n".into(),
            vec![],
            "OPENAI_API_KEY",
        ),
        (
            "elevenlabs without its key",
            "[providers.tts]\nkind = \"elevenlabs\"\n".into(),
            vec![],
            "ELEVENLABS_API_KEY",
        ),
        (
            "cartesia without its key",
            "[providers.tts]\nchain = [\"cartesia\", \"scripted\"]\n\
             [providers.tts.cartesia]\nvoice_id = \"a0e99841-438c-4a64-b679-ae501e7d6091\"\n"
                .into(),
            vec![],
            "CARTESIA_API_KEY",
        ),
        (
            "deepgram aura without its key",
            "[providers.tts]\nkind = \"deepgram_aura\"\n".into(),
            vec![],
            "DEEPGRAM_API_KEY",
        ),
        (
            "a chain naming a provider twice",
            "[providers.llm]\nchain = [\"scripted\", \"scripted\"]\n".into(),
            vec![],
            "providers.llm.chain",
        ),
        (
            "a bad key with PostgreSQL on a closed port",
            "[vad]\nstart_ms = 0\n".into(),
            vec![],
            "vad.start_ms",
        ),
    ];
    assert!(cases.len() >= 12);
    let limit = std::time::Duration::from_secs(20);
    for (name, config, env, key) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontdesk.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_str().unwrap();
        let mut env = env.clone();
        if !env.iter().any(|(k, _)| *k == "FRONTDESK_DATABASE_URL") {
            env.push(("FRONTDESK_DATABASE_URL", &pg_closed));
        }
        for args in [
            vec!["check-config", path],
            vec!["serve", "--config", path, "--listen", "127.0.0.1:0"],
        ] {
            let (code, err, took) = run_isolated(&args, &env, dir.path(), limit);
            assert_eq!(code, 64, "{name}: {args:?}: {err}");
            assert!(
                err.contains(key),
                "{name}: {args:?}: {err:?} should name {key}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err:?}");
            assert!(!err.contains("hunter2"), "{name}: password shown: {err}");
            assert!(
                took < std::time::Duration::from_secs(5),
                "{name}: {args:?} took {took:?}: it must not touch the database"
            );
        }
        // Nothing was created in the working directory (no sqlite file).
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n != "frontdesk.toml")
            .collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
    }
}
