//! One emulated call, sans-IO: the scenario cursor, the drift-free media
//! clock, the carrier playout and the accounting.
//!
//! ## Drive contract
//!
//! - After connecting, and after every input, drain
//!   [`Caller::poll_transmit`] until it returns `None`; each `Some` wrote one
//!   complete text message into `out` (send it as one WebSocket text frame).
//! - Feed every server frame to [`Caller::handle_text`] /
//!   [`Caller::handle_binary`] with its arrival time.
//! - Sleep until [`Caller::poll_timeout`] (or a frame arrives), then drain
//!   again. After [`Sent::Stop`] the call is over: close the socket.
//!
//! Media frame `k` is due at `t0 + k·20 ms` regardless of when earlier frames
//! went out; if the driver wakes late, every overdue frame is sent at once and
//! counted as generator lag when more than 5 ms late.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use tokio::time::Instant;

use super::metrics::CallMetrics;
use super::scenario::{Scenario, Step};
use super::wire::{self, CallIds, ServerMessage};
use crate::carrier::playout::{Playout, PlayoutEvent, FRAME};
use crate::loadtest::clip::Clip;

/// Per-call timing knobs.
#[derive(Debug, Clone, Copy)]
pub struct CallerConfig {
    /// Carrier jitter-buffer delay before a reply starts playing.
    pub jitter: Duration,
    /// Silence after the playout drains that ends a reply.
    pub reply_gap: Duration,
    /// Default turn timeout (no reply → missed turn).
    pub turn_timeout: Duration,
    /// No `clear` this long after an interruption starts → missed barge-in.
    pub barge_timeout: Duration,
}

/// What one `poll_transmit` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// `connected` or `start`.
    Control,
    /// A caller `media` frame.
    Media,
    /// A `mark` echo.
    Mark,
    /// `stop`: the call is over.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connected,
    Start,
    Streaming,
    Stopped,
}

/// Where the last utterance's turn stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// No utterance yet, or one in progress.
    Idle,
    /// Utterance ended, no reply yet.
    Awaiting,
    /// The reply is playing.
    Replying,
    /// Reply finished, or missed.
    Done,
}

#[derive(Debug)]
enum Cursor {
    Silence {
        left: u32,
    },
    Say {
        clip: Arc<Clip>,
        pos: usize,
        interrupting: bool,
    },
    WaitReply {
        timeout: Duration,
        armed: bool,
    },
    Interrupt {
        clip: Arc<Clip>,
        after: Duration,
    },
    /// Past the last step: line noise until the call ends.
    End,
}

enum Frame {
    Noise,
    Speech(usize),
}

/// One emulated call.
#[derive(Debug)]
pub struct Caller {
    ids: CallIds,
    scenario: Arc<Scenario>,
    media_prefix: Box<[u8]>,
    t0: Instant,
    end_at: Instant,
    phase: Phase,
    seq: u64,
    frame_k: u64,
    noise_pos: usize,
    step: usize,
    cursor: Cursor,
    turn: Turn,
    playout: Playout,
    metrics: CallMetrics,
    marks_out: VecDeque<String>,
    scratch: Vec<u8>,
}

impl Caller {
    /// A call whose stream starts at `t0` (frame 0 is due then) and sends
    /// `stop` at `end_at`.
    pub fn new(
        ids: CallIds,
        scenario: Arc<Scenario>,
        cfg: CallerConfig,
        t0: Instant,
        end_at: Instant,
    ) -> Self {
        let media_prefix = wire::media_prefix(&ids.stream_sid);
        let mut c = Self {
            ids,
            scenario,
            media_prefix,
            t0,
            end_at,
            phase: Phase::Connected,
            seq: 0,
            frame_k: 0,
            noise_pos: 0,
            step: 0,
            cursor: Cursor::End,
            turn: Turn::Idle,
            playout: Playout::new(cfg.jitter, cfg.reply_gap),
            metrics: CallMetrics::new(cfg.turn_timeout, cfg.barge_timeout),
            marks_out: VecDeque::new(),
            scratch: Vec::with_capacity(4096),
        };
        c.enter_step(0);
        c
    }

    /// This call's identifiers.
    pub fn ids(&self) -> &CallIds {
        &self.ids
    }

    /// The accounting so far.
    pub fn metrics(&self) -> &CallMetrics {
        &self.metrics
    }

    /// The accounting, consuming the call.
    pub fn into_metrics(self) -> CallMetrics {
        self.metrics
    }

    /// `stop` has been written.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Write the next due message into `out`.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> Option<Sent> {
        match self.phase {
            Phase::Connected => {
                wire::write_connected(out);
                self.phase = Phase::Start;
                return Some(Sent::Control);
            }
            Phase::Start => {
                let seq = self.next_seq();
                wire::write_start(out, &self.ids, seq);
                self.phase = Phase::Streaming;
                return Some(Sent::Control);
            }
            Phase::Stopped => return None,
            Phase::Streaming => {}
        }
        self.advance(now);
        if let Some(name) = self.marks_out.pop_front() {
            let seq = self.next_seq();
            wire::write_mark(out, &self.ids, seq, &name);
            self.metrics.mark_echoed();
            return Some(Sent::Mark);
        }
        if now >= self.end_at {
            let seq = self.next_seq();
            wire::write_stop(out, &self.ids, seq);
            self.phase = Phase::Stopped;
            return Some(Sent::Stop);
        }
        let due = self.frame_due();
        if due > now {
            return None;
        }
        let frame = self.next_frame(now);
        let seq = self.next_seq();
        let k = self.frame_k;
        let payload = match frame {
            Frame::Noise => {
                self.noise_pos += 1;
                self.scenario.noise.frame(self.noise_pos - 1)
            }
            Frame::Speech(i) => match &self.cursor {
                Cursor::Say { clip, .. } => clip.frame(i),
                // next_frame returns Speech only while the cursor is a Say.
                _ => self.scenario.noise.frame(self.noise_pos),
            },
        };
        wire::write_media(out, &self.media_prefix, seq, k + 1, k * 20, payload);
        self.metrics.frame_sent(due, now);
        self.frame_k += 1;
        Some(Sent::Media)
    }

    fn frame_due(&self) -> Instant {
        self.t0 + FRAME * (self.frame_k.min(u64::from(u32::MAX)) as u32)
    }

    /// When to wake next (`None` once stopped).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Stopped {
            return None;
        }
        let mut t = self.frame_due().min(self.end_at);
        if let Some(p) = self.playout.poll_timeout() {
            t = t.min(p);
        }
        if let Some(m) = self.metrics.poll_timeout() {
            t = t.min(m);
        }
        Some(t)
    }

    /// Process playout and accounting deadlines up to `now`.
    fn advance(&mut self, now: Instant) {
        while let Some(ev) = self.playout.poll_event(now) {
            match ev {
                PlayoutEvent::MarkPlayed(name) => self.marks_out.push_back(name),
                PlayoutEvent::ReplyEnded(summary) => {
                    self.metrics.reply_ended(&summary);
                    if self.turn == Turn::Replying {
                        self.turn = Turn::Done;
                    }
                }
            }
        }
        if self.metrics.handle_timeout(now).missed_turn && self.turn == Turn::Awaiting {
            self.turn = Turn::Done;
        }
    }

    fn enter_step(&mut self, i: usize) {
        self.step = i;
        self.cursor = match self.scenario.steps.get(i) {
            None => Cursor::End,
            Some(Step::Silence { frames }) => Cursor::Silence { left: *frames },
            Some(Step::Say(clip)) => Cursor::Say {
                clip: clip.clone(),
                pos: 0,
                interrupting: false,
            },
            Some(Step::WaitReply { timeout }) => Cursor::WaitReply {
                timeout: *timeout,
                armed: false,
            },
            Some(Step::Interrupt { clip, after }) => Cursor::Interrupt {
                clip: clip.clone(),
                after: *after,
            },
            // Validated: a repeating scenario sends audio, so this terminates.
            Some(Step::Repeat) => {
                return self.enter_step(0);
            }
        };
    }

    /// Choose the frame to send at `now`, moving through the scenario.
    fn next_frame(&mut self, now: Instant) -> Frame {
        // Each pass either returns or enters another step; bound the passes
        // so a scenario of only waits cannot spin.
        for _ in 0..=self.scenario.steps.len() * 2 + 2 {
            let mut next: Option<Cursor> = None;
            match &mut self.cursor {
                Cursor::Silence { left } if *left > 0 => {
                    *left -= 1;
                    return Frame::Noise;
                }
                Cursor::Say {
                    clip,
                    pos,
                    interrupting,
                } if *pos < clip.len() => {
                    let i = *pos;
                    if i == 0 {
                        self.metrics.utterance_started(now, *interrupting);
                        self.turn = Turn::Idle;
                    }
                    *pos += 1;
                    if *pos == clip.len() {
                        self.metrics.utterance_ended(now);
                        self.metrics.label_turn(clip.name().into());
                        self.turn = Turn::Awaiting;
                    }
                    return Frame::Speech(i);
                }
                Cursor::WaitReply { timeout, armed } => {
                    if !*armed {
                        self.metrics.set_turn_timeout(*timeout);
                        *armed = true;
                        // The new deadline may already have passed.
                        if self.metrics.handle_timeout(now).missed_turn
                            && self.turn == Turn::Awaiting
                        {
                            self.turn = Turn::Done;
                        }
                    }
                    if matches!(self.turn, Turn::Awaiting | Turn::Replying) {
                        return Frame::Noise;
                    }
                }
                Cursor::Interrupt { clip, after } => match self.turn {
                    Turn::Replying
                        if self
                            .playout
                            .playing_for(now)
                            .is_some_and(|played| played >= *after) =>
                    {
                        next = Some(Cursor::Say {
                            clip: clip.clone(),
                            pos: 0,
                            interrupting: true,
                        });
                    }
                    Turn::Awaiting | Turn::Replying => return Frame::Noise,
                    Turn::Idle | Turn::Done => {
                        self.metrics.interrupts_skipped += 1;
                        next = Some(Cursor::Say {
                            clip: clip.clone(),
                            pos: 0,
                            interrupting: false,
                        });
                    }
                },
                Cursor::End => return Frame::Noise,
                // A finished silence or utterance.
                Cursor::Silence { .. } | Cursor::Say { .. } => {}
            }
            match next {
                Some(c) => self.cursor = c,
                None => self.enter_step(self.step + 1),
            }
        }
        Frame::Noise
    }

    /// A text frame from the server arrived at `now`.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        let msg: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.protocol.bad_json += 1;
                return;
            }
        };
        if msg.stream_sid.as_deref() != Some(self.ids.stream_sid.as_str()) {
            self.metrics.protocol.wrong_stream_sid += 1;
            return;
        }
        match &*msg.event {
            "media" => {
                let Some(media) = msg.media else {
                    self.metrics.protocol.bad_json += 1;
                    return;
                };
                let b64 = media.payload.as_bytes();
                self.scratch.resize(b64.len() / 4 * 3 + 3, 0);
                let n = match base64::engine::general_purpose::STANDARD
                    .decode_slice(b64, &mut self.scratch)
                {
                    Ok(n) => n,
                    Err(_) => {
                        self.metrics.protocol.bad_base64 += 1;
                        return;
                    }
                };
                let outcome = self.playout.push_media(now, n);
                if self.metrics.media_received(now, outcome) && self.turn == Turn::Awaiting {
                    self.turn = Turn::Replying;
                }
            }
            "mark" => match msg.mark {
                Some(mark) => self.playout.push_mark(now, mark.name.into_owned()),
                None => self.metrics.protocol.bad_json += 1,
            },
            "clear" => {
                self.playout.clear(now);
                self.metrics.clear_received(now);
            }
            _ => self.metrics.protocol.unknown_event += 1,
        }
    }

    /// A binary frame arrived (Twilio rejects those).
    pub fn handle_binary(&mut self) {
        self.metrics.protocol.binary_frame += 1;
    }
}

#[cfg(test)]
mod tests {
    //! The whole caller against a scripted server, in virtual time.
    use super::*;
    use crate::loadtest::scenario::Scenario;
    use std::path::Path;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> CallerConfig {
        CallerConfig {
            jitter: ms(40),
            reply_gap: ms(300),
            turn_timeout: ms(5000),
            barge_timeout: ms(2000),
        }
    }

    /// A scenario of silence and a 10-frame utterance, built without files.
    fn scenario(steps: Vec<Step>) -> Arc<Scenario> {
        let mut s = match Scenario::load(
            "t",
            "steps = [{ silence = 20 }]",
            Path::new("/x"),
            Path::new("/x"),
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        s.steps = steps;
        Arc::new(s)
    }

    fn utterance(frames: usize) -> Arc<Clip> {
        Arc::new(Clip::from_pcm("u", &vec![8000i16; frames * 160]))
    }

    fn ids() -> CallIds {
        CallIds {
            stream_sid: "MZ1".into(),
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+1".into(),
            to: "+2".into(),
        }
    }

    /// Drain; return parsed messages.
    fn drain(c: &mut Caller, now: Instant) -> Vec<serde_json::Value> {
        let mut out = BytesMut::new();
        let mut v = Vec::new();
        while c.poll_transmit(now, &mut out).is_some() {
            v.push(serde_json::from_slice(&out.split()).unwrap_or(serde_json::Value::Null));
        }
        v
    }

    /// Drain at every deadline up to `t`, then set `now` to `t`.
    fn run_until(c: &mut Caller, now: &mut Instant, t: Instant) {
        while let Some(d) = c.poll_timeout().filter(|d| *d <= t) {
            *now = d;
            drain(c, d);
        }
        *now = t;
    }

    fn media_msg(frames: usize) -> String {
        let p = base64::engine::general_purpose::STANDARD.encode(vec![0xFFu8; frames * 160]);
        format!(r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{p}"}}}}"#)
    }

    #[test]
    fn turn_with_reply_mark_and_barge_in_in_virtual_time() {
        let t0 = Instant::now();
        let sc = scenario(vec![
            Step::Silence { frames: 2 },
            Step::Say(utterance(10)),
            Step::Interrupt {
                clip: utterance(20),
                after: ms(100),
            },
            Step::WaitReply { timeout: ms(1000) },
        ]);
        let mut c = Caller::new(ids(), sc, cfg(), t0, t0 + ms(10_000));
        let msgs = drain(&mut c, t0);
        assert_eq!(msgs[0]["event"], "connected");
        assert_eq!(msgs[1]["event"], "start");
        assert_eq!(msgs[2]["media"]["timestamp"], "0");
        assert_eq!(msgs.len(), 3);
        // Frames 1..=11 (2 silence + 10 speech ends at frame 11, t0+220).
        let mut now = t0;
        for _ in 0..11 {
            now = c.poll_timeout().unwrap_or(now);
            assert_eq!(drain(&mut c, now).len(), 1);
        }
        assert_eq!(now, t0 + ms(220));
        assert!(c.metrics().awaiting_turn());
        // Reply 300 ms later: 50 frames, then a mark.
        let r = t0 + ms(520);
        run_until(&mut c, &mut now, r);
        c.handle_text(r, &media_msg(50));
        c.handle_text(
            r,
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"end"}}"#,
        );
        assert_eq!(c.metrics().turn_latency_us, vec![300_000]);
        // Playout starts at r+40; the interruption begins at the first frame
        // due at or after r+140.
        let mut first_interrupt = None;
        while first_interrupt.is_none() {
            now = c.poll_timeout().unwrap_or(now);
            drain(&mut c, now);
            if c.metrics().barge_ins == 1 {
                first_interrupt = Some(now);
            }
        }
        assert_eq!(first_interrupt, Some(t0 + ms(660)));
        // Server clears 230 ms later: the pending mark is echoed at once.
        let cl = t0 + ms(890);
        run_until(&mut c, &mut now, cl);
        c.handle_text(cl, r#"{"event":"clear","streamSid":"MZ1"}"#);
        let echoed = drain(&mut c, cl);
        assert_eq!(echoed[0]["event"], "mark");
        assert_eq!(echoed[0]["mark"]["name"], "end");
        assert_eq!(c.metrics().barge_in_latency_us, vec![230_000]);
        // A stray bot frame while the caller still talks is a violation.
        c.handle_text(cl + ms(5), &media_msg(1));
        assert_eq!(c.metrics().media_after_clear, 1);
        // No reply to the interruption within the wait_reply timeout.
        while c.metrics().missed_turns == 0 && now < t0 + ms(5000) {
            now = c.poll_timeout().unwrap_or(now);
            drain(&mut c, now);
        }
        // The 20-frame interruption ends at t0+1040; timeout 1 s later.
        assert_eq!(now, t0 + ms(2040));
        let m = c.metrics();
        assert_eq!(
            (
                m.missed_turns,
                m.missed_barge_ins,
                m.lagged_frames,
                m.marks_echoed
            ),
            (1, 0, 0, 1)
        );
        assert_eq!(m.protocol.total(), 0);
    }

    #[test]
    fn stop_at_end_and_lag_and_protocol_errors() {
        let t0 = Instant::now();
        let sc = scenario(vec![Step::Silence { frames: 1 }, Step::Repeat]);
        let mut c = Caller::new(ids(), sc, cfg(), t0, t0 + ms(100));
        drain(&mut c, t0);
        // The driver wakes 50 ms late: frames 1 and 2 go out at once; frame
        // 1 (30 ms late) and 2 (10 ms late) count as lag, not 3 (due t0+60).
        let msgs = drain(&mut c, t0 + ms(50));
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1]["media"]["chunk"], "3");
        assert_eq!(c.metrics().lagged_frames, 2);
        for bad in [
            "not json",
            r#"{"event":"media","streamSid":"MZ2","media":{"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"!!"}}"#,
            r#"{"event":"media","streamSid":"MZ1"}"#,
            r#"{"event":"speak","streamSid":"MZ1"}"#,
        ] {
            c.handle_text(t0 + ms(50), bad);
        }
        c.handle_binary();
        let p = c.metrics().protocol;
        assert_eq!(
            (
                p.bad_json,
                p.wrong_stream_sid,
                p.bad_base64,
                p.unknown_event,
                p.binary_frame
            ),
            (2, 1, 1, 1, 1)
        );
        let msgs = drain(&mut c, t0 + ms(100));
        assert_eq!(msgs.last().map(|m| m["event"].clone()), Some("stop".into()));
        assert!(c.is_stopped());
        assert_eq!(c.poll_timeout(), None);
    }
}
