//! Virtual-time tests of the call core, driven by the simulator.

use super::conversation::Event;
use super::core::{HangupReason, Observation, TurnState};
use super::session::{Output, Record};
use super::sim::{CallerAudio, Sim, World};
use crate::carrier::CarrierCommand;
use crate::config::{CallConfig, VadConfig};

fn vad() -> VadConfig {
    VadConfig {
        start_ms: 200,
        end_ms: 500,
        barge_in_min_ms: 300,
        ..VadConfig::default()
    }
}

fn no_greeting() -> CallConfig {
    CallConfig {
        greeting: String::new(),
        ..CallConfig::default()
    }
}

/// Distinct states in order.
fn states(sim: &Sim) -> Vec<TurnState> {
    let mut v: Vec<TurnState> = sim.log.states.iter().map(|(_, s)| *s).collect();
    v.dedup();
    v
}

#[test]
fn turns_go_greeting_listening_speaking_thinking_replying() {
    let caller = CallerAudio::default().noise(3000);
    let speech_start = caller.at_ms();
    let caller = caller.say("demo_request.wav");
    let speech_end = caller.at_ms();
    let caller = caller.noise(6000);
    let mut sim = Sim::new(vad(), CallConfig::default(), World::default(), caller);
    sim.run_until(14_000);

    assert_eq!(
        states(&sim),
        vec![
            TurnState::Greeting,
            TurnState::Listening,
            TurnState::CallerSpeaking,
            TurnState::Thinking,
            TurnState::BotSpeaking,
            TurnState::Listening
        ]
    );
    // The greeting played whole before the caller spoke.
    let replies = sim.replies_started();
    assert_eq!(replies.len(), 2, "greeting + one reply: {replies:?}");
    // No bot audio while the caller was speaking.
    let link = sim.world.link_ms;
    assert_eq!(
        sim.media_between(speech_start + link, speech_end + link + 500),
        0
    );
    // The reply came after end_ms of silence, then STT + LLM + TTS.
    let (reply_at, _) = replies[1];
    assert!(
        reply_at >= speech_end + 500,
        "reply requested at {reply_at}, speech ended {speech_end}"
    );
    let lat = sim.observed(|o| matches!(o, Observation::TurnLatency(_)));
    assert_eq!(lat.len(), 1);
    let Some((_, Observation::TurnLatency(d))) = sim
        .log
        .obs
        .iter()
        .find(|(_, o)| matches!(o, Observation::TurnLatency(_)))
    else {
        unreachable!()
    };
    // end window 500 + stt 100 + llm 200 + tts 150 (+ a frame of VAD granularity)
    let ms = d.as_millis() as u64;
    assert!((950..=1000).contains(&ms), "turn latency {ms} ms");
    // The same turn stage by stage: the end-of-turn window, then each
    // provider's latency, adding up to the whole.
    let falls: Vec<_> = sim
        .log
        .obs
        .iter()
        .filter_map(|(_, o)| match o {
            Observation::Waterfall(w) => Some(*w),
            _ => None,
        })
        .collect();
    assert_eq!(
        falls.len(),
        1,
        "one answered turn (the greeting answers nothing)"
    );
    let w = falls[0];
    let near = |v: u32, want: u32| v.abs_diff(want) <= 25;
    assert!(near(w.end_of_turn_ms, 500), "{w:?}");
    assert!(near(w.stt_ms, 100), "{w:?}");
    assert!(near(w.first_token_ms, 200), "{w:?}");
    assert!(near(w.tts_ms, 150), "{w:?}");
    assert_eq!(u64::from(w.total_ms), ms, "{w:?}");
    // Both replies were played out in full: 2 × 2 s of audio, nothing cleared.
    assert_eq!(sim.media_ms(), 4000);
    assert!(sim.clears().is_empty());
    assert_eq!(sim.caller_turns(), vec!["I'd like to book a demo"]);
    let bot = sim.bot_turns();
    assert_eq!(bot.len(), 2, "greeting and reply");
    assert!(bot.iter().all(|t| t.heard_ms == 2000 && !t.interrupted));
}

/// Caller audio: pricing question, then `gap_ms` of noise into the reply, then `interruption`.
fn interrupted(interruption: &str, gap_ms: u64) -> (Sim, u64) {
    interrupted_with(interruption, gap_ms, no_greeting())
}

fn interrupted_with(interruption: &str, gap_ms: u64, call: CallConfig) -> (Sim, u64) {
    let caller = CallerAudio::default().noise(500).say("pricing.wav");
    // Reply audio starts ≈ end 500 + 450 ms of providers after speech end; speak into it.
    let caller = caller.noise(950 + gap_ms);
    let onset = caller.at_ms();
    let caller = caller.say(interruption).noise(4000);
    let mut sim = Sim::new(vad(), call, World::default(), caller);
    sim.run_until(14_000);
    (sim, onset)
}

#[test]
fn caller_interruption_clears_and_stops_the_reply() {
    let (sim, onset) = interrupted("existing_customer.wav", 700);
    let clears = sim.clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let clear = clears[0];
    // The onset frame reaches the server at onset + 20 ms capture + link; the
    // clear follows barge_in_min_ms (300) of voiced audio, give or take the
    // frame or two webrtc-vad needs to lock on.
    let arrive = onset + 20 + sim.world.link_ms;
    assert!(
        clear >= arrive + 260 && clear <= arrive + 340,
        "clear at {clear}, onset arrived {arrive}"
    );
    let bi = sim.observed(|o| matches!(o, Observation::BargeIn(d) if d.as_millis() <= 300));
    assert_eq!(bi, vec![clear]);
    // The reply's generation was cancelled in the same step, and no audio of it followed.
    let (_, first_gen) = sim.replies_started()[0];
    assert!(sim
        .log
        .actions
        .iter()
        .any(|(t, a)| *t == clear && *a == Output::CancelReply { gen: first_gen }));
    let next_reply = sim
        .replies_started()
        .get(1)
        .map(|r| r.0)
        .unwrap_or(u64::MAX);
    assert_eq!(
        sim.media_between(clear, next_reply),
        0,
        "no bot audio after the clear"
    );
    // What the caller heard is bounded by confirmed marks: some, not all.
    let first = sim
        .bot_turns()
        .into_iter()
        .find(|t| t.interrupted)
        .expect("an interrupted turn");
    assert!(first.heard_ms > 0 && first.heard_ms < 2000, "{first:?}");
    assert!(first.total_ms == 2000);
    // The interruption became the caller's turn and got its own reply.
    assert_eq!(sim.replies_started().len(), 2);
}

#[test]
fn short_burst_and_line_noise_do_not_interrupt() {
    for fx in ["short_burst.wav", "line_noise.wav"] {
        let (sim, _) = interrupted(fx, 500);
        assert!(sim.clears().is_empty(), "{fx} caused a clear");
        assert_eq!(sim.media_ms(), 2000, "{fx}: the whole reply was sent");
        assert_eq!(sim.replies_started().len(), 1, "{fx}: no new turn");
        assert_eq!(sim.session.state(), TurnState::Listening, "{fx}");
        assert!(sim.bot_turns().iter().all(|t| !t.interrupted));
    }
}

#[test]
fn send_ahead_is_bounded_and_marks_come_every_200ms() {
    for (link, jitter) in [(10, 0), (80, 0), (20, 60)] {
        let caller = CallerAudio::default()
            .noise(500)
            .say("referral.wav")
            .noise(6000);
        let world = World {
            link_ms: link,
            jitter_ms: jitter,
            jitter_every: 3,
            ..World::default()
        };
        let mut sim = Sim::new(vad(), no_greeting(), world, caller);
        sim.run_until(13_000);
        assert_eq!(sim.media_ms(), 2000, "link {link}: reply sent whole");
        let worst = sim
            .log
            .carrier_backlog_ms
            .iter()
            .max()
            .copied()
            .unwrap_or(0);
        assert!(
            worst <= 400,
            "link {link} jitter {jitter}: {worst} ms queued at the carrier"
        );
        let mut since_mark = 0;
        for (_, o) in &sim.log.sent {
            match o {
                CarrierCommand::Media(p) => {
                    since_mark += p.len() / 8;
                    assert!(
                        since_mark <= 200,
                        "more than 200 ms of audio without a mark"
                    );
                }
                CarrierCommand::Mark(_) => since_mark = 0,
                CarrierCommand::Clear => {}
            }
        }
        assert_eq!(since_mark, 0, "the reply ends with a mark");
        assert_eq!(
            sim.session.state(),
            TurnState::Listening,
            "reply finished when its marks came back"
        );
    }
}

#[test]
fn marks_echoed_after_a_clear_are_discarded_not_played() {
    // With the default 400 ms window the pause at speech onset lets the
    // carrier drain before the clear; a wider window leaves marks outstanding.
    let call = CallConfig {
        max_ahead_ms: 1200,
        ..no_greeting()
    };
    let (sim, _) = interrupted_with("existing_customer.wav", 700, call);
    let clear = sim.clears()[0];
    // Marks the server had sent but whose echo it had not received when it
    // cleared. (One played just before the clear whose echo was still in
    // flight counts as discarded too: "heard" is a lower bound.)
    let link = sim.world.link_ms;
    let echoed_before: Vec<&String> = sim
        .log
        .echoed
        .iter()
        .filter(|(t, _)| *t + link < clear)
        .map(|(_, n)| n)
        .collect();
    let sent_marks: Vec<String> = sim
        .log
        .sent
        .iter()
        .filter_map(|(t, o)| match o {
            CarrierCommand::Mark(n) if *t < clear => Some(n.clone()),
            _ => None,
        })
        .collect();
    let pending = sent_marks
        .iter()
        .filter(|m| !echoed_before.contains(m))
        .count();
    assert!(
        pending > 0,
        "the test must clear while marks are outstanding"
    );
    let discarded = sim.observed(|o| *o == Observation::MarkDiscarded);
    assert_eq!(discarded.len(), pending);
    // Heard = the audio before the last mark echoed before the clear, not more.
    let heard = sim
        .bot_turns()
        .iter()
        .find(|t| t.interrupted)
        .map(|t| t.heard_ms);
    let played_marks = sent_marks.len() - pending;
    let mut pos = 0;
    let mut marks_seen = 0;
    let mut heard_expected = 0;
    for (t, o) in &sim.log.sent {
        if *t >= clear {
            break;
        }
        match o {
            CarrierCommand::Media(p) => pos += p.len() as u64 / 8,
            CarrierCommand::Mark(_) => {
                marks_seen += 1;
                if marks_seen == played_marks {
                    heard_expected = pos;
                }
            }
            CarrierCommand::Clear => {}
        }
    }
    assert_eq!(heard, Some(heard_expected));
}

#[test]
fn stop_mid_reply_cancels_and_ends_the_call() {
    let caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(5000);
    let mut sim = Sim::new(vad(), no_greeting(), World::default(), caller);
    sim.run_until(5400);
    assert_eq!(sim.session.state(), TurnState::BotSpeaking);
    sim.stop_at(5400);
    let sent_before = sim.log.sent.len();
    sim.run_until(9000);
    assert_eq!(sim.session.state(), TurnState::Ended);
    assert_eq!(sim.log.sent.len(), sent_before, "nothing sent after stop");
    let (_, gen) = sim.replies_started()[0];
    let tail: Vec<&Output> = sim
        .log
        .actions
        .iter()
        .filter(|(t, _)| *t >= 5400)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        tail,
        vec![
            &Output::CancelReply { gen },
            &Output::Hangup(HangupReason::CarrierStop)
        ]
    );
    assert!(sim.session.poll_timeout().is_none());
    assert_eq!(
        sim.log.records.last().map(|(_, r)| r),
        Some(&Record::Ended(HangupReason::CarrierStop)),
        "the end is on record"
    );
}

#[test]
fn malformed_carrier_input_mid_call_changes_nothing() {
    let build = || {
        let caller = CallerAudio::default()
            .noise(500)
            .say("demo_request.wav")
            .noise(5000);
        Sim::new(vad(), no_greeting(), World::default(), caller)
    };
    let mut clean = build();
    clean.run_until(11_000);
    let mut dirty = build();
    let junk = [
        "{not json",
        r#"{"event":"media","streamSid":"MZsim0001","media":{"payload":"!!!"}}"#,
        r#"{"event":"media","streamSid":"MZsim0001","media":{"payload":"/////"}}"#,
        r#"{"event":"media","streamSid":"MZother","media":{"payload":"AAAA"}}"#,
        r#"{"event":"wobble","streamSid":"MZsim0001"}"#,
        r#"{"event":"mark","streamSid":"MZsim0001","mark":{"name":"never-sent"}}"#,
        r#"{"event":"start","streamSid":"MZsim0001","start":{}}"#,
        "",
    ];
    for (i, j) in junk.iter().enumerate() {
        dirty.inject_text(1000 + i as u64 * 7, j); // mid-utterance
        dirty.inject_text(7600 + i as u64 * 7, j); // mid-reply
    }
    dirty.run_until(11_000);
    assert_eq!(
        dirty.log.sent, clean.log.sent,
        "same audio, marks and timing"
    );
    assert_eq!(dirty.replies_started(), clean.replies_started());
    assert_eq!(dirty.session.state(), TurnState::Listening);
}

#[test]
fn stalled_llm_times_out_and_the_call_listens_again() {
    let caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(14_000);
    let world = World {
        llm_ms: 1_000_000,
        ..World::default()
    };
    let mut sim = Sim::new(vad(), no_greeting(), world, caller);
    sim.run_until(17_000);
    let timeouts = sim.observed(|o| *o == Observation::ReplyTimeout);
    let (asked, gen) = sim.replies_started()[0];
    assert_eq!(timeouts, vec![asked + 8000]);
    assert!(sim
        .log
        .actions
        .contains(&(asked + 8000, Output::CancelReply { gen })));
    assert_eq!(sim.media_ms(), 0);
    assert_eq!(sim.session.state(), TurnState::Listening);
}

#[test]
fn late_transcript_times_out_without_a_reply() {
    let caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(8000);
    let world = World {
        stt_ms: 5000,
        ..World::default()
    };
    let mut sim = Sim::new(vad(), no_greeting(), world, caller);
    sim.run_until(9000);
    assert_eq!(
        sim.observed(|o| *o == Observation::TranscriptTimeout).len(),
        1
    );
    assert!(sim.replies_started().is_empty());
    assert_eq!(sim.session.state(), TurnState::Listening);
}

#[test]
fn caller_who_goes_on_before_the_reply_gets_one_reply_to_both_parts() {
    // A 600 ms pause (> end_ms) then more words, before any reply audio (950 ms).
    let caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(600)
        .say("referral.wav")
        .noise(5000);
    let mut sim = Sim::new(vad(), no_greeting(), World::default(), caller);
    sim.run_until(14_000);
    assert!(sim.clears().is_empty());
    assert_eq!(
        sim.caller_turns(),
        vec!["I'd like to book a demo I'd like to book a demo"],
        "the amended turn replaced the unanswered one on record"
    );
    let reqs = sim.requests();
    let last = reqs.last().map(|r| r.messages.clone()).unwrap_or_default();
    let users: Vec<_> = last
        .iter()
        .filter(|m| m.role == crate::providers::Role::User)
        .collect();
    assert_eq!(users.len(), 1, "the model sees one caller turn, not two");
    assert_eq!(sim.media_ms(), 2000, "exactly one reply was played");
}

#[test]
fn dtmf_is_kept() {
    let caller = CallerAudio::default().noise(2000);
    let mut sim = Sim::new(vad(), no_greeting(), World::default(), caller);
    sim.inject_text(
        300,
        r#"{"event":"dtmf","streamSid":"MZsim0001","dtmf":{"track":"inbound_track","digit":"4"}}"#,
    );
    sim.run_until(1000);
    assert!(sim.events().contains(&Event::Dtmf('4')));
}

#[test]
fn a_long_call_keeps_a_bounded_history() {
    // 100 turns of pricing question + reply.
    let mut caller = CallerAudio::default().noise(500);
    for _ in 0..100 {
        caller = caller.say("pricing.wav").noise(3500);
    }
    let mut sim = Sim::new(vad(), no_greeting(), World::default(), caller);
    sim.run_until(100 * 7200 + 1000);
    assert_eq!(sim.replies_started().len(), 100, "every turn answered");
    let last = sim.requests().pop().unwrap_or_default();
    assert!(
        last.messages.len() <= 33,
        "{} messages sent to the model",
        last.messages.len()
    );
    assert!(last.messages.len() >= 16);
    assert_eq!(sim.caller_turns().len(), 100, "the record keeps every turn");
}

#[test]
fn the_model_sees_only_what_the_caller_heard_of_an_interrupted_reply() {
    use crate::providers::Role;
    let (mut sim, _) = interrupted("existing_customer.wav", 700);
    sim.run_until(15_200); // the second reply has played out
    let cut = sim
        .bot_turns()
        .into_iter()
        .find(|t| t.interrupted)
        .expect("an interrupted turn");
    // The third request answers the interruption; a fourth would follow the
    // second reply. Rebuild what the model would see next from the log.
    let msgs = {
        let mut log = super::conversation::ChatLog::new(super::sim::SYSTEM, 32);
        for e in sim.events() {
            match e {
                Event::CallerSaid {
                    text,
                    amends_previous,
                } => log.caller(&text, amends_previous),
                Event::BotTurnEnded(t) => log.receptionist(&t.heard),
                _ => {}
            }
        }
        log.messages()
    };
    let sent = sim.requests();
    assert_eq!(
        sent.last().map(|r| r.messages.clone()),
        Some(msgs[..4].to_vec()),
        "the second request carried the cut reply"
    );
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    let heard = msgs[2].content.clone().unwrap_or_default();
    let full = "Sure, I can help.";
    let keep = full.chars().count() as u64 * cut.heard_ms / cut.total_ms;
    assert!(keep > 0 && (keep as usize) < full.len(), "{cut:?}");
    assert_eq!(heard, format!("{}…", &full[..keep as usize]));
    assert_eq!(
        msgs[4].content.as_deref(),
        Some(full),
        "the uninterrupted reply is whole"
    );
}

/// The STT answers peeks (the offline Whisper has no interim words):
/// pricing question, then `gap_ms` into the reply, then `interruption`
/// (fixtures, in order, back to back), with the peek hearing `words`.
fn peeked(interruption: &[&str], gap_ms: u64, words: &str) -> (Sim, u64) {
    peeked_with(interruption, gap_ms, words, World::default())
}

fn peeked_with(interruption: &[&str], gap_ms: u64, words: &str, world: World) -> (Sim, u64) {
    let mut caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(950 + gap_ms);
    let onset = caller.at_ms();
    for f in interruption {
        caller = caller.say(f);
    }
    let caller = caller.noise(4000);
    let world = World {
        peek_words: Some(words.into()),
        ..world
    };
    let mut sim = Sim::new(vad(), no_greeting(), world, caller);
    sim.run_until(14_000);
    (sim, onset)
}

fn peeks(sim: &Sim) -> Vec<u64> {
    sim.log
        .actions
        .iter()
        .filter(|(_, a)| *a == Output::PeekWords)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn an_uh_huh_during_the_reply_does_not_interrupt_it() {
    // "uh-huh, uh-huh": long enough (≈0.8 s) that the words are asked for.
    let (sim, _) = peeked(
        &["backchannel.wav", "backchannel.wav"],
        300,
        "Uh-huh, uh-huh.",
    );
    assert_eq!(peeks(&sim).len(), 1, "the sound's words were asked for");
    assert!(sim.clears().is_empty(), "a backchannel cleared the reply");
    assert_eq!(sim.media_ms(), 2000, "the whole reply was heard");
    assert_eq!(sim.replies_started().len(), 1, "no new turn");
    assert!(sim
        .bot_turns()
        .iter()
        .all(|t| !t.interrupted && t.heard_ms == 2000));
    assert!(sim.caller_turns().len() == 1, "{:?}", sim.caller_turns());
    // The STT was told to forget the backchannel's audio.
    assert!(sim
        .log
        .actions
        .iter()
        .any(|(_, a)| *a == Output::ForgetAudio));
    assert_eq!(sim.session.state(), TurnState::Listening);
}

#[test]
fn coughs_and_line_noise_do_not_interrupt_an_offline_call_either() {
    for fx in ["short_burst.wav", "line_noise.wav"] {
        let (sim, _) = peeked(&[fx], 500, "");
        assert!(sim.clears().is_empty(), "{fx} caused a clear");
        assert_eq!(sim.media_ms(), 2000, "{fx}: the whole reply was sent");
        assert_eq!(sim.replies_started().len(), 1, "{fx}: no new turn");
    }
}

#[test]
fn a_real_interruption_clears_within_a_frame_of_its_words() {
    let (sim, _) = peeked(
        &["existing_customer.wav"],
        700,
        "Hi, I'm already a customer",
    );
    let asked = peeks(&sim);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let words_at = asked[0] + sim.world.peek_ms;
    let clears = sim.clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let clear = clears[0];
    assert!(
        clear >= words_at && clear <= words_at + 20,
        "clear at {clear}, the words came at {words_at}"
    );
    // No frame of the cancelled reply reached the carrier after the clear.
    let next_reply = sim
        .replies_started()
        .get(1)
        .map(|r| r.0)
        .unwrap_or(u64::MAX);
    assert_eq!(sim.media_between(clear, next_reply), 0);
    let cut = sim
        .bot_turns()
        .into_iter()
        .find(|t| t.interrupted)
        .expect("cut off");
    assert!(cut.heard_ms < 2000, "{cut:?}");
    // The interruption is the caller's next turn, and gets its reply.
    assert_eq!(sim.replies_started().len(), 2);
}

#[test]
fn a_caller_who_keeps_talking_without_words_interrupts_when_the_peek_answers() {
    let (sim, _) = peeked(&["existing_customer.wav"], 700, "");
    let asked = peeks(&sim);
    let clears = sim.clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let answered = asked[0] + sim.world.peek_ms;
    assert!(
        clears[0] >= answered && clears[0] <= answered + 20,
        "clear at {}, the empty peek answered at {answered}",
        clears[0]
    );
    assert_eq!(sim.replies_started().len(), 2, "and the caller got a reply");
}

#[test]
fn a_slow_peek_interrupts_at_the_word_wait_bound() {
    let slow = World {
        peek_ms: 3000,
        ..World::default()
    };
    let (sim, onset) = peeked_with(&["existing_customer.wav"], 700, "Hi", slow);
    let clears = sim.clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    // Not before barge_in_min_ms + barge_in_word_wait_ms of voice (a pause
    // between the caller's phrases starts the count again), and long
    // before the 3-second decode.
    let v = vad();
    let bound = u64::from(v.barge_in_min_ms + v.barge_in_word_wait_ms);
    let arrive = onset + 20 + sim.world.link_ms;
    assert!(
        clears[0] + 40 >= arrive + bound && clears[0] < peeks(&sim)[0] + 3000,
        "clear at {}, onset arrived {arrive}",
        clears[0]
    );
}

#[test]
fn words_that_come_after_their_sound_ended_still_interrupt() {
    // "Hi," — a pause — and on: the peek of the first sound answers after
    // that sound was let go.
    let caller = CallerAudio::default()
        .noise(500)
        .say("pricing.wav")
        .noise(950 + 300)
        .say("backchannel.wav")
        .noise(300)
        .say("existing_customer.wav")
        .noise(4000);
    let world = World {
        peek_words: Some("Hi.".into()),
        peek_ms: 400,
        ..World::default()
    };
    let mut sim = Sim::new(vad(), no_greeting(), world, caller);
    sim.run_until(14_000);
    let asked = peeks(&sim);
    let clears = sim.clears();
    assert_eq!(clears.len(), 1, "{clears:?}");
    let forgot = sim
        .log
        .actions
        .iter()
        .find(|(_, a)| *a == Output::ForgetAudio)
        .map(|(t, _)| *t)
        .expect("the first sound was let go");
    assert!(
        forgot < asked[0] + 400,
        "let go at {forgot}, answered at {}",
        asked[0] + 400
    );
    assert_eq!(clears[0], asked[0] + 400, "interrupted when its words came");
}
