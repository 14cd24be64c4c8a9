//! OpenAI-compatible streaming chat: OpenAI itself, and Ollama, vLLM and
//! llama.cpp servers at their `/v1` base.
//!
//! One `POST {base_url}/chat/completions` with `stream: true` per reply; the
//! server-sent events are read as they arrive. Text deltas become
//! [`LlmEvent::Text`]; tool-call fragments are collected by `index` (or, for
//! servers that leave `index` out or give every call index 0, by a change of
//! `id`) and their `arguments` joined, so a call is handed over whole, at
//! the end; its arguments are the conversation's to check (models make
//! them up, and a malformed one is answered so the model can retry). The usage chunk (empty
//! `choices`), unknown fields, `event:` lines and comments are tolerated;
//! `[DONE]` or the end of the body finishes. Whether the model called tools
//! is decided by the calls collected, not by `finish_reason` (Ollama has
//! reported `stop` with calls).
//!
//! Errors: 400/401/403/404/422 are permanent; 408/409/429/5xx, timeouts and
//! broken connections transient (with `Retry-After` when given). Dropping
//! the receiver drops the response, which aborts the HTTP request.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::debug;

use super::ws::{short, status_is_permanent};
use super::{ChatMessage, FinishReason, Llm, LlmEvent, LlmRequest, ProviderError, Role, ToolCall};
use crate::config::OpenaiLlmConfig;
use crate::pii::Secret;

const NAME: &str = "openai";

/// The OpenAI-compatible chat client.
#[derive(Debug, Clone)]
pub struct OpenaiLlm {
    cfg: OpenaiLlmConfig,
    key: Option<Secret<String>>,
    http: reqwest::Client,
}

impl OpenaiLlm {
    /// From `[providers.llm]` and `OPENAI_API_KEY` (optional for a local server).
    pub fn new(cfg: OpenaiLlmConfig, key: Option<Secret<String>>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .build()?;
        Ok(OpenaiLlm { cfg, key, http })
    }

    fn is_openai(&self) -> bool {
        self.cfg.base_url.contains("api.openai.com")
    }

    /// The request body for `req`.
    pub fn body(&self, req: &LlmRequest) -> Value {
        let messages: Vec<Value> = req.messages.iter().map(message_json).collect();
        let mut stream_options = json!({"include_usage": true});
        let mut body = json!({
            "model": self.cfg.model,
            "stream": true,
            "messages": messages,
        });
        if self.is_openai() {
            stream_options["include_obfuscation"] = json!(false);
        }
        body["stream_options"] = stream_options;
        if let Some(max) = req.max_tokens {
            // `max_tokens` is deprecated at OpenAI (reasoning models refuse
            // it); compatible servers know only `max_tokens`.
            let field = if self.is_openai() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body[field] = json!(max);
        }
        if let Some(t) = self.cfg.temperature {
            body["temperature"] = json!(t);
        }
        if !req.tools.is_empty() {
            // Without tools, no `tool_choice`: vLLM refuses it (400) unless
            // started with a tool parser.
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            body["tool_choice"] = json!("auto");
        }
        body
    }
}

fn message_json(m: &ChatMessage) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut v = json!({"role": role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

type Events = mpsc::Sender<Result<LlmEvent, ProviderError>>;

#[async_trait]
impl Llm for OpenaiLlm {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn stream(
        &self,
        req: LlmRequest,
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let url = format!(
            "{}/chat/completions",
            self.cfg.base_url.trim_end_matches('/')
        );
        let mut request = self.http.post(url).json(&self.body(&req));
        if let Some(k) = &self.key {
            request = request.bearer_auth(k.expose());
        }
        let idle = Duration::from_millis(self.cfg.timeout_ms);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // Whatever happens, stop as soon as nobody listens: dropping the
            // future drops the request or the response body.
            tokio::select! {
                _ = run(request, idle, &tx) => {}
                _ = tx.closed() => debug!("chat request dropped (cancelled)"),
            }
        });
        Ok(rx)
    }
}

fn transient(message: String) -> ProviderError {
    ProviderError::Transient {
        provider: NAME,
        message,
        retry_after: None,
    }
}

async fn run(request: reqwest::RequestBuilder, idle: Duration, tx: &Events) {
    let resp = match tokio::time::timeout(idle, request.send()).await {
        Err(_) => {
            let _ = tx
                .send(Err(transient(format!("no response within {idle:?}"))))
                .await;
            return;
        }
        Ok(Err(e)) => {
            let _ = tx
                .send(Err(transient(format!(
                    "request failed: {}",
                    e.without_url()
                ))))
                .await;
            return;
        }
        Ok(Ok(r)) => r,
    };
    if let Some(id) = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        debug!(request_id = id, "chat stream started");
    }
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let retry_after = crate::retry::retry_after(resp.headers());
        let body = tokio::time::timeout(idle, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let _ = tx.send(Err(status_error(status, &body, retry_after))).await;
        return;
    }
    let mut body = resp.bytes_stream();
    let mut sse = SseParser::default();
    let mut acc = Assembler::default();
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                let _ = tx
                    .send(Err(transient(format!("stream stalled for {idle:?}"))))
                    .await;
                return;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let _ = tx
                    .send(Err(transient(format!("stream broke: {}", e.without_url()))))
                    .await;
                return;
            }
            Ok(Some(Ok(c))) => c,
        };
        for data in sse.push(&chunk) {
            match acc.handle(&data) {
                Ok(Step::Events(evs)) => {
                    for ev in evs {
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Step::Done) => {
                    finish(acc, tx).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
    // The body ended without `[DONE]`: what came is still the answer.
    finish(acc, tx).await;
}

async fn finish(acc: Assembler, tx: &Events) {
    match acc.finish() {
        Ok(evs) => {
            for ev in evs {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// The error for a non-2xx response: `{"error":{"message"}}` (OpenAI, newer
/// vLLM) or a flat `{"message"}` (older vLLM). Auth failures never quote
/// the body (it can echo part of the key).
pub fn status_error(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let said = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    let message = match (status, said) {
        (401 | 403, _) => format!("authentication refused ({status})"),
        (_, Some(m)) => format!("HTTP {status}: {}", short(&m)),
        (_, None) => format!("HTTP {status}"),
    };
    if status_is_permanent(status) {
        ProviderError::Permanent {
            provider: NAME,
            message,
        }
    } else {
        ProviderError::Transient {
            provider: NAME,
            message,
            retry_after,
        }
    }
}

// ---------------------------------------------------------------- SSE

/// Splits a byte stream into the `data` of each server-sent event. Blank
/// lines end an event; `:` comments and other fields (`event:`, `id:`) are
/// skipped; several `data:` lines of one event are joined with `\n`.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

/// Longest line kept (a hostile server must not grow it without end).
const MAX_LINE: usize = 1 << 20;

impl SseParser {
    /// Feed bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    out.push(d);
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => self.data = Some(rest.to_string()),
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------- chunks

/// What one event meant.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Events to pass on now (text).
    Events(Vec<LlmEvent>),
    /// `[DONE]`.
    Done,
}

#[derive(Debug, Default)]
struct PartialCall {
    index: Option<u64>,
    id: String,
    name: String,
    arguments: String,
}

/// Assembles a chat stream: text now, tool calls at the end.
#[derive(Debug, Default)]
pub struct Assembler {
    calls: Vec<PartialCall>,
    finish: Option<FinishReason>,
}

impl Assembler {
    /// One event's data.
    pub fn handle(&mut self, data: &str) -> Result<Step, ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        if data.is_empty() {
            return Ok(Step::Events(vec![]));
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| super::ws::malformed(NAME, format!("not JSON ({e})")))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let msg = err
                .get("message")
                .and_then(|m| m.as_str())
                .or_else(|| err.as_str())
                .unwrap_or("error");
            return Err(transient(format!("error mid-stream: {}", short(msg))));
        }
        if v.get("object").and_then(|o| o.as_str()) == Some("error") {
            let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("error");
            return Err(transient(format!("error mid-stream: {}", short(msg))));
        }
        let mut out = Vec::new();
        // The usage chunk has `choices: []`; some servers send no `choices`.
        let choices = v.get("choices").and_then(|c| c.as_array());
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(|i| i.as_u64()).unwrap_or(0) != 0 {
                continue; // n = 1: other choices are not ours
            }
            let delta = choice.get("delta");
            if let Some(t) = delta
                .and_then(|d| d.get("content"))
                .and_then(|c| c.as_str())
            {
                if !t.is_empty() {
                    out.push(LlmEvent::Text(t.to_string()));
                }
            }
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(|c| c.as_array());
            for frag in calls.into_iter().flatten() {
                self.fragment(frag)?;
            }
            if let Some(r) = choice.get("finish_reason").and_then(|r| r.as_str()) {
                self.finish = Some(match r {
                    "length" => FinishReason::Length,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "content_filter" => FinishReason::ContentFilter,
                    _ => FinishReason::Stop,
                });
            }
        }
        if let Some(u) = v.get("usage").or_else(|| v.pointer("/x_groq/usage")) {
            if let Some(total) = u.get("total_tokens").and_then(|t| t.as_u64()) {
                debug!(total_tokens = total, "chat usage");
            }
        }
        Ok(Step::Events(out))
    }

    fn fragment(&mut self, frag: &Value) -> Result<(), ProviderError> {
        let index = frag.get("index").and_then(|i| i.as_u64());
        let id = frag
            .get("id")
            .and_then(|i| i.as_str())
            .filter(|s| !s.is_empty());
        let func = frag.get("function");
        let name = func.and_then(|f| f.get("name")).and_then(|n| n.as_str());
        // Ollama's native shape sends arguments as an object.
        let args = match func.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        // Which call this continues: the same index (unless a new id says a
        // new call began there), else the last call when no id is given.
        let pos = match (index, id) {
            (Some(i), Some(id)) => self
                .calls
                .iter()
                .rposition(|c| c.index == Some(i) && (c.id.is_empty() || c.id == id)),
            (Some(i), None) => self.calls.iter().rposition(|c| c.index == Some(i)),
            (None, Some(id)) => self.calls.iter().rposition(|c| c.id == id),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let call = match pos {
            Some(p) => &mut self.calls[p],
            None => {
                if self.calls.len() >= 32 {
                    return Err(super::ws::malformed(NAME, "more than 32 tool calls"));
                }
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                // Just pushed.
                let last = self.calls.len() - 1;
                &mut self.calls[last]
            }
        };
        if let Some(id) = id {
            call.id = id.to_string();
        }
        if let Some(n) = name {
            call.name.push_str(n);
        }
        if call.arguments.len() + args.len() > MAX_LINE {
            return Err(super::ws::malformed(NAME, "tool arguments too long"));
        }
        call.arguments.push_str(&args);
        Ok(())
    }

    /// The end of the stream: the tool calls, then `Done`. A call with no
    /// function name is an error (transient: the model may well get it
    /// right on a retry). Arguments that are not a JSON object are handed
    /// over as they came: the conversation checks every call's arguments
    /// anyway, and answering the call with a failed result lets the model
    /// correct itself, where an error would lose the whole reply.
    pub fn finish(self) -> Result<Vec<Result<LlmEvent, ProviderError>>, ProviderError> {
        let mut out = Vec::new();
        let had_calls = !self.calls.is_empty();
        for (n, c) in self.calls.into_iter().enumerate() {
            if c.name.is_empty() {
                return Err(transient(format!("tool call {n} has no function name")));
            }
            let args = if c.arguments.trim().is_empty() {
                "{}".to_string()
            } else {
                c.arguments
            };
            if !matches!(serde_json::from_str::<Value>(&args), Ok(Value::Object(_))) {
                debug!(tool = %c.name, "tool call arguments are not a JSON object");
            }
            let id = if c.id.is_empty() {
                format!("call_{n}")
            } else {
                c.id
            };
            out.push(Ok(LlmEvent::ToolCall(ToolCall {
                id,
                name: c.name,
                arguments: args,
            })));
        }
        let reason = if had_calls {
            FinishReason::ToolCalls
        } else {
            match self.finish {
                Some(FinishReason::ToolCalls) | None => FinishReason::Stop,
                Some(r) => r,
            }
        };
        out.push(Ok(LlmEvent::Done(reason)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p
            .push(b": keep-alive\n\nevent: message\ndata: {\"a\"")
            .is_empty());
        assert_eq!(
            p.push(b":1}\r\n\r\ndata: [DONE]\n\n"),
            ["{\"a\":1}", "[DONE]"]
        );
        assert_eq!(p.push(b"data: x\ndata: y\n\n"), ["x\ny"]);
    }

    #[test]
    fn tool_fragments_join_by_index_and_ids_split_calls() {
        let mut a = Assembler::default();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_slots","arguments":"{\"da"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_b","function":{"name":"hold","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":""}}]}}]}"#,
        ];
        for c in chunks {
            a.handle(c).unwrap();
        }
        // call_b at index 0 (a proxy quirk) is a second call; call_a stays open.
        a.handle(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"arguments":"te\":\"tue\"}"}}]}}]}"#).unwrap();
        let evs = a.finish().unwrap();
        let calls: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                Ok(LlmEvent::ToolCall(c)) => {
                    Some((c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "get_slots", "{\"date\":\"tue\"}"),
                ("call_b", "hold", "{}")
            ]
        );
    }

    #[test]
    fn errors_map_to_permanent_and_transient() {
        assert!(!status_error(
            401,
            r#"{"error":{"message":"Incorrect API key sk-abc"}}"#,
            None
        )
        .is_transient());
        assert!(!status_error(401, "sk-abc", None)
            .to_string()
            .contains("sk-abc"));
        assert!(!status_error(
            400,
            r#"{"object":"error","message":"bad","code":400}"#,
            None
        )
        .is_transient());
        assert!(status_error(429, "", Some(Duration::from_secs(2))).is_transient());
        assert!(status_error(503, "<html>", None).is_transient());
    }
}
