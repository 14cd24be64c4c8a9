//! Fail-over per role: the members of `[providers.ROLE] chain = [...]` in
//! order, each an ordinary provider (cloud, scripted, and the offline ones
//! when they come — a chain only sees the traits).
//!
//! A call starts on the first member. A failure *before the member has
//! produced anything* — it cannot connect, refuses the request (bad key,
//! bad request), errs, or stalls past `stall_ms` — moves the call to the
//! next member at once, and the work in hand is redone there:
//!
//! * LLM: the same request goes to the next member.
//! * TTS: the reply's text so far is sent again (and its end, if given).
//! * STT: the caller audio since the last transcript is sent again, then
//!   the end of the utterance if one was waiting — so the utterance is not
//!   lost, only late by the stall.
//!
//! The move is for the rest of the call (a chain value is per call, see
//! [`crate::providers::Providers::for_call`]), counted in
//! `frontdesk_provider_switches_total{role,from,to}` and logged with the
//! reason (which carries no secret). A failure after output has been
//! passed on cannot be spliced: it is passed on, and a permanent one still
//! moves the call for what comes next. The last member is never bounded by
//! the stall (there is nowhere left to go; the call's own timeouts apply).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::{
    Llm, LlmEvent, LlmRequest, ProviderError, Stt, SttEvent, SttInput, SttParams, SttSession, Tts,
    TtsEvent, TtsInput, TtsParams, TtsSession,
};
use crate::metrics::Metrics;

/// Caller audio kept for a replay after an STT switch (10 s of 20 ms frames).
const STT_REPLAY_FRAMES: usize = 500;

fn stalled(role: &str, stall: Duration) -> ProviderError {
    ProviderError::Transient {
        provider: "chain",
        message: format!("{role}: nothing within {} ms", stall.as_millis()),
        retry_after: None,
    }
}

fn record_switch(
    metrics: &Metrics,
    role: &'static str,
    from: &'static str,
    to: &'static str,
    why: &ProviderError,
) {
    metrics.provider_switch(role, from, to);
    warn!(role, from, to, reason = %why, "provider fail-over");
}

/// Run `fut`, bounded by `stall` unless this is the last member.
async fn bounded<T>(
    last: bool,
    stall: Duration,
    role: &str,
    fut: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    if last {
        return fut.await;
    }
    match tokio::time::timeout(stall, fut).await {
        Ok(r) => r,
        Err(_) => Err(stalled(role, stall)),
    }
}

// ---------------------------------------------------------------- LLM

/// An LLM fail-over chain.
pub struct ChainLlm {
    members: Arc<[Arc<dyn Llm>]>,
    stall: Duration,
    metrics: Arc<Metrics>,
    current: Arc<AtomicUsize>,
}

impl ChainLlm {
    /// Members in order; `stall` bounds each but the last to its first event.
    pub fn new(members: Vec<Arc<dyn Llm>>, stall: Duration, metrics: Arc<Metrics>) -> Self {
        ChainLlm {
            members: members.into(),
            stall,
            metrics,
            current: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Llm for ChainLlm {
    fn name(&self) -> &'static str {
        let i = self.current.load(Relaxed).min(self.members.len() - 1);
        self.members[i].name()
    }

    fn for_call(&self) -> Option<Arc<dyn Llm>> {
        Some(Arc::new(ChainLlm {
            members: self.members.clone(),
            stall: self.stall,
            metrics: self.metrics.clone(),
            current: Arc::new(AtomicUsize::new(0)),
        }))
    }

    async fn stream(
        &self,
        req: LlmRequest,
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(64);
        let (members, stall, metrics, current) = (
            self.members.clone(),
            self.stall,
            self.metrics.clone(),
            self.current.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = llm_attempts(&members, stall, &metrics, &current, req, &tx) => {}
                // The reply was cancelled: dropping the member's stream
                // aborts its request.
                _ = tx.closed() => {}
            }
        });
        Ok(rx)
    }
}

type LlmRx = mpsc::Receiver<Result<LlmEvent, ProviderError>>;

async fn llm_attempts(
    members: &[Arc<dyn Llm>],
    stall: Duration,
    metrics: &Metrics,
    current: &AtomicUsize,
    req: LlmRequest,
    tx: &mpsc::Sender<Result<LlmEvent, ProviderError>>,
) {
    let n = members.len();
    let mut i = current.load(Relaxed).min(n - 1);
    loop {
        let m = &members[i];
        let last = i + 1 >= n;
        let first = bounded(last, stall, "llm", async {
            let mut rx: LlmRx = m.stream(req.clone()).await?;
            match rx.recv().await {
                Some(Ok(ev)) => Ok((rx, ev)),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Transient {
                    provider: m.name(),
                    message: "the stream ended with nothing".into(),
                    retry_after: None,
                }),
            }
        })
        .await;
        match first {
            Ok((mut rx, ev)) => {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
                while let Some(ev) = rx.recv().await {
                    if let Err(e) = &ev {
                        if !e.is_transient() && !last {
                            record_switch(metrics, "llm", m.name(), members[i + 1].name(), e);
                            current.store(i + 1, Relaxed);
                        }
                    }
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                return;
            }
            Err(e) if last => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                record_switch(metrics, "llm", m.name(), members[i + 1].name(), &e);
                i += 1;
                current.store(i, Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------- TTS

/// A TTS fail-over chain.
pub struct ChainTts {
    members: Arc<[Arc<dyn Tts>]>,
    stall: Duration,
    metrics: Arc<Metrics>,
    current: Arc<AtomicUsize>,
}

impl ChainTts {
    /// Members in order; `stall` bounds each but the last from its first
    /// text to its first audio.
    pub fn new(members: Vec<Arc<dyn Tts>>, stall: Duration, metrics: Arc<Metrics>) -> Self {
        ChainTts {
            members: members.into(),
            stall,
            metrics,
            current: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Open member `i` or a later one; the index opened and its session.
async fn tts_open_from(
    members: &[Arc<dyn Tts>],
    mut i: usize,
    stall: Duration,
    metrics: &Metrics,
    current: &AtomicUsize,
    params: &TtsParams,
) -> Result<(usize, TtsSession), ProviderError> {
    loop {
        let last = i + 1 >= members.len();
        match bounded(last, stall, "tts", members[i].open(params.clone())).await {
            Ok(s) => return Ok((i, s)),
            Err(e) if last => return Err(e),
            Err(e) => {
                record_switch(metrics, "tts", members[i].name(), members[i + 1].name(), &e);
                i += 1;
                current.store(i, Relaxed);
            }
        }
    }
}

#[async_trait]
impl Tts for ChainTts {
    fn name(&self) -> &'static str {
        let i = self.current.load(Relaxed).min(self.members.len() - 1);
        self.members[i].name()
    }

    fn for_call(&self) -> Option<Arc<dyn Tts>> {
        Some(Arc::new(ChainTts {
            members: self.members.clone(),
            stall: self.stall,
            metrics: self.metrics.clone(),
            current: Arc::new(AtomicUsize::new(0)),
        }))
    }

    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError> {
        let start = self.current.load(Relaxed).min(self.members.len() - 1);
        let (i, session) = tts_open_from(
            &self.members,
            start,
            self.stall,
            &self.metrics,
            &self.current,
            &params,
        )
        .await?;
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let run = TtsRun {
            members: self.members.clone(),
            stall: self.stall,
            metrics: self.metrics.clone(),
            current: self.current.clone(),
            params,
        };
        tokio::spawn(run.run(i, session, in_rx, ev_tx));
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

struct TtsRun {
    members: Arc<[Arc<dyn Tts>]>,
    stall: Duration,
    metrics: Arc<Metrics>,
    current: Arc<AtomicUsize>,
    params: TtsParams,
}

impl TtsRun {
    async fn run(
        self,
        mut i: usize,
        mut session: TtsSession,
        mut input: mpsc::Receiver<TtsInput>,
        out: mpsc::Sender<Result<TtsEvent, ProviderError>>,
    ) {
        let n = self.members.len();
        let mut texts: Vec<String> = Vec::new();
        let mut ended = false;
        let mut got_audio = false;
        let mut first_text_at: Option<Instant> = None;
        loop {
            let watch = !got_audio && i + 1 < n;
            let deadline = first_text_at.map(|t| t + self.stall);
            let failure = tokio::select! {
                inp = input.recv(), if !ended => {
                    match inp {
                        Some(TtsInput::Text(t)) => {
                            first_text_at.get_or_insert_with(Instant::now);
                            texts.push(t.clone());
                            let _ = session.input.send(TtsInput::Text(t)).await;
                        }
                        Some(TtsInput::End) => {
                            ended = true;
                            let _ = session.input.send(TtsInput::End).await;
                        }
                        None => return, // cancelled: dropping the session cancels the member
                    }
                    continue;
                }
                ev = session.events.recv() => match ev {
                    Some(Ok(TtsEvent::Audio(pcm))) => {
                        got_audio = true;
                        if out.send(Ok(TtsEvent::Audio(pcm))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(TtsEvent::Done)) => {
                        let _ = out.send(Ok(TtsEvent::Done)).await;
                        return;
                    }
                    Some(Err(e)) => e,
                    None => ProviderError::Transient {
                        provider: self.members[i].name(),
                        message: "the session ended before its audio".into(),
                        retry_after: None,
                    },
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if watch && deadline.is_some() => {
                    stalled("tts", self.stall)
                }
                _ = out.closed() => return,
            };
            if got_audio || i + 1 >= n {
                if !failure.is_transient() && i + 1 < n {
                    let (from, to) = (self.members[i].name(), self.members[i + 1].name());
                    record_switch(&self.metrics, "tts", from, to, &failure);
                    self.current.store(i + 1, Relaxed);
                }
                let _ = out.send(Err(failure)).await;
                return;
            }
            let (from, to) = (self.members[i].name(), self.members[i + 1].name());
            record_switch(&self.metrics, "tts", from, to, &failure);
            self.current.store(i + 1, Relaxed);
            match tts_open_from(
                &self.members,
                i + 1,
                self.stall,
                &self.metrics,
                &self.current,
                &self.params,
            )
            .await
            {
                Ok((j, s)) => {
                    i = j;
                    session = s;
                }
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            }
            for t in &texts {
                let _ = session.input.send(TtsInput::Text(t.clone())).await;
            }
            if ended {
                let _ = session.input.send(TtsInput::End).await;
            }
            first_text_at = (!texts.is_empty()).then(Instant::now);
        }
    }
}

// ---------------------------------------------------------------- STT

/// An STT fail-over chain (its state lives in the call's one session).
pub struct ChainStt {
    members: Arc<[Arc<dyn Stt>]>,
    stall: Duration,
    metrics: Arc<Metrics>,
}

impl ChainStt {
    /// Members in order; `stall` bounds each but the last from the end of
    /// an utterance to its transcript (and its connecting).
    pub fn new(members: Vec<Arc<dyn Stt>>, stall: Duration, metrics: Arc<Metrics>) -> Self {
        ChainStt {
            members: members.into(),
            stall,
            metrics,
        }
    }

    async fn open_from(
        &self,
        mut i: usize,
        params: &SttParams,
    ) -> Result<(usize, SttSession), ProviderError> {
        stt_open_from(&self.members, &mut i, self.stall, &self.metrics, params)
            .await
            .map(|s| (i, s))
    }
}

async fn stt_open_from(
    members: &[Arc<dyn Stt>],
    i: &mut usize,
    stall: Duration,
    metrics: &Metrics,
    params: &SttParams,
) -> Result<SttSession, ProviderError> {
    loop {
        let last = *i + 1 >= members.len();
        match bounded(last, stall, "stt", members[*i].open(params.clone())).await {
            Ok(s) => return Ok(s),
            Err(e) if last => return Err(e),
            Err(e) => {
                record_switch(
                    metrics,
                    "stt",
                    members[*i].name(),
                    members[*i + 1].name(),
                    &e,
                );
                *i += 1;
            }
        }
    }
}

#[async_trait]
impl Stt for ChainStt {
    fn name(&self) -> &'static str {
        self.members[0].name()
    }

    fn wants_audio(&self) -> bool {
        self.members.iter().any(|m| m.wants_audio())
    }

    /// As the first member: a call starts on it, and one that fails over
    /// keeps the barge-in policy it started with.
    fn interims(&self) -> bool {
        self.members[0].interims()
    }

    async fn open(&self, params: SttParams) -> Result<SttSession, ProviderError> {
        let (i, session) = self.open_from(0, &params).await?;
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let run = SttRun {
            members: self.members.clone(),
            stall: self.stall,
            metrics: self.metrics.clone(),
            params,
        };
        tokio::spawn(run.run(i, session, in_rx, ev_tx));
        Ok(SttSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

struct SttRun {
    members: Arc<[Arc<dyn Stt>]>,
    stall: Duration,
    metrics: Arc<Metrics>,
    params: SttParams,
}

impl SttRun {
    async fn run(
        self,
        mut i: usize,
        mut session: SttSession,
        mut input: mpsc::Receiver<SttInput>,
        out: mpsc::Sender<SttEvent>,
    ) {
        let n = self.members.len();
        let mut replay: VecDeque<Arc<[i16]>> = VecDeque::new();
        let mut waiting = 0u32; // ends of utterance without their transcript yet
        let mut deadline: Option<Instant> = None;
        loop {
            let watch = i + 1 < n && deadline.is_some();
            let failure = tokio::select! {
                inp = input.recv() => {
                    match inp {
                        Some(SttInput::Audio(frame)) => {
                            if replay.len() >= STT_REPLAY_FRAMES {
                                replay.pop_front();
                            }
                            replay.push_back(frame.clone());
                            if self.members[i].wants_audio() {
                                // A closed member shows in its events.
                                let _ = session.input.send(SttInput::Audio(frame)).await;
                            }
                        }
                        Some(SttInput::Forget) => {
                            if waiting == 0 {
                                // (An utterance still owed its transcript
                                // keeps its audio for a fail-over.)
                                replay.clear();
                            }
                            let _ = session.input.send(SttInput::Forget).await;
                        }
                        Some(SttInput::Peek) => {
                            let _ = session.input.send(SttInput::Peek).await;
                        }
                        Some(SttInput::EndOfUtterance) => {
                            waiting += 1;
                            deadline.get_or_insert_with(|| Instant::now() + self.stall);
                            let _ = session.input.send(SttInput::EndOfUtterance).await;
                        }
                        None => return, // the call is over: dropping the session closes it
                    }
                    continue;
                }
                ev = session.events.recv() => match ev {
                    Some(SttEvent::Error(e)) => e,
                    None => ProviderError::Transient {
                        provider: self.members[i].name(),
                        message: "the session ended".into(),
                        retry_after: None,
                    },
                    Some(ev) => {
                        if let SttEvent::Final { end_of_utterance: true, .. } = ev {
                            replay.clear();
                            waiting = waiting.saturating_sub(1);
                            deadline = (waiting > 0).then(|| Instant::now() + self.stall);
                        }
                        if out.send(ev).await.is_err() {
                            return;
                        }
                        continue;
                    }
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if watch => {
                    stalled("stt", self.stall)
                }
                _ = out.closed() => return,
            };
            if i + 1 >= n {
                let _ = out.send(SttEvent::Error(failure)).await;
                return;
            }
            let from = self.members[i].name();
            record_switch(
                &self.metrics,
                "stt",
                from,
                self.members[i + 1].name(),
                &failure,
            );
            i += 1;
            match stt_open_from(
                &self.members,
                &mut i,
                self.stall,
                &self.metrics,
                &self.params,
            )
            .await
            {
                Ok(s) => session = s,
                Err(e) => {
                    let _ = out.send(SttEvent::Error(e)).await;
                    return;
                }
            }
            if self.members[i].wants_audio() {
                for f in &replay {
                    let _ = session.input.send(SttInput::Audio(f.clone())).await;
                }
            }
            for _ in 0..waiting {
                let _ = session.input.send(SttInput::EndOfUtterance).await;
            }
            deadline = (waiting > 0).then(|| Instant::now() + self.stall);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScriptedLlmConfig, ScriptedSttConfig};
    use crate::providers::scripted::{ScriptedLlm, ScriptedStt, ScriptedTts};
    use crate::providers::FinishReason;

    /// An LLM that never answers, or fails at once.
    struct Broken {
        name: &'static str,
        fail: Option<ProviderError>,
    }

    #[async_trait]
    impl Llm for Broken {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn stream(&self, _req: LlmRequest) -> Result<LlmRx, ProviderError> {
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => {
                    let (tx, rx) = mpsc::channel(1);
                    // Hold the sender forever: a stall.
                    tokio::spawn(async move {
                        tx.closed().await;
                    });
                    Ok(rx)
                }
            }
        }
    }

    #[async_trait]
    impl Stt for Broken {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn open(&self, _params: SttParams) -> Result<SttSession, ProviderError> {
            let (in_tx, mut in_rx) = mpsc::channel::<SttInput>(64);
            let (ev_tx, ev_rx) = mpsc::channel(1);
            // Takes audio, never transcribes.
            tokio::spawn(async move {
                while in_rx.recv().await.is_some() {}
                drop(ev_tx);
            });
            Ok(SttSession {
                input: in_tx,
                events: ev_rx,
            })
        }
    }

    fn scripted_llm(reply: &str) -> Arc<dyn Llm> {
        Arc::new(ScriptedLlm::new(ScriptedLlmConfig {
            first_token_ms: 10,
            token_interval_ms: 0,
            reply: reply.into(),
        }))
    }

    async fn collect(mut rx: LlmRx) -> (String, Vec<ProviderError>) {
        let (mut text, mut errs) = (String::new(), vec![]);
        while let Some(ev) = rx.recv().await {
            match ev {
                Ok(LlmEvent::Text(t)) => text.push_str(&t),
                Ok(LlmEvent::Done(FinishReason::Stop)) => break,
                Ok(_) => {}
                Err(e) => errs.push(e),
            }
        }
        (text, errs)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_llm_moves_the_call_after_the_bound_and_stays_moved() {
        let metrics = Arc::new(Metrics::default());
        let shared = ChainLlm::new(
            vec![
                Arc::new(Broken {
                    name: "openai",
                    fail: None,
                }) as Arc<dyn Llm>,
                scripted_llm("Hello there."),
            ],
            Duration::from_secs(2),
            metrics.clone(),
        );
        let chain = shared.for_call().unwrap();
        let t0 = Instant::now();
        let (text, errs) = collect(chain.stream(LlmRequest::default()).await.unwrap()).await;
        assert_eq!(text, "Hello there.");
        assert!(errs.is_empty(), "{errs:?}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 1);
        // The next reply of this call goes straight to the fallback…
        let t1 = Instant::now();
        collect(chain.stream(LlmRequest::default()).await.unwrap()).await;
        assert!(t1.elapsed() < Duration::from_millis(100));
        assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 1);
        // …while another call starts on the first member again.
        let other = shared.for_call().unwrap();
        collect(other.stream(LlmRequest::default()).await.unwrap()).await;
        assert_eq!(metrics.provider_switches("llm", "openai", "scripted"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_moves_at_once_and_the_last_error_is_passed_on() {
        let metrics = Arc::new(Metrics::default());
        let denied = ProviderError::Permanent {
            provider: "openai",
            message: "authentication refused (401)".into(),
        };
        let chain = ChainLlm::new(
            vec![
                Arc::new(Broken {
                    name: "openai",
                    fail: Some(denied.clone()),
                }) as Arc<dyn Llm>,
                scripted_llm("Fine."),
            ],
            Duration::from_secs(2),
            metrics.clone(),
        );
        let t0 = Instant::now();
        let (text, _) = collect(chain.stream(LlmRequest::default()).await.unwrap()).await;
        assert_eq!(text, "Fine.");
        assert!(t0.elapsed() < Duration::from_millis(100));
        let alone = ChainLlm::new(
            vec![Arc::new(Broken {
                name: "openai",
                fail: Some(denied.clone()),
            }) as Arc<dyn Llm>],
            Duration::from_secs(2),
            metrics,
        );
        let (_, errs) = collect(alone.stream(LlmRequest::default()).await.unwrap()).await;
        assert_eq!(errs, [denied]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_stt_replays_the_utterance_to_the_next_member() {
        let metrics = Arc::new(Metrics::default());
        let chain = ChainStt::new(
            vec![
                Arc::new(Broken {
                    name: "deepgram",
                    fail: None,
                }) as Arc<dyn Stt>,
                Arc::new(ScriptedStt::new(ScriptedSttConfig {
                    final_after_ms: 50,
                    transcripts: vec!["book a cleaning".into()],
                })),
            ],
            Duration::from_secs(2),
            metrics.clone(),
        );
        assert!(chain.wants_audio());
        let mut s = chain
            .open(SttParams {
                sample_rate: 8000,
                language: "en".into(),
            })
            .await
            .unwrap();
        let frame: Arc<[i16]> = vec![0i16; 160].into();
        s.input.send(SttInput::Audio(frame)).await.unwrap();
        s.input.send(SttInput::EndOfUtterance).await.unwrap();
        let t0 = Instant::now();
        let ev = s.events.recv().await.unwrap();
        assert_eq!(
            ev,
            SttEvent::Final {
                text: "book a cleaning".into(),
                end_of_utterance: true
            }
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2200),
            "{took:?}"
        );
        assert_eq!(metrics.provider_switches("stt", "deepgram", "scripted"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tts_that_fails_before_audio_hands_the_text_to_the_next() {
        struct Refuses;
        #[async_trait]
        impl Tts for Refuses {
            fn name(&self) -> &'static str {
                "cartesia"
            }
            async fn open(&self, _p: TtsParams) -> Result<TtsSession, ProviderError> {
                let (in_tx, mut in_rx) = mpsc::channel::<TtsInput>(8);
                let (ev_tx, ev_rx) = mpsc::channel(8);
                tokio::spawn(async move {
                    // Fails on the first text, as a 401 error message would.
                    if in_rx.recv().await.is_some() {
                        let _ = ev_tx
                            .send(Err(ProviderError::Permanent {
                                provider: "cartesia",
                                message: "error 401: bad key".into(),
                            }))
                            .await;
                    }
                });
                Ok(TtsSession {
                    input: in_tx,
                    events: ev_rx,
                })
            }
        }
        let metrics = Arc::new(Metrics::default());
        let fallback = ScriptedTts::new(Duration::from_millis(10), vec![7i16; 1600].into());
        let chain = ChainTts::new(
            vec![Arc::new(Refuses) as Arc<dyn Tts>, Arc::new(fallback)],
            Duration::from_secs(2),
            metrics.clone(),
        );
        let mut s = chain
            .open(TtsParams {
                sample_rate: 8000,
                voice: None,
            })
            .await
            .unwrap();
        s.input.send(TtsInput::Text("Hello.".into())).await.unwrap();
        s.input.send(TtsInput::End).await.unwrap();
        let mut samples = 0;
        while let Some(ev) = s.events.recv().await {
            match ev.unwrap() {
                TtsEvent::Audio(a) => samples += a.len(),
                TtsEvent::Done => break,
            }
        }
        assert_eq!(samples, 1600);
        assert_eq!(metrics.provider_switches("tts", "cartesia", "scripted"), 1);
        assert_eq!(chain.name(), "scripted");
    }
}
