//! The rules brain's decision time per caller turn: from a caller's words
//! to the directives it answers with (extraction, redaction, tiering, the
//! reply), without the tool jobs (those run outside the turn). Prints
//! p50/p99/max over many whole scripted calls.
//!
//! `cargo bench --bench brain`

use std::time::{Duration, Instant};

use frontdesk::brain::actions::{CallContext, Offer};
use frontdesk::brain::phrases::{Knowledge, Phrases};
use frontdesk::brain::rules::{RulesBrains, RulesSettings};
use frontdesk::call::conversation::{CallInfo, ConversationFactory, Directive, Event};
use frontdesk::call::tools::ToolOutcome;
use frontdesk::config::brain::TiersConfig;
use frontdesk::pii::Pii;

const CALLS: &[&[&str]] = &[
    &[
        "Hi, I'd like to book a demo of your booking tool",
        "Jane Doe",
        "it's just the five of us in one office",
        "Friday morning, any time after ten",
        "the first one please",
        "yes that's great",
        "it's j dot doe at example dot co dot uk",
        "no that's everything, thanks",
    ],
    &[
        "Oh hello, sorry, the dog is barking, it's been raining all week here, anyway we're looking for a quote for about twelve staff across three sites, I'm Bob Marley by the way",
        "yes this number is fine",
        "no thanks",
    ],
    &[
        "how much does your appointment booking cost? my card is 4111 1111 1111 1111",
        "no thanks, that's all",
        "bye",
    ],
    &["I got a letter about something and I'm not sure who I should talk to"],
    &["please take me off your list and don't call me again"],
];

fn outcome_for(job: &frontdesk::call::ToolJob, now: chrono::DateTime<chrono::Utc>) -> ToolOutcome {
    let result = match job.name.as_str() {
        "lookup_contact" => serde_json::to_value(CallContext {
            now,
            ..CallContext::default()
        })
        .unwrap_or_default(),
        "find_slots" => {
            let slot = |h: u32| Offer {
                owner: "alex".into(),
                owner_name: "Alex Morgan".into(),
                start: now + chrono::Duration::hours(i64::from(h)),
                end: now + chrono::Duration::hours(i64::from(h)) + chrono::Duration::minutes(30),
                spoken: format!("Friday at {h} am"),
            };
            serde_json::json!({"slots": [slot(10), slot(11)], "exact": true})
        }
        "hold_slot" => serde_json::json!({"hold_id": "h1"}),
        "take_callback" => serde_json::json!({"due": now}),
        _ => serde_json::json!({}),
    };
    ToolOutcome {
        id: job.id.clone(),
        name: job.name.clone(),
        ok: true,
        result,
    }
}

fn main() {
    let brains = RulesBrains::new(RulesSettings {
        business: "Frontdesk Demo Co".into(),
        phrases: Phrases::embedded(),
        knowledge: Knowledge::embedded(),
        tiers: TiersConfig::default(),
        business_tz: chrono_tz::Europe::London,
        region: phonenumber::country::Id::GB,
        slot_end_ms: 1200,
        always_recorded: false,
    });
    let wall = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let rounds = std::env::var("BRAIN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000usize);
    let mut times: Vec<Duration> = Vec::with_capacity(rounds * 20);
    let t0 = Instant::now();
    for r in 0..rounds {
        let script = CALLS[r % CALLS.len()];
        let mut c = brains.start();
        let mut out = Vec::new();
        let info = CallInfo {
            call_sid: format!("CA{r}"),
            from: Some(Pii::new("+447700900123".into())),
            ..CallInfo::default()
        };
        let mut pending: Vec<Event> = vec![Event::Started(info)];
        let mut turn = 0;
        loop {
            while let Some(ev) = pending.pop() {
                out.clear();
                c.on_event(ev, t0, &mut out);
                for d in out.drain(..) {
                    if let Directive::RunTool(job) = d {
                        pending.push(Event::ToolFinished(outcome_for(&job, wall)));
                    }
                }
            }
            let Some(text) = script.get(turn) else { break };
            turn += 1;
            let start = Instant::now();
            out.clear();
            c.on_event(
                Event::CallerSaid {
                    text: (*text).to_string(),
                    amends_previous: false,
                },
                t0,
                &mut out,
            );
            times.push(start.elapsed());
            for d in out.drain(..) {
                if let Directive::RunTool(job) = d {
                    pending.push(Event::ToolFinished(outcome_for(&job, wall)));
                }
            }
        }
    }
    times.sort();
    let q = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "rules brain decision per caller turn over {} turns: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        q(0.50),
        q(0.99),
        times[times.len() - 1]
    );
}
