//! The reply pipeline for one generation: LLM text → sentences → TTS audio.
//!
//! It runs as its own task so the driver can abort it at once on barge-in;
//! nothing in it has side effects outside the providers (tool calls are only
//! forwarded to the core, which decides whether to run them).

use tokio::sync::mpsc;

use super::core::{ReplyEvent, ReplyInput};
use crate::audio::PHONE_RATE;
use crate::providers::{LlmEvent, Providers, TtsEvent, TtsInput, TtsParams};

/// Events for the driver, tagged with their generation.
pub type ReplySender = mpsc::Sender<(u64, ReplyEvent)>;

/// Split complete sentences (or long clauses) off the front of `buf`.
fn take_sentence(buf: &mut String) -> Option<String> {
    let mut cut = None;
    for (i, c) in buf.char_indices() {
        let end = i + c.len_utf8();
        let next_is_space = buf[end..].starts_with(char::is_whitespace);
        if matches!(c, '.' | '?' | '!') && next_is_space {
            cut = Some(end);
            break;
        }
        if matches!(c, ',' | ';' | ':') && next_is_space && end >= 40 {
            cut = Some(end);
            break;
        }
    }
    let cut = cut?;
    let rest = buf.split_off(cut);
    let sentence = std::mem::replace(buf, rest.trim_start().to_string());
    Some(sentence)
}

/// How replies speak (from `[providers.tts]`).
#[derive(Debug, Clone, Default)]
pub struct Voice {
    /// Provider voice id, if any.
    pub voice: Option<String>,
}

/// Run one reply to completion (or until aborted), sending its events to `tx`.
pub async fn run_reply(
    gen: u64,
    input: ReplyInput,
    providers: Providers,
    voice: Voice,
    tx: ReplySender,
) {
    let send = |ev: ReplyEvent| {
        let tx = tx.clone();
        async move { tx.send((gen, ev)).await.is_ok() }
    };
    let params = TtsParams {
        sample_rate: PHONE_RATE,
        voice: voice.voice,
    };
    let mut tts = match providers.tts.open(params).await {
        Ok(s) => s,
        Err(e) => {
            send(ReplyEvent::Failed(e)).await;
            return;
        }
    };
    let mut llm_rx = match input {
        ReplyInput::Say(text) => {
            send(ReplyEvent::Text(text.clone())).await;
            let mut rest = text;
            while let Some(s) = take_sentence(&mut rest) {
                let _ = tts.input.send(TtsInput::Text(s)).await;
            }
            if !rest.trim().is_empty() {
                let _ = tts.input.send(TtsInput::Text(rest)).await;
            }
            let _ = tts.input.send(TtsInput::End).await;
            None
        }
        ReplyInput::Generate(req) => match providers.llm.stream(req).await {
            Ok(rx) => Some(rx),
            Err(e) => {
                send(ReplyEvent::Failed(e)).await;
                return;
            }
        },
    };
    let mut pending = String::new();
    loop {
        tokio::select! {
            ev = async { llm_rx.as_mut()?.recv().await }, if llm_rx.is_some() => match ev {
                Some(Ok(LlmEvent::Text(t))) => {
                    if !send(ReplyEvent::Text(t.clone())).await { return; }
                    pending.push_str(&t);
                    while let Some(s) = take_sentence(&mut pending) {
                        let _ = tts.input.send(TtsInput::Text(s)).await;
                    }
                }
                Some(Ok(LlmEvent::ToolCall(call))) => {
                    if !send(ReplyEvent::ToolCall(call)).await { return; }
                }
                Some(Ok(LlmEvent::Done(_))) | None => {
                    llm_rx = None;
                    if !pending.trim().is_empty() {
                        let _ = tts.input.send(TtsInput::Text(std::mem::take(&mut pending))).await;
                    }
                    let _ = tts.input.send(TtsInput::End).await;
                }
                Some(Err(e)) => {
                    send(ReplyEvent::Failed(e)).await;
                    return;
                }
            },
            ev = tts.events.recv() => match ev {
                Some(Ok(TtsEvent::Audio(pcm))) => {
                    if !send(ReplyEvent::Audio(pcm)).await { return; }
                }
                Some(Ok(TtsEvent::Done)) | None => {
                    send(ReplyEvent::Done).await;
                    return;
                }
                Some(Err(e)) => {
                    send(ReplyEvent::Failed(e)).await;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_split_at_their_ends() {
        let mut b = String::from("Sure. I can help");
        assert_eq!(take_sentence(&mut b).as_deref(), Some("Sure."));
        assert_eq!(b, "I can help");
        assert_eq!(take_sentence(&mut b), None);
        b.push_str(" with that? Yes");
        assert_eq!(
            take_sentence(&mut b).as_deref(),
            Some("I can help with that?")
        );
        let mut d = String::from("It costs 3.50 a month");
        assert_eq!(
            take_sentence(&mut d),
            None,
            "decimal points are not sentence ends"
        );
    }
}
