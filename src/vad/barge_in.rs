//! The barge-in policy: is caller sound during bot speech an interruption?
//!
//! At the first voiced frame while the bot speaks the policy says
//! [`BargeInDecision::Pause`]: stop sending *new* bot audio (what the carrier
//! already holds keeps playing, at most `call.max_ahead_ms`). Then either
//!
//! * the sound stops first (a cough, a click, line noise, a short "yeah") →
//!   [`BargeInDecision::Resume`]: playback goes on where it paused, and the
//!   sound is forgotten; or
//! * words of the sound arrive: only backchannel words ("uh-huh", "yeah",
//!   "ok", "mm") → `Resume` and the rest of that sound is ignored; any other
//!   word → [`BargeInDecision::Interrupt`] at once (the core sends `clear`
//!   and cancels the reply); or
//! * the caller keeps talking for `barge_in_min_ms` with no words yet. With
//!   a streaming STT that sends interim words (Deepgram) that is an
//!   interruption. With one that only transcribes on request (the offline
//!   Whisper), the policy says [`BargeInDecision::Peek`] — decode the sound
//!   so far — and waits for its words: a backchannel resumes, other words or
//!   none at all while the caller is still talking interrupt, and a decode
//!   slower than `barge_in_word_wait_ms` interrupts anyway. (The core holds
//!   new bot audio from the peek on, not from the first voiced frame: the
//!   carrier's buffered audio covers the decode, so a backchannel leaves no
//!   gap in the bot's speech.)
//!
//! A backchannel that goes on past [`VETO_MAX_MS`] is judged afresh: the
//! caller who says "yeah, yeah, but what about…" is heard.
//!
//! The policy counts frames, not time, so it is deterministic.

/// What the core should do with the bot's speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeInDecision {
    /// Keep going as before.
    Nothing,
    /// Hold new bot audio: the caller may be interrupting.
    Pause,
    /// False alarm: send bot audio again.
    Resume,
    /// A real interruption: clear the carrier's audio and stop the reply.
    Interrupt,
    /// Still pending: ask the STT for the words of the sound so far (they
    /// come back through [`BargeIn::on_words`]).
    Peek,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Pending {
        voiced_ms: u32,
        gap_ms: u32,
        peeked: bool,
    },
    /// A backchannel: ignore this sound until it stops (or runs too long).
    Vetoed {
        voiced_ms: u32,
        gap_ms: u32,
    },
    /// Interrupt was decided; nothing more until [`BargeIn::reset`].
    Interrupted,
}

/// Silence this long ends a pending interruption (or a vetoed sound).
const GAP_MS: u32 = 60;

/// A backchannel longer than this (of voiced audio) is judged again.
pub const VETO_MAX_MS: u32 = 1200;

/// The policy for one call. Feed it frames only while the bot is speaking and
/// call [`BargeIn::reset`] when the bot stops or after an interruption.
#[derive(Debug, Clone)]
pub struct BargeIn {
    min_ms: u32,
    /// `Some`: the STT gives words only when asked; wait this long for them.
    word_wait_ms: Option<u32>,
    state: State,
}

impl BargeIn {
    /// Interrupt after `min_ms` of caller speech (the STT sends interim
    /// words by itself).
    pub fn new(min_ms: u32) -> Self {
        BargeIn {
            min_ms,
            word_wait_ms: None,
            state: State::Idle,
        }
    }

    /// After `min_ms` of caller speech, [`BargeInDecision::Peek`] and wait up
    /// to `wait_ms` more for the words before interrupting (an STT that
    /// transcribes only when asked).
    pub fn with_word_wait(min_ms: u32, wait_ms: u32) -> Self {
        BargeIn {
            min_ms,
            word_wait_ms: Some(wait_ms),
            state: State::Idle,
        }
    }

    /// True between `Pause` and the matching `Resume`/`Interrupt`.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::Pending { .. })
    }

    /// Forget everything (the bot stopped speaking).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// One 20 ms frame of caller audio while the bot speaks.
    pub fn on_frame(&mut self, voiced: bool) -> BargeInDecision {
        match (self.state, voiced) {
            (State::Idle, false) => BargeInDecision::Nothing,
            (State::Interrupted, _) => BargeInDecision::Nothing,
            (State::Idle, true) => {
                self.state = State::Pending {
                    voiced_ms: 0,
                    gap_ms: 0,
                    peeked: false,
                };
                match self.voiced() {
                    BargeInDecision::Nothing => BargeInDecision::Pause,
                    d => d,
                }
            }
            (State::Pending { .. }, true) => self.voiced(),
            (
                State::Pending {
                    voiced_ms,
                    gap_ms,
                    peeked,
                },
                false,
            ) => {
                let gap_ms = gap_ms + 20;
                if gap_ms > GAP_MS {
                    self.state = State::Idle;
                    BargeInDecision::Resume
                } else {
                    self.state = State::Pending {
                        voiced_ms,
                        gap_ms,
                        peeked,
                    };
                    BargeInDecision::Nothing
                }
            }
            (State::Vetoed { voiced_ms, .. }, true) => {
                let voiced_ms = voiced_ms + 20;
                if voiced_ms > VETO_MAX_MS {
                    // Not a backchannel any more: judge what follows afresh.
                    self.state = State::Idle;
                    return self.on_frame(true);
                }
                self.state = State::Vetoed {
                    voiced_ms,
                    gap_ms: 0,
                };
                BargeInDecision::Nothing
            }
            (State::Vetoed { voiced_ms, gap_ms }, false) => {
                let gap_ms = gap_ms + 20;
                if gap_ms > GAP_MS {
                    // The backchannel is over: forget it.
                    self.state = State::Idle;
                    BargeInDecision::Resume
                } else {
                    self.state = State::Vetoed { voiced_ms, gap_ms };
                    BargeInDecision::Nothing
                }
            }
        }
    }

    /// A voiced frame while pending.
    fn voiced(&mut self) -> BargeInDecision {
        let State::Pending {
            voiced_ms, peeked, ..
        } = self.state
        else {
            return BargeInDecision::Nothing;
        };
        let voiced_ms = voiced_ms + 20;
        let (decision, peeked) = match self.word_wait_ms {
            None if voiced_ms >= self.min_ms => (BargeInDecision::Interrupt, peeked),
            None => (BargeInDecision::Nothing, peeked),
            Some(wait) if voiced_ms >= self.min_ms.saturating_add(wait) => {
                (BargeInDecision::Interrupt, peeked)
            }
            Some(_) if voiced_ms >= self.min_ms && !peeked => (BargeInDecision::Peek, true),
            Some(_) => (BargeInDecision::Nothing, peeked),
        };
        self.state = if decision == BargeInDecision::Interrupt {
            State::Interrupted
        } else {
            State::Pending {
                voiced_ms,
                gap_ms: 0,
                peeked,
            }
        };
        decision
    }

    /// The words of an earlier sound, which was already let go: words that
    /// are not a backchannel interrupt (the caller said "Hi," and paused
    /// before going on); a backchannel or no words decide nothing.
    pub fn on_late_words(&mut self, text: &str) -> BargeInDecision {
        if self.state == State::Interrupted || !has_words(text) || is_backchannel(text) {
            return BargeInDecision::Nothing;
        }
        self.state = State::Interrupted;
        BargeInDecision::Interrupt
    }

    /// An interim transcript of the sound that caused the pause.
    pub fn on_words(&mut self, text: &str) -> BargeInDecision {
        let State::Pending { voiced_ms, .. } = self.state else {
            return BargeInDecision::Nothing;
        };
        if !has_words(text) {
            // The sound goes on but holds no words (a hum, the television):
            // with a streaming STT wait for its next interim; a peek's answer
            // is all there will be, so it is an interruption, as it would
            // have been at `min_ms` without the peek.
            if self.word_wait_ms.is_none() {
                return BargeInDecision::Nothing;
            }
            self.state = State::Interrupted;
            return BargeInDecision::Interrupt;
        }
        if is_backchannel(text) {
            self.state = State::Vetoed {
                voiced_ms,
                gap_ms: 0,
            };
            BargeInDecision::Resume
        } else {
            self.state = State::Interrupted;
            BargeInDecision::Interrupt
        }
    }
}

/// Whether a transcript holds any word (bracketed non-speech such as
/// `[BLANK_AUDIO]` or `(coughs)` is none).
fn has_words(text: &str) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            c if depth <= 0 && c.is_alphanumeric() => return true,
            _ => {}
        }
    }
    false
}

/// Words a listener says to show they are following, not to take the turn.
pub fn is_backchannel(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "yeah", "yep", "yup", "yes", "ok", "okay", "right", "alright", "all", "sure", "aha", "ah",
        "oh", "i", "see", "got", "it", "gotcha", "cool",
    ];
    let mut any = false;
    for w in text.split(|c: char| c.is_whitespace() || ",.!?;:…".contains(c)) {
        let w: String = w
            .chars()
            .filter(|c| !matches!(c, '-' | '\'' | '’'))
            .flat_map(char::to_lowercase)
            .collect();
        if w.is_empty() {
            continue;
        }
        any = true;
        // Hums: "mm", "hmm", "mhm", "mm-hmm", "uh-huh", "uh".
        let hum = w.chars().all(|c| matches!(c, 'm' | 'h' | 'u'));
        if !hum && !WORDS.contains(&w.as_str()) {
            return false;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use BargeInDecision::*;

    fn feed(b: &mut BargeIn, pattern: &[(bool, usize)]) -> Vec<BargeInDecision> {
        let mut out = vec![];
        for &(v, n) in pattern {
            for _ in 0..n {
                let d = b.on_frame(v);
                if d != Nothing {
                    out.push(d);
                }
            }
        }
        out
    }

    #[test]
    fn long_speech_interrupts_after_min_ms() {
        let mut b = BargeIn::new(200);
        let mut decisions = vec![];
        for i in 0..15 {
            let d = b.on_frame(true);
            if d != Nothing {
                decisions.push((i, d));
            }
        }
        assert_eq!(decisions, vec![(0, Pause), (9, Interrupt)]);
    }

    #[test]
    fn short_burst_pauses_then_resumes() {
        let mut b = BargeIn::new(200);
        assert_eq!(feed(&mut b, &[(true, 5), (false, 10)]), vec![Pause, Resume]);
    }

    #[test]
    fn brief_gaps_inside_speech_do_not_resume() {
        let mut b = BargeIn::new(200);
        let d = feed(
            &mut b,
            &[(true, 4), (false, 2), (true, 4), (false, 1), (true, 3)],
        );
        assert_eq!(d, vec![Pause, Interrupt]);
    }

    #[test]
    fn backchannel_words_veto_the_interruption() {
        let mut b = BargeIn::new(400);
        assert_eq!(feed(&mut b, &[(true, 5)]), vec![Pause]);
        assert_eq!(b.on_words("Uh-huh."), Resume);
        // The rest of that sound does not interrupt, and its end is the
        // end of the backchannel.
        assert_eq!(feed(&mut b, &[(true, 30), (false, 4)]), vec![Resume]);
        // A new sound is judged afresh.
        assert_eq!(feed(&mut b, &[(true, 1)]), vec![Pause]);
        assert_eq!(b.on_words("wait, actually"), Interrupt);
    }

    #[test]
    fn backchannel_words() {
        for t in [
            "uh-huh",
            "Yeah.",
            "ok",
            "mm",
            "okay, right",
            "I see",
            "Mm-hmm.",
            "Uh huh",
            "Mhm.",
            "All right.",
            "Got it.",
        ] {
            assert!(is_backchannel(t), "{t}");
        }
        for t in [
            "",
            "stop",
            "yeah but no",
            "what about Tuesday",
            "Wait.",
            "no",
        ] {
            assert!(!is_backchannel(t), "{t}");
        }
    }

    #[test]
    fn without_interim_words_it_peeks_then_waits_for_them() {
        let mut b = BargeIn::with_word_wait(300, 600);
        let mut decisions = vec![];
        for i in 0..60 {
            let d = b.on_frame(true);
            if d != Nothing {
                decisions.push((i, d));
            }
        }
        // Pause at once, Peek at 300 ms, Interrupt at 900 ms with no words.
        assert_eq!(decisions, vec![(0, Pause), (14, Peek), (44, Interrupt)]);
    }

    #[test]
    fn peeked_words_decide() {
        let mut b = BargeIn::with_word_wait(300, 600);
        assert_eq!(feed(&mut b, &[(true, 20)]), vec![Pause, Peek]);
        assert_eq!(b.on_words("Mm-hmm."), Resume);
        assert_eq!(feed(&mut b, &[(true, 10), (false, 4)]), vec![Resume]);

        assert_eq!(feed(&mut b, &[(true, 20)]), vec![Pause, Peek]);
        assert_eq!(b.on_words("Wait, sorry"), Interrupt);
        assert_eq!(feed(&mut b, &[(true, 50)]), vec![]);
        b.reset();

        // Still talking, and the peek found no words: an interruption.
        assert_eq!(feed(&mut b, &[(true, 20)]), vec![Pause, Peek]);
        assert_eq!(b.on_words("[BLANK_AUDIO]"), Interrupt);
    }

    #[test]
    fn a_streaming_stt_without_words_yet_keeps_waiting() {
        let mut b = BargeIn::new(400);
        assert_eq!(feed(&mut b, &[(true, 5)]), vec![Pause]);
        assert_eq!(b.on_words(""), Nothing);
        assert_eq!(feed(&mut b, &[(true, 15)]), vec![Interrupt]);
    }

    #[test]
    fn a_backchannel_that_goes_on_is_judged_again() {
        let mut b = BargeIn::with_word_wait(300, 600);
        assert_eq!(feed(&mut b, &[(true, 15)]), vec![Pause, Peek]);
        assert_eq!(b.on_words("yeah"), Resume);
        let d = feed(&mut b, &[(true, 80)]);
        assert_eq!(d, vec![Pause, Peek], "{d:?}");
    }

    #[test]
    fn words_of_an_earlier_sound_are_ignored() {
        let mut b = BargeIn::with_word_wait(300, 600);
        assert_eq!(
            feed(&mut b, &[(true, 15), (false, 4)]),
            vec![Pause, Peek, Resume]
        );
        assert_eq!(b.on_words("stop"), Nothing);
        // (The core hands such words to on_late_words: real words still
        // interrupt, a backchannel does not.)
        assert_eq!(b.on_late_words("uh-huh"), Nothing);
        assert_eq!(feed(&mut b, &[(true, 3)]), vec![Pause]);
        assert_eq!(b.on_late_words("Mm-hmm"), Nothing);
        assert_eq!(b.on_late_words("Hi."), Interrupt);
    }
}
