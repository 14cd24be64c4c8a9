//! Carrier playout emulation: what Twilio does with the bot's audio. The
//! one emulator the call simulator, the load generator and the tests share.
//!
//! A plain struct driven by `now` (no clock, no IO). Outbound `media`
//! payloads queue into a buffer that plays in real time (8 μ-law bytes per
//! millisecond) from when the first audio of a reply arrives plus a jitter
//! delay. An outbound `mark` is echoed once the audio queued before it has
//! played (at once when nothing is queued); `clear` drops the queue and echoes
//! every pending mark.
//!
//! ## Replies and late frames
//!
//! A *reply* starts with the first audio received while no reply is playing.
//! It ends when its queue has been empty (and no mark pending) for
//! `reply_gap`, or at a `clear`. When the queue runs dry inside a reply the
//! carrier plays silence and resumes as soon as audio arrives: that arriving
//! 20 ms frame came after the playout clock needed it — one *late frame*, an
//! audible gap whose length is added to `gap`.
//!
//! ## Drive contract
//!
//! Feed [`Playout::push_media`], [`Playout::push_mark`], [`Playout::clear`]
//! with the arrival time; then drain [`Playout::poll_event`] until `None`;
//! wake again at [`Playout::poll_timeout`] and drain again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// μ-law bytes per 20 ms frame.
pub const FRAME_BYTES: usize = 160;
/// Duration of one frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Play time of `bytes` μ-law bytes at 8 kHz (125 µs each).
fn play_time(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 * 125)
}

/// What one outbound `media` message did to the playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaOutcome {
    /// 20 ms frames in the payload (a partial frame counts as one).
    pub frames: u32,
    /// Frames that arrived after the playout clock needed them (0 or 1).
    pub late_frames: u32,
    /// Silence the caller heard before this audio (zero unless late).
    pub gap: Duration,
    /// This audio started a new reply.
    pub reply_started: bool,
}

/// Summary of a finished reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplySummary {
    /// Arrival of the reply's first audio.
    pub first_audio: Instant,
    /// When its audio finished playing (or was cleared).
    pub ended: Instant,
    /// Frames received.
    pub frames: u32,
    /// Late frames.
    pub late_frames: u32,
    /// Total audible gap.
    pub gap: Duration,
    /// Ended by `clear`.
    pub cleared: bool,
}

/// Outputs of the playout, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayoutEvent {
    /// Echo this mark to the server now.
    MarkPlayed(String),
    /// The current reply has finished.
    ReplyEnded(ReplySummary),
}

#[derive(Debug)]
struct Reply {
    first_audio: Instant,
    /// Playout clock start: first audio + jitter delay.
    start: Instant,
    /// When everything queued so far will have played.
    queue_end: Instant,
    frames: u32,
    late_frames: u32,
    gap: Duration,
}

/// The carrier's per-call playout buffer.
#[derive(Debug)]
pub struct Playout {
    jitter: Duration,
    reply_gap: Duration,
    reply: Option<Reply>,
    /// Pending marks with the time they fall due (non-decreasing).
    marks: VecDeque<(Instant, String)>,
    events: VecDeque<PlayoutEvent>,
}

impl Playout {
    /// A playout with a jitter-buffer delay and the silence that ends a reply.
    pub fn new(jitter: Duration, reply_gap: Duration) -> Self {
        Self {
            jitter,
            reply_gap,
            reply: None,
            marks: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Queue `bytes` μ-law bytes that arrived at `now`.
    pub fn push_media(&mut self, now: Instant, bytes: usize) -> MediaOutcome {
        self.advance(now);
        let mut outcome = MediaOutcome {
            frames: bytes.div_ceil(FRAME_BYTES) as u32,
            ..MediaOutcome::default()
        };
        if bytes == 0 {
            return outcome;
        }
        let dur = play_time(bytes);
        match &mut self.reply {
            None => {
                let start = now + self.jitter;
                self.reply = Some(Reply {
                    first_audio: now,
                    start,
                    queue_end: start + dur,
                    frames: outcome.frames,
                    late_frames: 0,
                    gap: Duration::ZERO,
                });
                outcome.reply_started = true;
            }
            Some(r) => {
                if r.queue_end >= now {
                    r.queue_end += dur;
                } else {
                    // Starved inside the reply (`advance` ended it if the gap
                    // had reached `reply_gap`): this frame is late.
                    outcome.gap = now - r.queue_end;
                    outcome.late_frames = 1;
                    r.late_frames += 1;
                    r.gap += outcome.gap;
                    r.queue_end = now + dur;
                }
                r.frames += outcome.frames;
            }
        }
        outcome
    }

    /// An outbound `mark` arrived at `now`.
    pub fn push_mark(&mut self, now: Instant, name: String) {
        self.advance(now);
        match &self.reply {
            Some(r) if r.queue_end > now => self.marks.push_back((r.queue_end, name)),
            _ => self.events.push_back(PlayoutEvent::MarkPlayed(name)),
        }
    }

    /// An outbound `clear` arrived at `now`: drop queued audio, echo every
    /// pending mark, end the reply. Returns the number of marks echoed.
    pub fn clear(&mut self, now: Instant) -> usize {
        self.advance(now);
        let n = self.marks.len();
        while let Some((_, name)) = self.marks.pop_front() {
            self.events.push_back(PlayoutEvent::MarkPlayed(name));
        }
        if let Some(r) = self.reply.take() {
            self.events
                .push_back(PlayoutEvent::ReplyEnded(ReplySummary {
                    first_audio: r.first_audio,
                    ended: now.min(r.queue_end),
                    frames: r.frames,
                    late_frames: r.late_frames,
                    gap: r.gap,
                    cleared: true,
                }));
        }
        n
    }

    /// Next output due at `now`.
    pub fn poll_event(&mut self, now: Instant) -> Option<PlayoutEvent> {
        self.advance(now);
        self.events.pop_front()
    }

    /// When [`Playout::poll_event`] next has something (if ever).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some((due, _)) = self.marks.front() {
            return Some(*due);
        }
        self.reply.as_ref().map(|r| r.queue_end + self.reply_gap)
    }

    /// How long the current reply has been playing (zero during the jitter
    /// delay); `None` when no reply is playing.
    pub fn playing_for(&self, now: Instant) -> Option<Duration> {
        self.reply
            .as_ref()
            .map(|r| now.saturating_duration_since(r.start))
    }

    /// Audio queued at the carrier and not yet played at `now`.
    pub fn backlog(&self, now: Instant) -> Duration {
        self.reply.as_ref().map_or(Duration::ZERO, |r| {
            r.queue_end.saturating_duration_since(now)
        })
    }

    /// A reply is queued or playing.
    pub fn is_active(&self) -> bool {
        self.reply.is_some()
    }

    fn advance(&mut self, now: Instant) {
        while let Some((due, _)) = self.marks.front() {
            if *due > now {
                break;
            }
            if let Some((_, name)) = self.marks.pop_front() {
                self.events.push_back(PlayoutEvent::MarkPlayed(name));
            }
        }
        if let Some(r) = &self.reply {
            if self.marks.is_empty() && r.queue_end + self.reply_gap <= now {
                self.events
                    .push_back(PlayoutEvent::ReplyEnded(ReplySummary {
                        first_audio: r.first_audio,
                        ended: r.queue_end,
                        frames: r.frames,
                        late_frames: r.late_frames,
                        gap: r.gap,
                        cleared: false,
                    }));
                self.reply = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(p: &mut Playout, now: Instant) -> Vec<PlayoutEvent> {
        std::iter::from_fn(|| p.poll_event(now)).collect()
    }

    fn mark(n: &str) -> PlayoutEvent {
        PlayoutEvent::MarkPlayed(n.to_string())
    }

    #[test]
    fn mark_is_echoed_after_queued_audio_has_played() {
        let t = Instant::now();
        let mut p = Playout::new(ms(40), ms(500));
        // 5 frames = 100 ms, playing from t+40 to t+140.
        let o = p.push_media(t, 5 * FRAME_BYTES);
        assert!(o.reply_started);
        assert_eq!(o.frames, 5);
        p.push_mark(t, "m1".into());
        assert_eq!(p.poll_timeout(), Some(t + ms(140)));
        assert!(drain(&mut p, t + ms(139)).is_empty());
        assert_eq!(drain(&mut p, t + ms(140)), vec![mark("m1")]);
        assert_eq!(p.playing_for(t + ms(100)), Some(ms(60)));
    }

    #[test]
    fn mark_with_nothing_queued_is_echoed_at_once() {
        let t = Instant::now();
        let mut p = Playout::new(ms(40), ms(500));
        p.push_mark(t, "idle".into());
        assert_eq!(drain(&mut p, t), vec![mark("idle")]);
        // After the audio has played out, a mark is again immediate.
        p.push_media(t, FRAME_BYTES);
        p.push_mark(t + ms(100), "late".into());
        assert_eq!(drain(&mut p, t + ms(100)), vec![mark("late")]);
    }

    #[test]
    fn clear_drops_audio_and_echoes_all_pending_marks() {
        let t = Instant::now();
        let mut p = Playout::new(ms(40), ms(500));
        p.push_media(t, 50 * FRAME_BYTES);
        p.push_mark(t, "a".into());
        p.push_media(t, 50 * FRAME_BYTES);
        p.push_mark(t, "b".into());
        assert!(drain(&mut p, t + ms(300)).is_empty());
        assert_eq!(p.clear(t + ms(300)), 2);
        let ev = drain(&mut p, t + ms(300));
        assert_eq!(ev[..2], [mark("a"), mark("b")]);
        match &ev[2] {
            PlayoutEvent::ReplyEnded(s) => {
                assert!(s.cleared);
                assert_eq!(s.frames, 100);
                assert_eq!(s.ended, t + ms(300));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(!p.is_active());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn starved_queue_counts_one_late_frame_per_gap() {
        let t = Instant::now();
        let mut p = Playout::new(ms(40), ms(500));
        // 10 frames at once: plays t+40..t+240.
        assert_eq!(p.push_media(t, 10 * FRAME_BYTES).late_frames, 0);
        // In time (queue still has audio) — not late.
        assert_eq!(p.push_media(t + ms(200), FRAME_BYTES).late_frames, 0);
        // Queue ends at t+260. Five single frames 100 ms apart: each arrives
        // to an empty queue.
        for i in 0..5u64 {
            let o = p.push_media(t + ms(300 + 100 * i), FRAME_BYTES);
            assert_eq!(o.late_frames, 1, "frame {i}");
            let want = if i == 0 { ms(40) } else { ms(80) };
            assert_eq!(o.gap, want, "gap {i}");
        }
        // A burst 100 ms later: only its first frame is late.
        let o = p.push_media(t + ms(800), 10 * FRAME_BYTES);
        assert_eq!((o.frames, o.late_frames), (10, 1));
        // It plays to t+1000; the reply ends 500 ms after that.
        assert!(drain(&mut p, t + ms(1499)).is_empty());
        match drain(&mut p, t + ms(1500)).as_slice() {
            [PlayoutEvent::ReplyEnded(s)] => {
                assert_eq!((s.frames, s.late_frames), (26, 6));
                assert_eq!(s.gap, ms(40 + 4 * 80 + 80));
                assert_eq!(s.ended, t + ms(1000));
                assert!(!s.cleared);
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn audio_after_a_long_silence_starts_a_new_reply_not_a_late_frame() {
        let t = Instant::now();
        let mut p = Playout::new(ms(40), ms(500));
        p.push_media(t, FRAME_BYTES); // ends t+60
        let o = p.push_media(t + ms(700), FRAME_BYTES);
        assert!(o.reply_started);
        assert_eq!(o.late_frames, 0);
        assert!(matches!(
            p.poll_event(t + ms(700)),
            Some(PlayoutEvent::ReplyEnded(_))
        ));
    }

    #[test]
    fn pending_mark_holds_the_reply_open() {
        let t = Instant::now();
        let mut p = Playout::new(Duration::ZERO, ms(100));
        p.push_media(t, FRAME_BYTES); // ends t+20
        p.push_mark(t, "m".into());
        assert_eq!(p.poll_timeout(), Some(t + ms(20)));
        assert_eq!(drain(&mut p, t + ms(20)), vec![mark("m")]);
        assert_eq!(p.poll_timeout(), Some(t + ms(120)));
        assert!(matches!(
            drain(&mut p, t + ms(120)).as_slice(),
            [PlayoutEvent::ReplyEnded(_)]
        ));
    }
}
