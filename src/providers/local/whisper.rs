//! whisper.cpp on VAD-endpointed utterances.
//!
//! One model per process, shared; a bounded pool of decoder states, each
//! used on a blocking thread (never on a call task). A session collects the
//! caller's audio from the start of the sound to our VAD's end of
//! utterance, trims the silence around it, resamples 8 → 16 kHz and
//! decodes it once. Bracketed non-speech (`[BLANK_AUDIO]`, `(music)`) is
//! dropped.
//!
//! Short phone utterances do not pay for Whisper's 30-second window: the
//! encoder's audio context follows the utterance length (`fit_audio_ctx`),
//! which cuts a 3-second decode to a fraction of the full window's cost.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::audio::resample::StreamResampler;

/// Whisper's rate.
pub const WHISPER_RATE: u32 = 16_000;

/// The shared model and its decoder pool.
pub struct Whisper {
    ctx: WhisperContext,
    states: Mutex<Vec<whisper_rs::WhisperState>>,
    permits: Semaphore,
    /// A decoder of its own for peeks (is the caller's sound under the bot's
    /// speech a backchannel?): they must not queue behind whole utterances.
    peek_states: Mutex<Vec<whisper_rs::WhisperState>>,
    peek_permits: Semaphore,
    threads: i32,
    fit_audio_ctx: bool,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper")
            .field("decoders", &self.permits.available_permits())
            .field("threads", &self.threads)
            .finish()
    }
}

impl Whisper {
    /// Load `model` with `decoders` states of `threads` threads each.
    pub fn load(
        model: &Path,
        decoders: usize,
        threads: usize,
        fit_audio_ctx: bool,
        flash_attn: bool,
    ) -> Result<Whisper, String> {
        whisper_rs::install_logging_hooks();
        let path = model
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", model.display()))?;
        let mut params = WhisperContextParameters::default();
        params.flash_attn(flash_attn);
        let ctx = WhisperContext::new_with_params(path, params)
            .map_err(|e| format!("cannot load the Whisper model {}: {e}", model.display()))?;
        let mut states = Vec::with_capacity(decoders);
        for _ in 0..decoders.max(1) {
            states.push(
                ctx.create_state()
                    .map_err(|e| format!("cannot make a Whisper decoder: {e}"))?,
            );
        }
        let peek = ctx
            .create_state()
            .map_err(|e| format!("cannot make a Whisper decoder: {e}"))?;
        Ok(Whisper {
            ctx,
            permits: Semaphore::new(states.len()),
            states: Mutex::new(states),
            peek_states: Mutex::new(vec![peek]),
            peek_permits: Semaphore::new(1),
            threads: threads.clamp(1, 16) as i32,
            fit_audio_ctx,
        })
    }

    /// Decode one utterance (8 kHz PCM). Waits for a free decoder, then
    /// runs on a blocking thread.
    pub async fn transcribe(self: &Arc<Self>, pcm8k: Vec<i16>) -> Result<String, String> {
        self.decode(pcm8k, Lane::Utterance).await
    }

    /// The first words of a short sound, on the peek decoder (never behind
    /// whole utterances), at most a few tokens.
    pub async fn peek(self: &Arc<Self>, pcm8k: Vec<i16>) -> Result<String, String> {
        self.decode(pcm8k, Lane::Peek).await
    }

    async fn decode(self: &Arc<Self>, pcm8k: Vec<i16>, lane: Lane) -> Result<String, String> {
        let permits = match lane {
            Lane::Utterance => &self.permits,
            Lane::Peek => &self.peek_permits,
        };
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| "the Whisper pool is closed".to_string())?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.decode_blocking(&pcm8k, lane))
            .await
            .map_err(|e| format!("the Whisper decode failed: {e}"))?
    }

    /// Decode on this thread (holds a pooled state for the duration).
    pub fn transcribe_blocking(&self, pcm8k: &[i16]) -> Result<String, String> {
        self.decode_blocking(pcm8k, Lane::Utterance)
    }

    fn decode_blocking(&self, pcm8k: &[i16], lane: Lane) -> Result<String, String> {
        let audio = to_whisper_input(pcm8k)?;
        let states = match lane {
            Lane::Utterance => &self.states,
            Lane::Peek => &self.peek_states,
        };
        let mut state = {
            let mut pool = states.lock().unwrap_or_else(|p| p.into_inner());
            match pool.pop() {
                Some(s) => s,
                // Only when called outside the permit (tests, benches).
                None => self
                    .ctx
                    .create_state()
                    .map_err(|e| format!("cannot make a Whisper decoder: {e}"))?,
            }
        };
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.threads);
        p.set_language(Some("en"));
        p.set_translate(false);
        p.set_no_context(true);
        p.set_single_segment(true);
        p.set_no_timestamps(true);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_temperature(0.0);
        p.set_temperature_inc(0.0);
        if self.fit_audio_ctx {
            // (Peeks too: a window of 128 or 256 positions was measured to
            // turn "yeah, sure" into "the answer" and "mm-hmm" into "and".)
            p.set_audio_ctx(audio_ctx_for(audio.len()));
        }
        // A decoder stuck in a loop stops at about twice the fastest speech.
        let secs = audio.len() as f64 / WHISPER_RATE as f64;
        p.set_max_tokens(match lane {
            // Enough to tell "uh-huh" from "wait, that's not…".
            Lane::Peek => PEEK_TOKENS,
            Lane::Utterance => (secs * 8.0) as i32 + 24,
        });
        let r = state.full(p, &audio);
        let text = r.map_err(|e| format!("Whisper: {e}")).map(|()| {
            let mut text = String::new();
            for seg in state.as_iter() {
                if let Ok(s) = seg.to_str_lossy() {
                    text.push_str(&s);
                }
            }
            clean(&text)
        });
        states.lock().unwrap_or_else(|p| p.into_inner()).push(state);
        text
    }
}

/// Which decoders a decode runs on.
#[derive(Debug, Clone, Copy)]
enum Lane {
    Utterance,
    Peek,
}

/// Tokens a peek decodes at most.
const PEEK_TOKENS: i32 = 8;

/// The encoder context for `samples` at 16 kHz: 50 positions a second, with
/// a margin, within Whisper's 1500. Under about 7 s of window, tiny.en
/// starts repeating short utterances ("We have forty people. We have forty
/// people. …"), so the window never shrinks below 384 positions.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let secs = samples as f64 / WHISPER_RATE as f64;
    ((secs * 50.0).ceil() as i32 + 256).clamp(384, 1500)
}

/// 8 kHz i16 → 16 kHz f32, padded to at least one second (Whisper
/// mis-hears shorter clips).
fn to_whisper_input(pcm8k: &[i16]) -> Result<Vec<f32>, String> {
    let mut r = StreamResampler::new(8000, WHISPER_RATE).map_err(|e| e.to_string())?;
    let mut up = Vec::with_capacity(pcm8k.len() * 2 + 512);
    r.process(pcm8k, &mut up);
    r.flush(&mut up);
    let mut out: Vec<f32> = up.iter().map(|&s| s as f32 / 32_768.0).collect();
    let min = WHISPER_RATE as usize + WHISPER_RATE as usize / 4;
    if out.len() < min {
        out.resize(min, 0.0);
    }
    Ok(out)
}

/// Drop bracketed non-speech (`[BLANK_AUDIO]`, `(music)`, `*laughs*`) and
/// squeeze the spaces.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut star = false;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            '*' => star = !star,
            _ if depth == 0 && !star => out.push(c),
            _ => {}
        }
    }
    let joined = out.split_whitespace().collect::<Vec<_>>().join(" ");
    // A lone punctuation mark left after dropping a tag is not speech.
    if joined.chars().all(|c| !c.is_alphanumeric()) {
        return String::new();
    }
    collapse_repeats(&joined)
}

/// Drop a sentence that repeats the one before it (a decoder loop).
fn collapse_repeats(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let end_of_sentence =
            matches!(c, b'.' | b'?' | b'!') && (i + 1 == b.len() || b[i + 1] == b' ');
        if end_of_sentence || i + 1 == b.len() {
            let s = text[start..=i].trim();
            let norm = |x: &str| x.trim_end_matches(['.', '?', '!', ',']).to_lowercase();
            if !s.is_empty() && out.last().is_none_or(|l| norm(l) != norm(s)) {
                out.push(s);
            }
            start = i + 1;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_non_speech_is_dropped() {
        assert_eq!(clean(" [BLANK_AUDIO]"), "");
        assert_eq!(clean("(music) Hello there. [Music]"), "Hello there.");
        assert_eq!(clean(" *coughs* yes please"), "yes please");
        assert_eq!(clean(" ."), "");
        assert_eq!(
            clean(" My number is 555-123-4567."),
            "My number is 555-123-4567."
        );
        assert_eq!(
            clean(" We have 40 people. We have 40 people. We have 40"),
            "We have 40 people. We have 40"
        );
        assert_eq!(clean("No. No, thanks."), "No. No, thanks.");
    }

    #[test]
    fn the_window_follows_the_utterance() {
        assert_eq!(audio_ctx_for(16_000 * 3), 406);
        assert_eq!(audio_ctx_for(0), 384);
        assert_eq!(audio_ctx_for(16_000 * 60), 1500);
    }
}
