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
//! transcript is in, reports the utterance ([`CoreEvent::Utterance`]). What
//! to answer is not the core's business: its owner (the
//! [`Session`](super::Session)) asks the conversation and calls
//! [`CallCore::start_reply`]. If the caller speaks again before any reply
//! audio is out, the pending reply is cancelled and the new words join the
//! same turn (the next utterance says it `amends_previous`).
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
//! surface as [`CoreEvent::ToolCall`] only from the current generation (those
//! of a cancelled one are dropped with its other output); the session runs
//! them outside the cancellable reply task.
//!
//! # Events
//!
//! Besides [`Action`]s for the driver, the core reports what happened to the
//! conversation as [`CoreEvent`]s ([`CallCore::poll_event`]): utterances,
//! bot turns played or cut off (with what was heard), failed replies, tool
//! calls, DTMF and the end of the call.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::audio::{FRAME_SAMPLES, PHONE_RATE};
use crate::carrier::CarrierCommand;
use crate::config::{CallConfig, VadConfig};
use crate::providers::{LlmRequest, ProviderError, SttEvent, ToolCall};
use crate::vad::{BargeIn, BargeInDecision, VadEvent, VoiceDetector};

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnState {
    /// The bot speaks unprompted (the greeting, news from a tool): the
    /// caller can cut in as during a reply.
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

/// What a reply speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyInput {
    /// This text as it is (no model).
    Say(String),
    /// What the model answers to this request.
    Generate(LlmRequest),
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
    /// The carrier's socket went away without `stop`.
    Disconnected,
    /// The conversation is over and hung up.
    Completed,
    /// The conversation handed the caller to people.
    HandOff,
    /// The server is shutting down.
    Drained,
    /// The call's task failed (a bug): recorded, never decided by the core.
    Failed,
}

/// What happened, for the conversation (drain with [`CallCore::poll_event`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// The caller finished a turn. `amends_previous`: the reply to their
    /// previous turn was dropped unheard, and `text` repeats that turn's
    /// words before the new ones.
    Utterance {
        /// What they said.
        text: String,
        /// Replaces the previous turn.
        amends_previous: bool,
    },
    /// A reply with audio ended: played out, or cut off.
    BotTurnEnded(TurnRecord),
    /// A reply ended without any audio reaching the caller (failure, timeout).
    ReplyFailed,
    /// The current generation asked for a tool.
    ToolCall(ToolCall),
    /// A keypad digit.
    Dtmf(char),
    /// The call ended.
    Ended(HangupReason),
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
    /// Where one turn's time went, from the caller's last word to the
    /// first frame of the answer.
    Waterfall(Waterfall),
}

/// One turn's latency, stage by stage (milliseconds; a stage the turn did
/// not pass through, e.g. text for a pre-synthesised phrase, is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Waterfall {
    /// Last voiced frame → our VAD's end of utterance (the end-of-turn window).
    pub end_of_turn_ms: u32,
    /// End of utterance → the final transcript.
    pub stt_ms: u32,
    /// Final transcript → the conversation started the reply (the brain's decision).
    pub decide_ms: u32,
    /// Reply started → its first text (the LLM's first token; 0 for said text).
    pub first_token_ms: u32,
    /// First text (or reply start) → the first synthesised audio.
    pub tts_ms: u32,
    /// First audio → the first frame sent to the carrier.
    pub send_ms: u32,
    /// Last voiced frame → first frame sent: the whole turn.
    pub total_ms: u32,
}

/// Instants of the turn being answered.
#[derive(Debug, Clone, Copy, Default)]
struct TurnClock {
    last_voiced: Option<Instant>,
    vad_end: Option<Instant>,
    stt_final: Option<Instant>,
    reply_start: Option<Instant>,
    first_text: Option<Instant>,
    first_audio: Option<Instant>,
}

fn ms_between(a: Option<Instant>, b: Option<Instant>) -> u32 {
    match (a, b) {
        (Some(a), Some(b)) => b
            .saturating_duration_since(a)
            .as_millis()
            .min(u32::MAX as u128) as u32,
        _ => 0,
    }
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
        /// What to speak.
        input: ReplyInput,
    },
    /// Stop generation `gen` (LLM and TTS) at once.
    CancelReply {
        /// The generation to stop.
        gen: u64,
    },
    /// Ask the STT for the words of the caller's sound so far, as an
    /// interim transcript, without ending the utterance (an STT with no
    /// interim results of its own).
    PeekWords,
    /// The caller's sound while the bot spoke was not an interruption (a
    /// cough, line noise, a backchannel): the STT forgets the audio it holds.
    ForgetAudio,
    /// Count this.
    Observe(Observation),
    /// End the call.
    Hangup(HangupReason),
}

/// One bot turn, as it actually happened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnRecord {
    /// What the bot meant to say.
    pub bot: String,
    /// The share of it the caller heard, by confirmed marks (all of it
    /// unless interrupted; then cut in proportion and ending in "…").
    pub heard: String,
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
    /// The STT sends interim words by itself (Deepgram). `false` (the
    /// offline Whisper): the core asks for the words of a possible
    /// interruption with [`Action::PeekWords`] and waits
    /// `vad.barge_in_word_wait_ms` for them.
    pub stt_interims: bool,
}

impl CoreConfig {
    /// From the validated config sections.
    pub fn new(vad: &VadConfig, call: &CallConfig) -> Self {
        let ms = |v: u32| v as usize * PHONE_RATE as usize / 1000;
        CoreConfig {
            vad: vad.clone(),
            mark_every: ms(call.mark_every_ms),
            max_ahead: ms(call.max_ahead_ms),
            chunk: ms(call.chunk_ms),
            transcript_timeout: Duration::from_millis(call.transcript_timeout_ms),
            reply_timeout: Duration::from_millis(call.reply_timeout_ms),
            media_timeout: Duration::from_millis(call.media_timeout_ms),
            stt_interims: true,
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
    /// The caller turn this reply answers, while none of it has been heard:
    /// if the reply is dropped unheard, those words go back into the turn.
    answers: Option<String>,
}

impl Reply {
    fn new(gen: u64, now: Instant, answers: Option<String>) -> Self {
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
            answers,
        }
    }

    fn finished(&self) -> bool {
        self.audio_done && self.queue.is_empty() && self.confirmed == self.sent
    }
}

/// Queued events at most: a conversation that never drains cannot grow it.
const MAX_EVENTS: usize = 256;

/// Marks cleared but not yet echoed; bounded so a carrier that never echoes cannot grow it.
const MAX_DISCARDED_MARKS: usize = 64;

/// One call's conversation state. See the module docs for the drive contract.
#[derive(Debug)]
pub struct CallCore {
    cfg: CoreConfig,
    vad: VoiceDetector,
    barge: BargeIn,
    /// Peeks asked for whose words have not come back.
    peeks_in_flight: u32,
    /// Of those, the ones whose sound was already decided: their words are
    /// ignored when they come.
    stale_peeks: u32,
    partial: Vec<i16>,
    state: TurnState,
    started: bool,
    next_gen: u64,
    reply: Option<Reply>,
    discarded_marks: VecDeque<String>,
    caller_text: String,
    finals_pending: u32,
    last_voiced_at: Option<Instant>,
    turn_clock: TurnClock,
    barge_onset_at: Option<Instant>,
    transcript_deadline: Option<Instant>,
    media_deadline: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<CoreEvent>,
    /// The last utterance reported, until a reply to it starts.
    last_utterance: Option<String>,
    /// The next utterance repeats an unheard one's words.
    amends: bool,
    /// An utterance was reported and no reply to it has started yet.
    awaiting_answer: bool,
}

fn samples_ms(samples: usize) -> u64 {
    (samples as u64 * 1000) / PHONE_RATE as u64
}

impl CallCore {
    /// The caller's turn ends after `ms` of silence from now on (`None`:
    /// `[vad] end_ms`): the conversation asks for longer while the caller
    /// reads out a number or spells something.
    pub fn set_end_of_turn_ms(&mut self, ms: Option<u32>) {
        self.vad
            .set_end_ms(ms.unwrap_or(self.cfg.vad.end_ms).clamp(20, 10_000));
    }
}

impl CallCore {
    /// A core waiting for the stream's `start`.
    pub fn new(cfg: CoreConfig) -> Self {
        CallCore {
            vad: VoiceDetector::new(&cfg.vad),
            barge: if cfg.stt_interims {
                BargeIn::new(cfg.vad.barge_in_min_ms)
            } else {
                BargeIn::with_word_wait(cfg.vad.barge_in_min_ms, cfg.vad.barge_in_word_wait_ms)
            },
            peeks_in_flight: 0,
            stale_peeks: 0,
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
            turn_clock: TurnClock::default(),
            barge_onset_at: None,
            transcript_deadline: None,
            media_deadline: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            last_utterance: None,
            amends: false,
            awaiting_answer: false,
        }
    }

    /// Where the conversation is.
    pub fn state(&self) -> TurnState {
        self.state
    }

    /// The next event for the conversation, if any. Drain after every input
    /// (before the actions: answering an event adds actions).
    pub fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    /// Whether a new reply can start now without talking over anyone: no
    /// reply is in progress and the caller is not mid-turn (listening, or
    /// thinking about an utterance already reported).
    pub fn can_speak(&self) -> bool {
        self.started
            && self.reply.is_none()
            && match self.state {
                TurnState::Listening => true,
                TurnState::Thinking => self.awaiting_answer,
                _ => false,
            }
    }

    /// Start a reply now (the conversation's answer, or something it says
    /// unprompted). Returns its generation. Call only when
    /// [`CallCore::can_speak`]; otherwise the reply is not started and `None`
    /// is returned.
    pub fn start_reply(&mut self, input: ReplyInput, now: Instant) -> Option<u64> {
        if !self.can_speak() {
            return None;
        }
        let answers = if self.awaiting_answer {
            self.last_utterance.take()
        } else {
            None
        };
        self.awaiting_answer = false;
        if self.state == TurnState::Listening {
            self.state = TurnState::Greeting;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        self.reply = Some(Reply::new(gen, now, answers));
        if self.turn_clock.stt_final.is_some() && self.turn_clock.reply_start.is_none() {
            self.turn_clock.reply_start = Some(now);
        }
        self.barge.reset();
        self.actions.push_back(Action::StartReply { gen, input });
        Some(gen)
    }

    /// A reply is in progress (generating or playing).
    pub fn is_replying(&self) -> bool {
        self.reply.is_some()
    }

    /// Events are waiting for [`CallCore::poll_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// End the call for `reason` (the conversation hung up or handed off, or
    /// the server is draining). Idempotent.
    pub fn hang_up(&mut self, reason: HangupReason) {
        self.end(reason);
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

    /// The stream started: listen (the conversation decides whether to greet).
    pub fn handle_start(&mut self, now: Instant) {
        if self.started || self.state == TurnState::Ended {
            return;
        }
        self.started = true;
        self.media_deadline = Some(now + self.cfg.media_timeout);
        self.state = TurnState::Listening;
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
        if self.started && self.state != TurnState::Ended {
            self.event(CoreEvent::Dtmf(digit));
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
                if !self.cfg.stt_interims {
                    // The words of a peek: only the latest one's count.
                    self.peeks_in_flight = self.peeks_in_flight.saturating_sub(1);
                    if self.stale_peeks > 0 {
                        self.stale_peeks -= 1;
                        // Words of a sound already let go ("Hi," before a
                        // pause): real words still mean the caller is
                        // taking the turn; a backchannel decides nothing.
                        if matches!(self.state, TurnState::Greeting | TurnState::BotSpeaking) {
                            let d = self.barge.on_late_words(&text);
                            self.apply_barge(d, now);
                        }
                        return;
                    }
                }
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
                    && !self.awaiting_answer
                    && self.finals_pending == 0
                {
                    self.transcript_deadline = None;
                    self.turn_clock.stt_final = Some(now);
                    self.utterance_complete();
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
            ReplyEvent::Text(t) => {
                r.text.push_str(&t);
                if self.turn_clock.reply_start.is_some() && self.turn_clock.first_text.is_none() {
                    self.turn_clock.first_text = Some(now);
                }
            }
            ReplyEvent::Audio(pcm) => {
                if pcm.is_empty() {
                    return;
                }
                if self.turn_clock.reply_start.is_some() && self.turn_clock.first_audio.is_none() {
                    self.turn_clock.first_audio = Some(now);
                }
                r.queue.extend(pcm);
                r.underrun_counted = false;
                if self.state == TurnState::Thinking {
                    self.state = TurnState::BotSpeaking;
                }
                self.pump(now);
            }
            ReplyEvent::ToolCall(call) => self.event(CoreEvent::ToolCall(call)),
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
                    self.drop_reply(false);
                    self.event(CoreEvent::ReplyFailed);
                    self.state = self.idle_state();
                    return;
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
            if self.state == TurnState::Thinking && self.reply.is_none() && !self.awaiting_answer {
                self.turn_clock.stt_final = Some(now);
                self.utterance_complete();
            }
        }
        let timed_out = self.reply.as_ref().is_some_and(|r| {
            r.first_audio_at.is_none() && now >= r.requested_at + self.cfg.reply_timeout
        });
        if timed_out {
            self.actions
                .push_back(Action::Observe(Observation::ReplyTimeout));
            self.drop_reply(false);
            self.event(CoreEvent::ReplyFailed);
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
                self.awaiting_answer = false;
                self.state = TurnState::CallerSpeaking;
            }
            (TurnState::CallerSpeaking, Some(VadEvent::SpeechEnded { .. })) => {
                self.state = TurnState::Thinking;
                self.turn_clock = TurnClock {
                    last_voiced: self.last_voiced_at,
                    vad_end: Some(now),
                    ..TurnClock::default()
                };
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
            // With peeks, new audio is held from the peek on: the carrier's
            // buffer covers the decode, so a backchannel leaves no gap.
            BargeInDecision::Pause if !self.cfg.stt_interims => {}
            BargeInDecision::Pause => {
                if let Some(r) = self.reply.as_mut() {
                    r.paused = true;
                }
            }
            BargeInDecision::Peek => {
                if let Some(r) = self.reply.as_mut() {
                    r.paused = true;
                }
                self.peeks_in_flight += 1;
                self.actions.push_back(Action::PeekWords);
            }
            BargeInDecision::Resume => {
                self.settle_peeks();
                self.actions.push_back(Action::ForgetAudio);
                if let Some(r) = self.reply.as_mut() {
                    r.paused = false;
                }
                self.pump(now);
            }
            BargeInDecision::Interrupt => {
                self.settle_peeks();
                self.interrupt(now);
            }
        }
    }

    /// The sound being judged is decided: words still to come from its
    /// peeks are about it, not about the next one.
    fn settle_peeks(&mut self) {
        self.stale_peeks = self.peeks_in_flight;
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

    /// Cancel the current reply, reporting what was heard. `cleared`: a
    /// `clear` was sent, so the marks still pending will come back discarded.
    /// A reply cancelled before any of its audio went out leaves the caller's
    /// words unanswered: they go back into the turn being built, and the next
    /// utterance amends the previous one.
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
            self.bot_turn_ended(r.text, samples_ms(r.confirmed), total, cleared);
        } else if let Some(words) = r.answers {
            let mut words = words;
            if !self.caller_text.is_empty() {
                words.push(' ');
                words.push_str(&self.caller_text);
            }
            self.caller_text = words;
            self.amends = true;
        }
    }

    /// The caller's turn is complete: report it, or go back to listening if
    /// there were no words.
    fn utterance_complete(&mut self) {
        if self.caller_text.is_empty() {
            // Sound, but no words: keep listening.
            self.state = TurnState::Listening;
            return;
        }
        let text = std::mem::take(&mut self.caller_text);
        self.last_utterance = Some(text.clone());
        self.awaiting_answer = true;
        let amends_previous = std::mem::take(&mut self.amends);
        self.event(CoreEvent::Utterance {
            text,
            amends_previous,
        });
    }

    fn event(&mut self, ev: CoreEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    /// Report a bot turn that reached the caller, cut to what they heard.
    fn bot_turn_ended(&mut self, bot: String, heard_ms: u64, total_ms: u64, interrupted: bool) {
        let heard = if interrupted && total_ms > 0 {
            let keep = (bot.chars().count() as u64 * heard_ms.min(total_ms) / total_ms) as usize;
            let mut s: String = bot.chars().take(keep).collect();
            s.push('…');
            s
        } else {
            bot.clone()
        };
        self.event(CoreEvent::BotTurnEnded(TurnRecord {
            bot,
            heard,
            heard_ms,
            total_ms,
            interrupted,
        }));
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
                    let c = std::mem::take(&mut self.turn_clock);
                    if c.reply_start.is_some() {
                        let first_in = c.first_text.or(c.reply_start);
                        self.actions
                            .push_back(Action::Observe(Observation::Waterfall(Waterfall {
                                end_of_turn_ms: ms_between(c.last_voiced, c.vad_end),
                                stt_ms: ms_between(c.vad_end, c.stt_final),
                                decide_ms: ms_between(c.stt_final, c.reply_start),
                                first_token_ms: ms_between(c.reply_start, c.first_text),
                                tts_ms: ms_between(first_in, c.first_audio),
                                send_ms: ms_between(c.first_audio, Some(now)),
                                total_ms: ms_between(c.last_voiced, Some(now)),
                            })));
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
            self.bot_turn_ended(r.text, total, total, false);
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
        self.awaiting_answer = false;
        self.event(CoreEvent::Ended(reason));
        self.actions.push_back(Action::Hangup(reason));
    }
}
