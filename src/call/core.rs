//! The sans-IO call core: turn-taking, playout pacing with marks, barge-in.
//!
//! # Drive contract
//!
//! [`CallCore`] owns one call's conversational state and does no I/O: no
//! sockets, no tasks, no clock. Its driver
//!
//! 1. feeds every input with the matching `handle_*` method, passing `now`:
//!    carrier events ([`CallCore::handle_start`], [`CallCore::handle_media`],
//!    [`CallCore::handle_mark`], [`CallCore::handle_dtmf`], [`CallCore::handle_stop`]),
//!    transcripts ([`CallCore::handle_stt`]) and reply pipeline output
//!    ([`CallCore::handle_reply`]);
//! 2. after **every** input drains [`CallCore::poll_action`] until `None` and
//!    carries the actions out in order;
//! 3. sleeps until [`CallCore::poll_timeout`] and then calls
//!    [`CallCore::handle_timeout`] (re-reading `poll_timeout` after each input,
//!    since inputs move deadlines).
//!
//! # Turns
//!
//! `Greeting → Listening → CallerSpeaking → Thinking → BotSpeaking → Listening …`
//! The caller's turn ends after `vad.end_ms` of silence; the core then asks
//! the STT to finalise ([`Action::EndOfUtterance`]) and, once the final
//! transcript is in, asks for a reply ([`Action::StartReply`]). If the caller
//! speaks again before any reply audio is out, the pending reply is cancelled
//! and the new words join the same turn.
//!
//! # Playout
//!
//! Reply audio is sent in pieces of at most `call.chunk_ms`, with a `mark`
//! at least every `call.mark_every_ms` of audio and whenever the queue runs
//! dry, and never more than `call.max_ahead_ms` beyond the last mark the
//! carrier has echoed — so a `clear` leaves little audio behind at the carrier.
//!
//! # Interruption classes
//!
//! Caller audio, DTMF, barge-in and stop are never dropped. On barge-in the
//! core sends `clear`, cancels the reply (queued audio and in-flight
//! generation) and records how much the caller heard by confirmed marks;
//! marks echoed after the `clear` count as discarded, not played. Tool calls
//! surface as [`Action::RunTool`] only from the current generation; the
//! driver runs them outside the cancellable reply task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::audio::{FRAME_SAMPLES, PHONE_RATE};
use crate::carrier::CarrierCommand;
use crate::config::{CallConfig, VadConfig};
use crate::providers::{ChatMessage, ProviderError, Role, SttEvent, ToolCall};
use crate::vad::{BargeIn, BargeInDecision, VadEvent, VoiceDetector};

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnState {
    /// The bot is saying its greeting.
    Greeting,
    /// Waiting for the caller.
    Listening,
    /// The caller is talking.
    CallerSpeaking,
    /// The caller finished; transcript and reply are on their way.
    Thinking,
    /// The bot's reply is playing.
    BotSpeaking,
    /// The call is over.
    Ended,
}

/// What a reply is for.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyInput {
    /// Speak this text as is (no model).
    Greeting(String),
    /// Answer the caller, who said this.
    Caller {
        /// The caller's words for this turn.
        transcript: String,
    },
}

/// Output of the reply pipeline for one generation.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// Text the bot is saying (for the transcript).
    Text(String),
    /// Bot audio, 8 kHz PCM.
    Audio(Vec<i16>),
    /// The model asked for a tool.
    ToolCall(ToolCall),
    /// The reply is complete: no more audio.
    Done,
    /// The reply failed.
    Failed(ProviderError),
}

/// Why the core wants the call to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    /// The carrier sent `stop`.
    CarrierStop,
    /// No media for `call.media_timeout_ms`.
    MediaTimeout,
}

/// Something worth counting.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Last voiced caller frame → first reply audio sent.
    TurnLatency(Duration),
    /// First voiced frame of an interruption → `clear` sent.
    BargeIn(Duration),
    /// The carrier played everything we sent while the reply was unfinished.
    Underrun,
    /// A mark echoed after a `clear` (discarded, not played).
    MarkDiscarded,
    /// A mark we never sent.
    UnknownMark,
    /// The final transcript did not come in time.
    TranscriptTimeout,
    /// The reply produced no audio in time.
    ReplyTimeout,
    /// A provider failed.
    ProviderError(ProviderError),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this to the carrier.
    Send(CarrierCommand),
    /// Ask the STT to finalise the utterance.
    EndOfUtterance,
    /// Start the reply pipeline for generation `gen`.
    StartReply {
        /// Generation id; events for other generations are ignored.
        gen: u64,
        /// What to reply to.
        input: ReplyInput,
    },
    /// Stop generation `gen` (LLM and TTS) at once.
    CancelReply {
        /// The generation to stop.
        gen: u64,
    },
    /// Run a side-effecting tool call to completion (never cancelled half-way).
    RunTool {
        /// The generation that asked.
        gen: u64,
        /// The call.
        call: ToolCall,
    },
    /// Count this.
    Observe(Observation),
    /// End the call.
    Hangup(HangupReason),
}

/// One exchange of the conversation, as it actually happened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnRecord {
    /// What the caller said (empty for the greeting).
    pub caller: String,
    /// What the bot meant to say.
    pub bot: String,
    /// Milliseconds of bot audio the carrier confirmed as played.
    pub heard_ms: u64,
    /// Milliseconds of bot audio the reply had when it ended.
    pub total_ms: u64,
    /// Whether the caller cut the bot off.
    pub interrupted: bool,
}

/// Timing and pacing settings, from `[vad]` and `[call]`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Thresholds for the detector and barge-in.
    pub vad: VadConfig,
    /// Greeting text; empty for none.
    pub greeting: String,
    /// Samples between marks.
    pub mark_every: usize,
    /// Samples allowed beyond the last echoed mark.
    pub max_ahead: usize,
    /// Largest media piece in samples.
    pub chunk: usize,
    /// Wait for a final transcript at most this long.
    pub transcript_timeout: Duration,
    /// Wait for the first reply audio at most this long.
    pub reply_timeout: Duration,
    /// Hang up after this long without media.
    pub media_timeout: Duration,
}

impl CoreConfig {
    /// From the validated config sections.
    pub fn new(vad: &VadConfig, call: &CallConfig) -> Self {
        let ms = |v: u32| v as usize * PHONE_RATE as usize / 1000;
        CoreConfig {
            vad: vad.clone(),
            greeting: call.greeting.clone(),
            mark_every: ms(call.mark_every_ms),
            max_ahead: ms(call.max_ahead_ms),
            chunk: ms(call.chunk_ms),
            transcript_timeout: Duration::from_millis(call.transcript_timeout_ms),
            reply_timeout: Duration::from_millis(call.reply_timeout_ms),
            media_timeout: Duration::from_millis(call.media_timeout_ms),
        }
    }
}

#[derive(Debug)]
struct Reply {
    gen: u64,
    text: String,
    queue: VecDeque<i16>,
    /// Samples sent to the carrier.
    sent: usize,
    /// Samples the carrier confirmed as played (position of the last echoed mark).
    confirmed: usize,
    since_mark: usize,
    marks: VecDeque<(String, usize)>,
    mark_seq: u32,
    audio_done: bool,
    paused: bool,
    requested_at: Instant,
    first_audio_at: Option<Instant>,
    underrun_counted: bool,
}

impl Reply {
    fn new(gen: u64, now: Instant) -> Self {
        Reply {
            gen,
            text: String::new(),
            queue: VecDeque::new(),
            sent: 0,
            confirmed: 0,
            since_mark: 0,
            marks: VecDeque::new(),
            mark_seq: 0,
            audio_done: false,
            paused: false,
            requested_at: now,
            first_audio_at: None,
            underrun_counted: false,
        }
    }

    fn finished(&self) -> bool {
        self.audio_done && self.queue.is_empty() && self.confirmed == self.sent
    }
}

/// Exchanges kept in the core: the model's context window and the
/// heard-by-marks bookkeeping need only the recent ones, and a call that runs
/// for hours must not grow without bound. (The whole transcript is the
/// store's business.) When full, the oldest half is dropped at once, so the
/// cost is amortised.
const MAX_HISTORY: usize = 16;

/// Marks cleared but not yet echoed; bounded so a carrier that never echoes cannot grow it.
const MAX_DISCARDED_MARKS: usize = 64;

/// One call's conversation state. See the module docs for the drive contract.
#[derive(Debug)]
pub struct CallCore {
    cfg: CoreConfig,
    vad: VoiceDetector,
    barge: BargeIn,
    partial: Vec<i16>,
    state: TurnState,
    started: bool,
    next_gen: u64,
    reply: Option<Reply>,
    discarded_marks: VecDeque<String>,
    caller_text: String,
    finals_pending: u32,
    last_voiced_at: Option<Instant>,
    barge_onset_at: Option<Instant>,
    transcript_deadline: Option<Instant>,
    media_deadline: Option<Instant>,
    actions: VecDeque<Action>,
    history: Vec<TurnRecord>,
    dtmf: String,
}

fn samples_ms(samples: usize) -> u64 {
    (samples as u64 * 1000) / PHONE_RATE as u64
}

impl CallCore {
    /// A core waiting for the stream's `start`.
    pub fn new(cfg: CoreConfig) -> Self {
        CallCore {
            vad: VoiceDetector::new(&cfg.vad),
            barge: BargeIn::new(cfg.vad.barge_in_min_ms),
            cfg,
            partial: Vec::with_capacity(FRAME_SAMPLES),
            state: TurnState::Listening,
            started: false,
            next_gen: 1,
            reply: None,
            discarded_marks: VecDeque::new(),
            caller_text: String::new(),
            finals_pending: 0,
            last_voiced_at: None,
            barge_onset_at: None,
            transcript_deadline: None,
            media_deadline: None,
            actions: VecDeque::new(),
            history: Vec::with_capacity(MAX_HISTORY),
            dtmf: String::new(),
        }
    }

    /// Where the conversation is.
    pub fn state(&self) -> TurnState {
        self.state
    }

    /// The most recent exchanges (at most 16; older ones are dropped).
    pub fn history(&self) -> &[TurnRecord] {
        &self.history
    }

    /// The conversation as chat messages for the model, system prompt first.
    /// A bot turn the caller cut off is cut to the share of its text they
    /// heard (by confirmed marks) and ends in "…", so the model does not
    /// assume the caller heard what was never played.
    pub fn chat_history(&self, system: &str) -> Vec<ChatMessage> {
        let mut out = vec![ChatMessage::text(Role::System, system)];
        for t in &self.history {
            if !t.caller.is_empty() {
                out.push(ChatMessage::text(Role::User, t.caller.clone()));
            }
            if t.bot.is_empty() {
                continue;
            }
            let text = if t.interrupted && t.total_ms > 0 {
                let keep = (t.bot.chars().count() as u64 * t.heard_ms / t.total_ms) as usize;
                let mut s: String = t.bot.chars().take(keep).collect();
                s.push('…');
                s
            } else {
                t.bot.clone()
            };
            out.push(ChatMessage::text(Role::Assistant, text));
        }
        out
    }

    /// Keypad digits pressed so far.
    pub fn dtmf(&self) -> &str {
        &self.dtmf
    }

    /// The next action, if any. Drain after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`CallCore::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == TurnState::Ended {
            return None;
        }
        let reply_deadline = self
            .reply
            .as_ref()
            .filter(|r| r.first_audio_at.is_none())
            .map(|r| r.requested_at + self.cfg.reply_timeout);
        [
            self.media_deadline,
            self.transcript_deadline,
            reply_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------ carrier input

    /// The stream started: greet, or listen.
    pub fn handle_start(&mut self, now: Instant) {
        if self.started || self.state == TurnState::Ended {
            return;
        }
        self.started = true;
        self.media_deadline = Some(now + self.cfg.media_timeout);
        if self.cfg.greeting.trim().is_empty() {
            self.state = TurnState::Listening;
        } else {
            self.state = TurnState::Greeting;
            let text = self.cfg.greeting.clone();
            self.start_reply(ReplyInput::Greeting(text), now);
        }
    }

    /// Caller audio (8 kHz PCM, any length).
    pub fn handle_media(&mut self, pcm: &[i16], now: Instant) {
        if !self.started || self.state == TurnState::Ended {
            return;
        }
        self.media_deadline = Some(now + self.cfg.media_timeout);
        let mut rest = pcm;
        if !self.partial.is_empty() {
            let need = FRAME_SAMPLES - self.partial.len();
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == FRAME_SAMPLES {
                let frame = std::mem::take(&mut self.partial);
                self.on_frame(&frame, now);
                self.partial = frame;
                self.partial.clear();
            }
        }
        let mut frames = rest.chunks_exact(FRAME_SAMPLES);
        for frame in &mut frames {
            self.on_frame(frame, now);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    /// The carrier echoed a mark.
    pub fn handle_mark(&mut self, name: &str, now: Instant) {
        if let Some(i) = self.discarded_marks.iter().position(|m| m == name) {
            self.discarded_marks.remove(i);
            self.actions
                .push_back(Action::Observe(Observation::MarkDiscarded));
            return;
        }
        let Some(r) = self.reply.as_mut() else {
            self.actions
                .push_back(Action::Observe(Observation::UnknownMark));
            return;
        };
        let Some(i) = r.marks.iter().position(|(m, _)| m == name) else {
            self.actions
                .push_back(Action::Observe(Observation::UnknownMark));
            return;
        };
        // Marks play in order: this one confirms every earlier one too.
        let (_, pos) = r.marks.drain(..=i).next_back().unwrap_or_default();
        r.confirmed = r.confirmed.max(pos);
        if r.confirmed == r.sent && r.queue.is_empty() && !r.audio_done && !r.underrun_counted {
            r.underrun_counted = true;
            self.actions
                .push_back(Action::Observe(Observation::Underrun));
        }
        self.pump(now);
        self.check_finished();
    }

    /// A keypad digit.
    pub fn handle_dtmf(&mut self, digit: char, _now: Instant) {
        if self.dtmf.len() < 256 {
            self.dtmf.push(digit);
        }
    }

    /// The carrier ended the stream.
    pub fn handle_stop(&mut self, _now: Instant) {
        self.end(HangupReason::CarrierStop);
    }

    // ------------------------------------------------------------ providers

    /// A transcript event from the STT.
    pub fn handle_stt(&mut self, ev: SttEvent, now: Instant) {
        if self.state == TurnState::Ended {
            return;
        }
        match ev {
            SttEvent::Interim(text) => {
                if matches!(self.state, TurnState::Greeting | TurnState::BotSpeaking) {
                    let d = self.barge.on_words(&text);
                    self.apply_barge(d, now);
                }
            }
            SttEvent::Final {
                text,
                end_of_utterance,
            } => {
                let text = text.trim();
                if !text.is_empty() {
                    if !self.caller_text.is_empty() {
                        self.caller_text.push(' ');
                    }
                    self.caller_text.push_str(text);
                }
                if end_of_utterance {
                    self.finals_pending = self.finals_pending.saturating_sub(1);
                }
                if self.state == TurnState::Thinking
                    && self.reply.is_none()
                    && self.finals_pending == 0
                {
                    self.transcript_deadline = None;
                    if self.caller_text.is_empty() {
                        // Sound, but no words: keep listening.
                        self.state = TurnState::Listening;
                    } else {
                        let transcript = std::mem::take(&mut self.caller_text);
                        self.start_reply(ReplyInput::Caller { transcript }, now);
                    }
                }
            }
            SttEvent::SpeechStarted => {}
            SttEvent::Error(e) => self
                .actions
                .push_back(Action::Observe(Observation::ProviderError(e))),
        }
    }

    /// Output of the reply pipeline.
    pub fn handle_reply(&mut self, gen: u64, ev: ReplyEvent, now: Instant) {
        let Some(r) = self.reply.as_mut().filter(|r| r.gen == gen) else {
            return; // a cancelled generation: discard
        };
        match ev {
            ReplyEvent::Text(t) => r.text.push_str(&t),
            ReplyEvent::Audio(pcm) => {
                if pcm.is_empty() {
                    return;
                }
                r.queue.extend(pcm);
                r.underrun_counted = false;
                if self.state == TurnState::Thinking {
                    self.state = TurnState::BotSpeaking;
                }
                self.pump(now);
            }
            ReplyEvent::ToolCall(call) => self.actions.push_back(Action::RunTool { gen, call }),
            ReplyEvent::Done => {
                r.audio_done = true;
                self.pump(now);
                self.check_finished();
            }
            ReplyEvent::Failed(e) => {
                self.actions
                    .push_back(Action::Observe(Observation::ProviderError(e)));
                r.audio_done = true;
                if r.sent == 0 && r.queue.is_empty() {
                    self.actions.push_back(Action::CancelReply { gen });
                }
                self.pump(now);
                self.check_finished();
            }
        }
    }

    /// A deadline from [`CallCore::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == TurnState::Ended {
            return;
        }
        if self.media_deadline.is_some_and(|d| now >= d) {
            self.end(HangupReason::MediaTimeout);
            return;
        }
        if self.transcript_deadline.is_some_and(|d| now >= d) {
            self.transcript_deadline = None;
            self.finals_pending = 0;
            self.actions
                .push_back(Action::Observe(Observation::TranscriptTimeout));
            if self.state == TurnState::Thinking && self.reply.is_none() {
                if self.caller_text.is_empty() {
                    self.state = TurnState::Listening;
                } else {
                    let transcript = std::mem::take(&mut self.caller_text);
                    self.start_reply(ReplyInput::Caller { transcript }, now);
                }
            }
        }
        let timed_out = self.reply.as_ref().is_some_and(|r| {
            r.first_audio_at.is_none() && now >= r.requested_at + self.cfg.reply_timeout
        });
        if timed_out {
            self.actions
                .push_back(Action::Observe(Observation::ReplyTimeout));
            self.drop_reply(false);
            self.state = self.idle_state();
        }
    }

    // ------------------------------------------------------------ internals

    fn on_frame(&mut self, frame: &[i16], now: Instant) {
        let d = self.vad.push_frame(frame);
        if matches!(self.state, TurnState::Greeting | TurnState::BotSpeaking) {
            let decision = self.barge.on_frame(d.voiced);
            if decision == BargeInDecision::Pause {
                self.barge_onset_at = Some(now);
            }
            self.apply_barge(decision, now);
        }
        match (self.state, d.event) {
            (TurnState::Listening, Some(VadEvent::SpeechStarted { .. })) => {
                self.state = TurnState::CallerSpeaking;
            }
            (TurnState::Thinking, Some(VadEvent::SpeechStarted { .. })) => {
                // The caller went on before we answered: same turn, new reply later.
                self.drop_reply(false);
                self.transcript_deadline = None;
                self.state = TurnState::CallerSpeaking;
            }
            (TurnState::CallerSpeaking, Some(VadEvent::SpeechEnded { .. })) => {
                self.state = TurnState::Thinking;
                self.finals_pending += 1;
                self.transcript_deadline = Some(now + self.cfg.transcript_timeout);
                self.actions.push_back(Action::EndOfUtterance);
            }
            _ => {}
        }
        if d.voiced && self.state == TurnState::CallerSpeaking {
            self.last_voiced_at = Some(now);
        }
    }

    fn apply_barge(&mut self, d: BargeInDecision, now: Instant) {
        match d {
            BargeInDecision::Nothing => {}
            BargeInDecision::Pause => {
                if let Some(r) = self.reply.as_mut() {
                    r.paused = true;
                }
            }
            BargeInDecision::Resume => {
                if let Some(r) = self.reply.as_mut() {
                    r.paused = false;
                }
                self.pump(now);
            }
            BargeInDecision::Interrupt => self.interrupt(now),
        }
    }

    fn interrupt(&mut self, now: Instant) {
        self.actions.push_back(Action::Send(CarrierCommand::Clear));
        self.drop_reply(true);
        let onset = self.barge_onset_at.take().unwrap_or(now);
        self.actions.push_back(Action::Observe(Observation::BargeIn(
            now.saturating_duration_since(onset),
        )));
        self.barge.reset();
        self.vad.force_speech();
        self.last_voiced_at = Some(now);
        self.state = TurnState::CallerSpeaking;
    }

    /// Cancel the current reply, recording what was heard. `cleared`: a
    /// `clear` was sent, so the marks still pending will come back discarded.
    /// A reply cancelled before any of its audio went out leaves the caller's
    /// words unanswered: they go back into the turn being built.
    fn drop_reply(&mut self, cleared: bool) {
        let Some(r) = self.reply.take() else { return };
        self.actions.push_back(Action::CancelReply { gen: r.gen });
        if cleared {
            for (name, _) in r.marks {
                if self.discarded_marks.len() == MAX_DISCARDED_MARKS {
                    self.discarded_marks.pop_front();
                }
                self.discarded_marks.push_back(name);
            }
        }
        if r.sent > 0 {
            let total = samples_ms(r.sent + r.queue.len());
            self.record_bot(r.text, samples_ms(r.confirmed), total, cleared);
        } else if let Some(last) = self
            .history
            .pop_if(|t| t.total_ms == 0 && !t.caller.is_empty())
        {
            let mut words = last.caller;
            if !self.caller_text.is_empty() {
                words.push(' ');
                words.push_str(&self.caller_text);
            }
            self.caller_text = words;
        }
    }

    fn push_history(&mut self, turn: TurnRecord) {
        if self.history.len() >= MAX_HISTORY {
            self.history.drain(..MAX_HISTORY / 2);
        }
        self.history.push(turn);
    }

    /// Attach the bot's side to the caller turn it answered (or record it alone, e.g. the greeting).
    fn record_bot(&mut self, bot: String, heard_ms: u64, total_ms: u64, interrupted: bool) {
        match self.history.last_mut() {
            Some(t) if t.total_ms == 0 && !t.caller.is_empty() => {
                t.bot = bot;
                t.heard_ms = heard_ms;
                t.total_ms = total_ms;
                t.interrupted = interrupted;
            }
            _ => self.push_history(TurnRecord {
                caller: String::new(),
                bot,
                heard_ms,
                total_ms,
                interrupted,
            }),
        }
    }

    fn start_reply(&mut self, input: ReplyInput, now: Instant) {
        let gen = self.next_gen;
        self.next_gen += 1;
        if let ReplyInput::Caller { transcript } = &input {
            self.push_history(TurnRecord {
                caller: transcript.clone(),
                ..TurnRecord::default()
            });
        }
        self.reply = Some(Reply::new(gen, now));
        self.barge.reset();
        self.actions.push_back(Action::StartReply { gen, input });
    }

    fn pump(&mut self, now: Instant) {
        if !matches!(self.state, TurnState::Greeting | TurnState::BotSpeaking) {
            return;
        }
        let Some(r) = self.reply.as_mut() else { return };
        if r.paused {
            return;
        }
        let cfg = &self.cfg;
        while !r.queue.is_empty() {
            let ahead = r.sent - r.confirmed;
            if ahead >= cfg.max_ahead {
                break;
            }
            let n = cfg
                .chunk
                .min(r.queue.len())
                .min(cfg.max_ahead - ahead)
                .min(cfg.mark_every - r.since_mark);
            let piece: Vec<i16> = r.queue.drain(..n).collect();
            if r.first_audio_at.is_none() {
                r.first_audio_at = Some(now);
                if self.state == TurnState::BotSpeaking {
                    if let Some(t) = self.last_voiced_at {
                        self.actions
                            .push_back(Action::Observe(Observation::TurnLatency(
                                now.saturating_duration_since(t),
                            )));
                    }
                }
            }
            self.actions
                .push_back(Action::Send(CarrierCommand::Media(piece)));
            r.sent += n;
            r.since_mark += n;
            if r.since_mark >= cfg.mark_every || r.queue.is_empty() {
                r.mark_seq += 1;
                let name = format!("g{}m{}", r.gen, r.mark_seq);
                r.marks.push_back((name.clone(), r.sent));
                r.since_mark = 0;
                self.actions
                    .push_back(Action::Send(CarrierCommand::Mark(name)));
            }
        }
    }

    fn check_finished(&mut self) {
        if !self.reply.as_ref().is_some_and(Reply::finished) {
            return;
        }
        if let Some(r) = self.reply.take() {
            let total = samples_ms(r.sent);
            self.record_bot(r.text, total, total, false);
        }
        self.barge.reset();
        self.state = self.idle_state();
    }

    /// Listening, or CallerSpeaking if the caller is mid-utterance.
    fn idle_state(&self) -> TurnState {
        if self.vad.in_speech() {
            TurnState::CallerSpeaking
        } else {
            TurnState::Listening
        }
    }

    fn end(&mut self, reason: HangupReason) {
        if self.state == TurnState::Ended {
            return;
        }
        self.drop_reply(false);
        self.state = TurnState::Ended;
        self.transcript_deadline = None;
        self.media_deadline = None;
        self.actions.push_back(Action::Hangup(reason));
    }
}
