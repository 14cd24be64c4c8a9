//! The barge-in policy: is caller sound during bot speech an interruption?
//!
//! At the first voiced frame while the bot speaks the policy says
//! [`BargeInDecision::Pause`]: stop sending *new* bot audio (what the carrier
//! already holds keeps playing, at most `call.max_ahead_ms`). Then either
//!
//! * the caller keeps talking for `barge_in_min_ms` → [`BargeInDecision::Interrupt`]
//!   (the core sends `clear` and cancels the reply), or
//! * the sound stops first (a cough, a click, line noise) → [`BargeInDecision::Resume`], or
//! * an interim transcript arrives: only backchannel words ("uh-huh", "yeah",
//!   "ok", "mm") → `Resume` and the rest of that sound is ignored; any other
//!   word → `Interrupt` at once.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Pending {
        voiced_ms: u32,
        gap_ms: u32,
    },
    /// A backchannel: ignore this sound until it stops.
    Vetoed {
        gap_ms: u32,
    },
    /// Interrupt was decided; nothing more until [`BargeIn::reset`].
    Interrupted,
}

/// Silence this long ends a pending interruption (or a vetoed sound).
const GAP_MS: u32 = 60;

/// The policy for one call. Feed it frames only while the bot is speaking and
/// call [`BargeIn::reset`] when the bot stops or after an interruption.
#[derive(Debug, Clone)]
pub struct BargeIn {
    min_ms: u32,
    state: State,
}

impl BargeIn {
    /// Interrupt after `min_ms` of caller speech.
    pub fn new(min_ms: u32) -> Self {
        BargeIn {
            min_ms,
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
                if 20 >= self.min_ms {
                    self.state = State::Interrupted;
                    return BargeInDecision::Interrupt;
                }
                self.state = State::Pending {
                    voiced_ms: 20,
                    gap_ms: 0,
                };
                BargeInDecision::Pause
            }
            (State::Pending { voiced_ms, .. }, true) => {
                let voiced_ms = voiced_ms + 20;
                if voiced_ms >= self.min_ms {
                    self.state = State::Interrupted;
                    BargeInDecision::Interrupt
                } else {
                    self.state = State::Pending {
                        voiced_ms,
                        gap_ms: 0,
                    };
                    BargeInDecision::Nothing
                }
            }
            (State::Pending { voiced_ms, gap_ms }, false) => {
                let gap_ms = gap_ms + 20;
                if gap_ms > GAP_MS {
                    self.state = State::Idle;
                    BargeInDecision::Resume
                } else {
                    self.state = State::Pending { voiced_ms, gap_ms };
                    BargeInDecision::Nothing
                }
            }
            (State::Vetoed { .. }, true) => {
                self.state = State::Vetoed { gap_ms: 0 };
                BargeInDecision::Nothing
            }
            (State::Vetoed { gap_ms }, false) => {
                let gap_ms = gap_ms + 20;
                self.state = if gap_ms > GAP_MS {
                    State::Idle
                } else {
                    State::Vetoed { gap_ms }
                };
                BargeInDecision::Nothing
            }
        }
    }

    /// An interim transcript of the sound that caused the pause.
    pub fn on_words(&mut self, text: &str) -> BargeInDecision {
        if !self.is_pending() || text.trim().is_empty() {
            return BargeInDecision::Nothing;
        }
        if is_backchannel(text) {
            self.state = State::Vetoed { gap_ms: 0 };
            BargeInDecision::Resume
        } else {
            self.state = State::Interrupted;
            BargeInDecision::Interrupt
        }
    }
}

/// Words a listener says to show they are following, not to take the turn.
pub fn is_backchannel(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "uh-huh", "uhhuh", "uh", "huh", "mhm", "mm", "mmm", "hmm", "mm-hmm", "yeah", "yep", "yes",
        "ok", "okay", "right", "sure", "aha", "ah", "oh", "i", "see", "got", "it",
    ];
    let mut any = false;
    for w in text.split(|c: char| c.is_whitespace() || ",.!?;:".contains(c)) {
        if w.is_empty() {
            continue;
        }
        any = true;
        if !WORDS.contains(&w.to_lowercase().as_str()) {
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
        // The rest of that sound does not interrupt, however long.
        assert_eq!(feed(&mut b, &[(true, 30), (false, 4)]), vec![]);
        // A new sound is judged afresh.
        assert_eq!(feed(&mut b, &[(true, 1)]), vec![Pause]);
        assert_eq!(b.on_words("wait, actually"), Interrupt);
    }

    #[test]
    fn backchannel_words() {
        for t in ["uh-huh", "Yeah.", "ok", "mm", "okay, right", "I see"] {
            assert!(is_backchannel(t), "{t}");
        }
        for t in ["", "stop", "yeah but no", "what about Tuesday"] {
            assert!(!is_backchannel(t), "{t}");
        }
    }
}
