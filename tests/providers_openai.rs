//! The OpenAI-compatible chat client against a mock server speaking Chat
//! Completions SSE: text deltas, tool calls in fragments (OpenAI, Ollama
//! and proxy shapes), the usage chunk, errors by class, cancel, and the
//! fail-over chain on a refused key or a stall.

#[path = "support/mock_llm.rs"]
mod mock_llm;

use std::sync::Arc;
use std::time::Duration;

use frontdesk::config::{Config, Env};
use frontdesk::metrics::Metrics;
use frontdesk::providers::{
    ChatMessage, FinishReason, LlmEvent, LlmRequest, ProviderError, Providers, Role, ToolCall,
    ToolSpec,
};
use mock_llm::{event, text_chunk, Answer};
use serde_json::json;
use tokio::sync::mpsc;

const KEY: &str = "sk-test-secret";

fn providers(toml: &str, key: Option<&str>, metrics: Arc<Metrics>) -> Providers {
    let cfg = Config::from_toml(toml).unwrap();
    let env = match key {
        Some(k) => Env::from_pairs([("OPENAI_API_KEY", k)]),
        None => Env::default(),
    };
    Providers::from_config(&cfg, &env, metrics).unwrap()
}

fn single(base: &str) -> String {
    format!("[providers.llm]\nkind = \"openai\"\nbase_url = \"{base}\"\nmodel = \"gpt-4o-mini\"\n")
}

fn request() -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::text(Role::System, "You are a receptionist"),
            ChatMessage::text(Role::User, "Book Tuesday?"),
        ],
        tools: vec![ToolSpec {
            name: "get_slots".into(),
            description: "List free slots".into(),
            parameters: json!({"type": "object", "properties": {"date": {"type": "string"}}}),
        }],
        max_tokens: Some(300),
    }
}

async fn all(
    mut rx: mpsc::Receiver<Result<LlmEvent, ProviderError>>,
) -> Vec<Result<LlmEvent, ProviderError>> {
    let mut out = vec![];
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the stream moves within 10 s")
    {
        out.push(ev);
    }
    out
}

fn text_of(evs: &[Result<LlmEvent, ProviderError>]) -> String {
    evs.iter()
        .filter_map(|e| match e {
            Ok(LlmEvent::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn text_streams_with_the_usage_chunk_unknown_fields_and_comments_tolerated() {
    let mut mock = mock_llm::start(|_| {
        let role = event(json!({"id":"c","object":"chat.completion.chunk",
            "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}));
        let sure = text_chunk("Sure, ");
        // One event cut in the middle, across two writes.
        let (a, b) = sure.split_at(17);
        Answer::Sse {
            pieces: vec![
                ": keep-alive comment\n\n".into(),
                role,
                a.into(),
                b.into(),
                format!("event: message\n{}", text_chunk("Tuesday works.")),
                event(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],
                             "timings": {"predicted_ms": 12}, "reasoning_content": null})),
                event(json!({"id":"c","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25,
                             "prompt_tokens_details":{"cached_tokens":0}}})),
                "data: [DONE]\n\n".into(),
            ],
            hold: false,
        }
    })
    .await;
    let p = providers(
        &single(&mock.base_url),
        Some(KEY),
        Arc::new(Metrics::default()),
    );
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(text_of(&evs), "Sure, Tuesday works.");
    assert_eq!(evs.last(), Some(&Ok(LlmEvent::Done(FinishReason::Stop))));
    assert!(evs.iter().all(|e| e.is_ok()), "{evs:?}");
    let seen = mock.requests.recv().await.unwrap();
    assert_eq!(seen.auth.as_deref(), Some("Bearer sk-test-secret"));
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.body["messages"][1]["content"], "Book Tuesday?");
    assert_eq!(seen.body["tools"][0]["function"]["name"], "get_slots");
    assert_eq!(
        seen.body["max_tokens"], 300,
        "a compatible server gets max_tokens"
    );
}

#[tokio::test]
async fn tool_calls_in_fragments_are_assembled_by_index() {
    let mock = mock_llm::start(|n| {
        let frag = |v: serde_json::Value| {
            event(json!({"choices":[{"index":0,"delta":{"tool_calls":[v]},"finish_reason":null}]}))
        };
        let pieces = if n == 0 {
            // OpenAI: two parallel calls, interleaved, arguments in pieces.
            vec![
                frag(json!({"index":0,"id":"call_a","type":"function","function":{"name":"get_slots","arguments":""}})),
                frag(json!({"index":1,"id":"call_b","type":"function","function":{"name":"lookup","arguments":"{\"pho"}})),
                frag(json!({"index":0,"function":{"arguments":"{\"date\":"}})),
                frag(json!({"index":1,"function":{"arguments":"ne\":\"+1\"}"}})),
                frag(json!({"index":0,"function":{"arguments":"\"2026-12-01\"}"}})),
                event(json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})),
                "data: [DONE]\n\n".into(),
            ]
        } else {
            // Ollama: a whole call in one chunk, no index, finish "stop".
            vec![
                event(json!({"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[
                    {"id":"call_x","function":{"name":"get_slots","arguments":"{\"date\":\"tue\"}"}}]}}]})),
                event(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})),
                "data: [DONE]\n\n".into(),
            ]
        };
        Answer::Sse { pieces, hold: false }
    })
    .await;
    let p = providers(
        &single(&mock.base_url),
        Some(KEY),
        Arc::new(Metrics::default()),
    );
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(
        evs,
        [
            Ok(LlmEvent::ToolCall(ToolCall {
                id: "call_a".into(),
                name: "get_slots".into(),
                arguments: "{\"date\":\"2026-12-01\"}".into()
            })),
            Ok(LlmEvent::ToolCall(ToolCall {
                id: "call_b".into(),
                name: "lookup".into(),
                arguments: "{\"phone\":\"+1\"}".into()
            })),
            Ok(LlmEvent::Done(FinishReason::ToolCalls)),
        ]
    );
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(
        evs,
        [
            Ok(LlmEvent::ToolCall(ToolCall {
                id: "call_x".into(),
                name: "get_slots".into(),
                arguments: "{\"date\":\"tue\"}".into()
            })),
            Ok(LlmEvent::Done(FinishReason::ToolCalls)),
        ],
        "decided by the calls, not by finish_reason"
    );
}

/// A malformed tool argument is handed over as it came (the conversation
/// checks arguments and answers the model, which can retry); a malformed
/// message is a clear error.
#[tokio::test]
async fn a_malformed_tool_argument_is_handed_over_and_a_malformed_message_is_an_error() {
    let mock = mock_llm::start(|n| Answer::Sse {
        pieces: if n == 0 {
            vec![
                text_chunk("Let me check. "),
                event(json!({"choices":[{"index":0,"delta":{"tool_calls":[
                    {"index":0,"id":"call_a","function":{"name":"get_slots","arguments":"{\"date\": tue"}}]}}]})),
                event(json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})),
                "data: [DONE]\n\n".into(),
            ]
        } else {
            vec![text_chunk("Hi"), "data: {\"choices\": [oops\n\n".into()]
        },
        hold: false,
    })
    .await;
    let p = providers(
        &single(&mock.base_url),
        Some(KEY),
        Arc::new(Metrics::default()),
    );
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(
        evs,
        [
            Ok(LlmEvent::Text("Let me check. ".into())),
            Ok(LlmEvent::ToolCall(ToolCall {
                id: "call_a".into(),
                name: "get_slots".into(),
                arguments: "{\"date\": tue".into()
            })),
            Ok(LlmEvent::Done(FinishReason::ToolCalls)),
        ]
    );
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    match &evs[..] {
        [Ok(LlmEvent::Text(_)), Err(e)] => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("malformed"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    let mut mock = mock_llm::start(|_| Answer::Sse {
        pieces: vec![text_chunk("Sure, let me "), text_chunk("see what ")],
        hold: true,
    })
    .await;
    let p = providers(
        &single(&mock.base_url),
        Some(KEY),
        Arc::new(Metrics::default()),
    );
    let mut rx = p.llm.stream(request()).await.unwrap();
    assert_eq!(
        rx.recv().await,
        Some(Ok(LlmEvent::Text("Sure, let me ".into())))
    );
    drop(rx); // barge-in
    tokio::time::timeout(Duration::from_secs(10), mock.dropped.recv())
        .await
        .expect("the server sees the client leave")
        .unwrap();
}

#[tokio::test]
async fn errors_map_to_permanent_and_transient() {
    let mock = mock_llm::start(|n| match n {
        0 => Answer::Status(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-tes***cret","type":"invalid_request_error","code":"invalid_api_key"}}"#.into(),
            None,
        ),
        1 => Answer::Status(400, r#"{"object":"error","message":"tool_choice auto needs --enable-auto-tool-choice","type":"BadRequestError","param":null,"code":400}"#.into(), None),
        2 => Answer::Status(429, r#"{"error":{"message":"Rate limit reached","code":null}}"#.into(), Some(3)),
        _ => Answer::Status(503, "<html>bad gateway</html>".into(), None),
    })
    .await;
    let p = providers(
        &single(&mock.base_url),
        Some(KEY),
        Arc::new(Metrics::default()),
    );
    let one = |evs: Vec<Result<LlmEvent, ProviderError>>| match &evs[..] {
        [Err(e)] => e.clone(),
        other => panic!("{other:?}"),
    };
    let e = one(all(p.llm.stream(request()).await.unwrap()).await);
    assert!(!e.is_transient());
    assert!(
        !e.to_string().contains("sk-"),
        "the body's key fragment is not repeated: {e}"
    );
    let e = one(all(p.llm.stream(request()).await.unwrap()).await);
    assert!(
        !e.is_transient() && e.to_string().contains("enable-auto-tool-choice"),
        "{e}"
    );
    let e = one(all(p.llm.stream(request()).await.unwrap()).await);
    assert_eq!(
        e,
        ProviderError::Transient {
            provider: "openai",
            message: "HTTP 429: Rate limit reached".into(),
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let e = one(all(p.llm.stream(request()).await.unwrap()).await);
    assert!(e.is_transient(), "{e}");
}

fn chain(base: &str, stall_ms: u64) -> String {
    format!(
        "[providers.llm]\nchain = [\"openai\", \"scripted\"]\nstall_ms = {stall_ms}\n\
         [providers.llm.openai]\nbase_url = \"{base}\"\n\
         [providers.llm.scripted]\nfirst_token_ms = 0\nreply = \"One moment, please.\"\n"
    )
}

#[tokio::test]
async fn a_refused_key_fails_over_for_the_rest_of_the_call() {
    let mut mock = mock_llm::start(|_| Answer::Status(401, "{}".into(), None)).await;
    let metrics = Arc::new(Metrics::default());
    let p = providers(&chain(&mock.base_url, 2000), Some("bad"), metrics.clone()).for_call();
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(text_of(&evs), "One moment, please.");
    assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 1);
    // The next turn of this call does not try the refused provider again.
    all(p.llm.stream(request()).await.unwrap()).await;
    mock.requests.recv().await.unwrap();
    assert!(mock.requests.try_recv().is_err(), "one request only");
    assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 1);
}

#[tokio::test]
async fn a_stalled_server_fails_over_after_the_bound() {
    let mock = mock_llm::start(|_| Answer::Silence).await;
    let metrics = Arc::new(Metrics::default());
    let p = providers(&chain(&mock.base_url, 300), Some(KEY), metrics.clone()).for_call();
    let t0 = std::time::Instant::now();
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(text_of(&evs), "One moment, please.");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 1);
}

#[tokio::test]
async fn a_local_server_needs_no_key_and_gets_none() {
    let mut mock = mock_llm::start(|_| Answer::Sse {
        pieces: vec![text_chunk("ok"), "data: [DONE]\n\n".into()],
        hold: false,
    })
    .await;
    // 127.0.0.1: Ollama, vLLM, llama.cpp accept any key or none.
    let p = providers(&single(&mock.base_url), None, Arc::new(Metrics::default()));
    let evs = all(p.llm.stream(request()).await.unwrap()).await;
    assert_eq!(text_of(&evs), "ok");
    assert_eq!(mock.requests.recv().await.unwrap().auth, None);
}
