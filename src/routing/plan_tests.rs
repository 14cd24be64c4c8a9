//! Table tests of the routing plan: seed 000's six set-ups, the
//! forwarding-slot priority, each location toggle, AI hours, "nothing
//! configured", protection, IVR, on-call (seed 002) and the warm transfer.
//! Every test uses a fixed `now`.

use chrono::{DateTime, Utc};

use super::*;
use crate::config::Config;

const CALLER: &str = "+447700900123";
const MAIN: &str = "+442079460001";

/// Monday 2026-11-30 10:00 London (open).
fn monday_10() -> DateTime<Utc> {
    "2026-11-30T10:00:00Z".parse().unwrap()
}

/// Saturday 2026-12-05 10:00 London (closed).
fn saturday() -> DateTime<Utc> {
    "2026-12-05T10:00:00Z".parse().unwrap()
}

const USERS: &str = r#"
[location]
business_phone = "+442079460000"

[[users]]
id = "alex"
name = "Alex Smith"
phones = ["+447700900001", "+447700900011"]
sip = "sip:alex@example.sip.twilio.com"
voicemail_greeting = "Alex here, leave a message."

[[users]]
id = "sam"
phones = ["+447700900002"]

[[users]]
id = "kim"
sip = "sip:kim@example.sip.twilio.com"
preferred_devices = ["sip"]

[[users]]
id = "lee"
preferred_devices = ["client", "sip"]
sip = "sip:lee@example.sip.twilio.com"
"#;

fn cfg(numbers: &str) -> Config {
    let text = format!("{USERS}\n{numbers}");
    match Config::from_toml(&text) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn cfg_err(numbers: &str) -> String {
    Config::from_toml(&format!("{USERS}\n{numbers}"))
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

fn route<'a>(c: &'a Config, now: DateTime<Utc>) -> Routing<'a> {
    route_from(c, now, CALLER, &[])
}

fn route_from<'a>(
    c: &'a Config,
    now: DateTime<Utc>,
    from: &'a str,
    earlier: &[DateTime<Utc>],
) -> Routing<'a> {
    Routing::new(
        c,
        Toggles::of(c),
        now,
        chrono_tz::Europe::London,
        Caller {
            from,
            to: MAIN,
            stir_verstat: None,
        },
        earlier,
    )
}

fn ring(p: &Plan) -> &Ring {
    match &p.step {
        Step::Ring(r) => r,
        other => panic!("expected a ring, got {other:?} ({})", p.why),
    }
}

fn client(id: &str) -> Target {
    Target::Client(id.into())
}
fn sip(u: &str) -> Target {
    Target::Sip(u.into())
}
fn phone(e: &str) -> Target {
    Target::Phone {
        e164: e.into(),
        forwarded: true,
    }
}

fn ai(mode: Mode) -> Step {
    Step::Ai {
        mode,
        transfer_failed: false,
    }
}

fn voicemail_greeting(p: &Plan) -> &Speech {
    match &p.step {
        Step::Voicemail { greeting, .. } => greeting,
        other => panic!("expected voicemail, got {other:?} ({})", p.why),
    }
}

// ---- Seed 000, "Common Setup Scenarios" ----

/// Set-up 1: All calls ring directly to me: team member = me, devices ticked, backup voicemail.
#[test]
fn setup_1_all_calls_ring_directly_to_me() {
    let mut c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        team_member = "alex"
        team_member_devices = ["web", "mobile", "sip"]
        backup = "voicemail"
        "#
    ));
    c.location.forward_to_business_phone = false;
    let r = route(&c, monday_10());
    let p = r.inbound();
    let ring = ring(&p);
    assert_eq!(ring.leg, Leg::Number);
    assert_eq!(
        ring.targets,
        vec![client("alex"), sip("sip:alex@example.sip.twilio.com")]
    );
    assert_eq!(ring.timeout_s, 20, "default timeout");
    for status in ["no-answer", "busy", "failed", "canceled"] {
        let next = r.after_dial(&Leg::Number, status, None);
        assert_eq!(
            voicemail_greeting(&next),
            &Speech::Say("Alex here, leave a message.".into()),
            "{status}"
        );
    }
    assert_eq!(
        r.after_dial(&Leg::Number, "completed", None).step,
        Step::Hangup
    );
}

/// Set-up 2: Ring my whole team simultaneously: team member + ring-more members on
/// their preferred devices, all in one dial.
#[test]
fn setup_2_ring_the_whole_team() {
    let c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        team_member = "alex"
        ring_more = ["sam", "kim", "lee"]
        "#
    ));
    let p = route(&c, monday_10()).inbound();
    assert_eq!(
        ring(&p).targets,
        vec![
            client("alex"),
            phone("+442079460000"),
            client("sam"),
            sip("sip:kim@example.sip.twilio.com"),
            client("lee"),
            sip("sip:lee@example.sip.twilio.com"),
        ]
    );
}

/// Set-up 3: Phone menu: press 1 for sales, 2 for support.
#[test]
fn setup_3_phone_menu() {
    let c = cfg(&format!(
        r#"
        [[ivr]]
        id = "main"
        prompt = "Press 1 for Sales. Press 2 for Support."
        retries = 1
        fallback = "voicemail"
        [ivr.options]
        "1" = "ring"
        "2" = "user:sam"
        "0" = "menu:operator"
        [[ivr]]
        id = "operator"
        prompt = "Press 1 for the AI."
        [ivr.options]
        "1" = "ai"
        [[numbers]]
        e164 = "{MAIN}"
        ivr = "main"
        ai_mode = "primary"
        team_member = "alex"
        "#
    ));
    let r = route(&c, monday_10());
    let p = r.inbound();
    assert_eq!(
        p.step,
        Step::Menu {
            id: "main".into(),
            prompt: Speech::Say("Press 1 for Sales. Press 2 for Support.".into()),
            timeout_s: 5,
            attempt: 0
        },
        "IVR takes stage 1, even before a primary AI"
    );
    assert_eq!(
        ring(&r.menu_input("main", 0, "1")).targets[0],
        client("alex")
    );
    assert_eq!(
        ring(&r.menu_input("main", 0, "2")).targets,
        vec![client("sam"), phone("+447700900002")]
    );
    assert!(
        matches!(r.menu_input("main", 0, "0").step, Step::Menu { ref id, attempt: 0, .. } if id == "operator")
    );
    assert_eq!(r.menu_input("operator", 0, "1").step, ai(Mode::Primary));
    // Invalid key: repeat with the apology; no key: repeat; then the fallback.
    let again = r.menu_input("main", 0, "7");
    assert!(matches!(again.step, Step::Menu { attempt: 1, .. }));
    assert_eq!(
        again.say_first,
        vec![Speech::Say("Sorry, that is not an option.".into())]
    );
    let silent = r.menu_input("main", 0, "");
    assert!(matches!(silent.step, Step::Menu { attempt: 1, .. }));
    assert!(silent.say_first.is_empty());
    assert!(matches!(
        r.menu_input("main", 1, "").step,
        Step::Voicemail { .. }
    ));
}

/// Set-up 4: AI answers every call immediately (primary mode); the ring never runs,
/// and ring_assigned_user does not override it.
#[test]
fn setup_4_ai_answers_every_call() {
    let mut c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        ai_mode = "primary"
        team_member = "alex"
        assigned_user = "sam"
        "#
    ));
    c.location.ring_assigned_user = true;
    assert_eq!(route(&c, monday_10()).inbound().step, ai(Mode::Primary));
    assert_eq!(route(&c, saturday()).inbound().step, ai(Mode::Primary));
}

/// Set-up 5: Humans first, AI handles missed calls (backup mode): ring, then the AI
/// for every unanswered outcome.
#[test]
fn setup_5_humans_first_ai_backup() {
    let c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        ai_mode = "backup"
        team_member = "alex"
        external_phone = "+447700900099"
        backup = "voicemail"
        "#
    ));
    let r = route(&c, monday_10());
    assert_eq!(
        ring(&r.inbound()).targets,
        vec![client("alex"), phone("+447700900099")]
    );
    for status in ["no-answer", "busy", "failed", "canceled", "weird"] {
        assert_eq!(
            r.after_dial(&Leg::Number, status, None).step,
            ai(Mode::Backup)
        );
    }
}

/// Set-up 6: Prevent calls from connecting to answering machines: call connect.
#[test]
fn setup_6_call_connect_blocks_answering_machines() {
    let c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        name = "Sales"
        external_phone = "+447700900099"
        call_connect = true
        whisper = "Call for {{{{number.name}}}} from {{{{contact.name}}}}"
        answering_machine_detection = true
        "#
    ));
    let r = route(&c, monday_10());
    let p = r.inbound();
    let ring = ring(&p);
    assert!(ring.screened && ring.machine_detection);
    let s = r.screening(
        &Leg::Number,
        &WhisperVars {
            contact_name: Some("Jo".into()),
            ..Default::default()
        },
    );
    assert_eq!(s.say, vec!["Call for Sales from Jo", PRESS_ANY_KEY]);
    assert_eq!(s.press, Some(Press::AnyKey { wait_s: 6 }));
    // A machine answered but never pressed: the leg is not bridged → stage 3.
    assert!(matches!(
        r.after_dial(&Leg::Number, "completed", Some(false)).step,
        Step::Voicemail { .. }
    ));
    assert_eq!(
        r.after_dial(&Leg::Number, "completed", Some(true)).step,
        Step::Hangup
    );
}

// ---- The forwarding slot ----

#[test]
fn forwarding_slot_priority() {
    // (phone ticked, external phone, business phone, toggle) → the one phone.
    let cases: [(bool, &str, &str, bool, Option<&str>); 8] = [
        (
            true,
            "+447700900099",
            "+442079460000",
            true,
            Some("+447700900001"),
        ),
        (
            false,
            "+447700900099",
            "+442079460000",
            true,
            Some("+447700900099"),
        ),
        (false, "", "+442079460000", true, Some("+442079460000")),
        (false, "", "+442079460000", false, None),
        (false, "", "", true, None),
        (true, "", "", false, Some("+447700900001")),
        (false, "+447700900099", "", false, Some("+447700900099")),
        // Our own number is never the forward (it would route back here).
        (false, MAIN, "", true, None),
    ];
    for (i, (ticked, external, business, toggle, want)) in cases.into_iter().enumerate() {
        let devices = if ticked {
            r#"["web", "phone"]"#
        } else {
            r#"["web"]"#
        };
        let mut c = cfg(&format!(
            r#"
            [[numbers]]
            e164 = "{MAIN}"
            team_member = "alex"
            team_member_devices = {devices}
            external_phone = "{external}"
            "#
        ));
        c.location.business_phone = business.into();
        c.location.forward_to_business_phone = toggle;
        let p = route(&c, monday_10()).inbound();
        let phones: Vec<&Target> = ring(&p)
            .targets
            .iter()
            .filter(|t| matches!(t, Target::Phone { .. }))
            .collect();
        match want {
            Some(w) => assert_eq!(phones, vec![&phone(w)], "case {i}"),
            None => assert!(phones.is_empty(), "case {i}: {phones:?}"),
        }
        assert_eq!(ring(&p).targets[0], client("alex"), "case {i}");
    }
}

#[test]
fn nothing_configured_rings_only_devices_or_goes_to_backup() {
    // Only devices: no phone number rings.
    let mut c = cfg(&format!(
        "[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"alex\"\n"
    ));
    c.location.business_phone.clear();
    assert_eq!(
        ring(&route(&c, monday_10()).inbound()).targets,
        vec![client("alex")]
    );
    // Nothing at all: straight to the backup, with the default greeting.
    let mut c = cfg(&format!("[[numbers]]\ne164 = \"{MAIN}\"\n"));
    c.location.business_phone.clear();
    let p = route(&c, monday_10()).inbound();
    assert_eq!(
        voicemail_greeting(&p),
        &Speech::Say(DEFAULT_GREETING.into())
    );
    assert!(p.why.contains("nothing to ring"), "{}", p.why);
}

// ---- Location toggles ----

#[test]
fn ring_assigned_user_rings_them_first_then_the_number() {
    let mut c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        team_member = "alex"
        assigned_user = "sam"
        "#
    ));
    let off = route(&c, monday_10()).inbound();
    assert_eq!(ring(&off).leg, Leg::Number);
    c.location.ring_assigned_user = true;
    let r = route(&c, monday_10());
    let first = r.inbound();
    assert_eq!(ring(&first).leg, Leg::Assigned);
    assert_eq!(
        ring(&first).targets,
        vec![client("sam"), phone("+447700900002")]
    );
    let then = r.after_dial(&Leg::Assigned, "no-answer", None);
    assert_eq!(ring(&then).leg, Leg::Number);
    assert_eq!(ring(&then).targets[0], client("alex"));
    assert!(matches!(
        r.after_dial(&Leg::Number, "no-answer", None).step,
        Step::Voicemail { .. }
    ));
}

#[test]
fn forward_to_business_phone_toggle() {
    let mut c = cfg(&format!(
        "[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"alex\"\n"
    ));
    assert!(ring(&route(&c, monday_10()).inbound())
        .targets
        .contains(&phone("+442079460000")));
    c.location.forward_to_business_phone = false;
    assert!(!ring(&route(&c, monday_10()).inbound())
        .targets
        .contains(&phone("+442079460000")));
}

// ---- AI hours ----

#[test]
fn ai_hours_business_and_after_hours() {
    let mk = |hours: &str, mode: &str| {
        let mut c = cfg(&format!(
            r#"
            [[numbers]]
            e164 = "{MAIN}"
            ai_mode = "{mode}"
            ai_hours = "{hours}"
            team_member = "alex"
            "#
        ));
        c.business.holidays = vec!["2026-12-25".into()];
        c
    };
    let christmas: DateTime<Utc> = "2026-12-25T11:00:00Z".parse().unwrap();
    let monday_evening: DateTime<Utc> = "2026-11-30T18:00:00Z".parse().unwrap();
    // (ai_hours, now, AI answers first?)
    for (hours, now, ai_first) in [
        ("business", monday_10(), true),
        ("business", saturday(), false),
        ("business", christmas, false),
        ("business", monday_evening, false),
        ("after_hours", monday_10(), false),
        ("after_hours", saturday(), true),
        ("after_hours", christmas, true),
        ("always", saturday(), true),
    ] {
        let c = mk(hours, "primary");
        let p = route(&c, now).inbound();
        assert_eq!(
            p.step == ai(Mode::Primary),
            ai_first,
            "{hours} at {now}: {}",
            p.why
        );
        // Backup mode respects the same hours after the ring.
        let c = mk(hours, "backup");
        let after = route(&c, now).after_dial(&Leg::Number, "no-answer", None);
        assert_eq!(
            after.step == ai(Mode::Backup),
            ai_first,
            "{hours} backup at {now}"
        );
    }
    // Business hours come from [business.hours] in the business time zone.
    let c = mk("business", "primary");
    assert!(business_open(
        &c,
        chrono_tz::Europe::London,
        "2026-11-30T17:29:00Z".parse().unwrap()
    ));
    assert!(!business_open(
        &c,
        chrono_tz::Europe::London,
        "2026-11-30T17:30:00Z".parse().unwrap()
    ));
    assert!(!business_open(
        &c,
        chrono_tz::Europe::London,
        "2026-11-30T08:59:00Z".parse().unwrap()
    ));
}

#[test]
fn backup_voice_ai_always_runs() {
    let c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        team_member = "alex"
        backup = "voice_ai"
        "#
    ));
    assert_eq!(
        route(&c, saturday())
            .after_dial(&Leg::Number, "busy", None)
            .step,
        ai(Mode::Backup)
    );
}

// ---- Voicemail greeting order ----

#[test]
fn voicemail_greeting_order() {
    let base = format!("[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"TM\"\n");
    let mut c = cfg(&base.replace("TM", "alex"));
    let g = |c: &Config| {
        voicemail_greeting(&route(c, monday_10()).after_dial(&Leg::Number, "no-answer", None))
            .clone()
    };
    assert_eq!(g(&c), Speech::Say("Alex here, leave a message.".into()));
    let mut c2 = cfg(&base.replace("TM", "sam"));
    c2.location.voicemail_greeting = "https://cdn.example/greeting.mp3".into();
    assert_eq!(
        g(&c2),
        Speech::Play("https://cdn.example/greeting.mp3".into())
    );
    c2.location.voicemail_greeting.clear();
    assert_eq!(g(&c2), Speech::Say(DEFAULT_GREETING.into()));
    c.users[0].voicemail_greeting.clear();
    c.location.voicemail_greeting = "Location greeting.".into();
    assert_eq!(g(&c), Speech::Say("Location greeting.".into()));
}

// ---- Protection ----

#[test]
fn protection_internal_repeat_blocked_and_attestation() {
    let mut c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        ai_mode = "primary"
        team_member = "alex"
        backup = "voice_ai"
        [[numbers]]
        e164 = "+442079460002"
        ai_mode = "primary"
        "#
    ));
    c.location.block_list = vec!["+447700900666".into()];
    let now = monday_10();
    // Our own other number calls: no AI, the humans ring, and no voicemail after.
    let r = route_from(&c, now, "+442079460002", &[]);
    assert_eq!(r.guard(), Guard::Internal);
    assert_eq!(ring(&r.inbound()).leg, Leg::Number);
    let after = r.after_dial(&Leg::Number, "no-answer", None);
    assert_eq!(after.step, Step::Hangup);
    assert_eq!(after.say_first, vec![Speech::Say(NOBODY_AVAILABLE.into())]);
    // A team member's phone is internal too.
    assert_eq!(
        route_from(&c, now, "+447700900011", &[]).guard(),
        Guard::Internal
    );
    // Three calls in the last two minutes: not the AI again.
    let earlier = [
        now - chrono::Duration::seconds(30),
        now - chrono::Duration::seconds(60),
        now - chrono::Duration::seconds(90),
    ];
    let r = route_from(&c, now, CALLER, &earlier);
    assert_eq!(r.guard(), Guard::Repeat);
    assert_eq!(ring(&r.inbound()).leg, Leg::Number);
    assert!(matches!(
        r.after_dial(&Leg::Number, "no-answer", None).step,
        Step::Voicemail { .. }
    ));
    // Old calls don't count.
    let old = [now - chrono::Duration::seconds(600); 5];
    assert_eq!(route_from(&c, now, CALLER, &old).guard(), Guard::Clear);
    // Block list: rejected by default, or voicemail.
    assert_eq!(
        route_from(&c, now, "+447700900666", &[]).inbound().step,
        Step::Reject
    );
    c.location.blocked_action = ScreenAction::Voicemail;
    assert!(matches!(
        route_from(&c, now, "+447700900666", &[]).inbound().step,
        Step::Voicemail { .. }
    ));
    // Failed STIR/SHAKEN attestation, when configured to act on it.
    c.location.failed_attestation_action = ScreenAction::Reject;
    let stir = |v: &'static str| {
        Routing::new(
            &c,
            Toggles::of(&c),
            now,
            chrono_tz::Europe::London,
            Caller {
                from: CALLER,
                to: MAIN,
                stir_verstat: Some(v),
            },
            &[],
        )
        .inbound()
        .step
    };
    assert_eq!(stir("TN-Validation-Failed-B"), Step::Reject);
    assert_eq!(stir("TN-Validation-Passed-A"), ai(Mode::Primary));
    assert_eq!(stir("No-TN-Validation"), ai(Mode::Primary));
}

// ---- On-call rotation (seed 002) ----

#[test]
fn oncall_rotation_members_in_order_each_phone_in_turn() {
    let c = cfg(&format!(
        r#"
        [[oncall]]
        id = "support"
        members = ["alex", "sam"]
        accept_wait_s = 8
        [[ivr]]
        id = "main"
        prompt = "Press 9 for the on-call engineer."
        [ivr.options]
        "9" = "oncall:support"
        [[numbers]]
        e164 = "{MAIN}"
        ivr = "main"
        "#
    ));
    let r = route(&c, monday_10());
    let first = r.menu_input("main", 0, "9");
    assert_eq!(
        first.say_first,
        vec![Speech::Say("Please hold while we connect you.".into())]
    );
    let phones: Vec<String> = (0..3)
        .map(|step| {
            let p = if step == 0 {
                first.clone()
            } else {
                r.oncall("support", step)
            };
            let ring = ring(&p).clone();
            assert!(ring.screened);
            assert_eq!(
                ring.leg,
                Leg::Oncall {
                    group: "support".into(),
                    step
                }
            );
            assert_eq!(ring.targets.len(), 1);
            match &ring.targets[0] {
                Target::Phone { e164, .. } => e164.clone(),
                t => panic!("{t:?}"),
            }
        })
        .collect();
    assert_eq!(phones, ["+447700900001", "+447700900011", "+447700900002"]);
    let next = r.after_dial(
        &Leg::Oncall {
            group: "support".into(),
            step: 0,
        },
        "no-answer",
        None,
    );
    assert_eq!(
        ring(&next).leg,
        Leg::Oncall {
            group: "support".into(),
            step: 1
        }
    );
    // After the last phone: the no-response message, then voicemail raising the alert.
    let last = r.after_dial(
        &Leg::Oncall {
            group: "support".into(),
            step: 2,
        },
        "no-answer",
        None,
    );
    assert_eq!(
        last.say_first,
        vec![Speech::Say("Nobody is available right now.".into())]
    );
    assert!(matches!(&last.step, Step::Voicemail { alert_group: Some(g), .. } if g == "support"));
    // The responder must press 1 (not any key) within accept_wait_s.
    let s = r.screening(
        &Leg::Oncall {
            group: "support".into(),
            step: 0,
        },
        &WhisperVars::default(),
    );
    assert_eq!(s.press, Some(Press::One { wait_s: 8 }));
    assert!(s.press.is_some_and(|p| p.accepts("1") && !p.accepts("2")));
}

#[test]
fn oncall_simultaneous_and_alert_on_arrival() {
    let c = cfg(&format!(
        r#"
        [[oncall]]
        id = "all"
        members = ["alex", "sam"]
        simultaneous = true
        alert_on = "arrival"
        [[ivr]]
        id = "m"
        prompt = "Press 1."
        fallback = "oncall:all"
        [ivr.options]
        "1" = "oncall:all"
        [[numbers]]
        e164 = "{MAIN}"
        ivr = "m"
        "#
    ));
    let r = route(&c, monday_10());
    let p = r.oncall("all", 0);
    assert_eq!(ring(&p).targets.len(), 3);
    assert_eq!(p.alert_now.as_deref(), Some("all"));
    let done = r.oncall("all", 1);
    assert!(matches!(
        done.step,
        Step::Voicemail {
            alert_group: None,
            ..
        }
    ));
}

// ---- Warm transfer ----

#[test]
fn warm_transfer_rings_then_falls_back_to_the_ai_or_voicemail() {
    let mut c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        ai_mode = "primary"
        team_member = "alex"
        ring_more = ["sam"]
        "#
    ));
    let r = route(&c, monday_10());
    let p = r.transfer("");
    let ring = ring(&p);
    assert_eq!(ring.leg, Leg::Transfer);
    assert!(ring.screened);
    assert!(ring.targets.contains(&client("sam")));
    let user = r.transfer("user:sam");
    assert_eq!(
        self::ring(&user).targets,
        vec![client("sam"), phone("+447700900002")]
    );
    let s = r.screening(
        &Leg::Transfer,
        &WhisperVars {
            lead_summary: Some("Jo Bloggs, new demo enquiry, tier B".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        s.say,
        vec![
            "Transfer from the AI receptionist: Jo Bloggs, new demo enquiry, tier B",
            PRESS_ANY_KEY
        ]
    );
    assert!(matches!(s.press, Some(Press::AnyKey { .. })));
    for status in ["no-answer", "busy", "failed", "canceled"] {
        assert_eq!(
            r.after_dial(&Leg::Transfer, status, None).step,
            Step::Ai {
                mode: Mode::Primary,
                transfer_failed: true
            }
        );
    }
    assert_eq!(r.transfer("hangup").step, Step::Hangup);
    assert!(matches!(
        r.transfer("voicemail").step,
        Step::Voicemail { .. }
    ));
    c.numbers[0].transfer_failed = crate::config::routing::TransferFailed::Voicemail;
    let r = route(&c, monday_10());
    assert!(matches!(
        r.after_dial(&Leg::Transfer, "no-answer", None).step,
        Step::Voicemail { .. }
    ));
}

#[test]
fn record_warning_is_said_first() {
    let c = cfg(&format!(
        r#"
        [[numbers]]
        e164 = "{MAIN}"
        ai_mode = "primary"
        record = true
        record_warning = "This call is recorded."
        "#
    ));
    let p = route(&c, monday_10()).inbound();
    assert_eq!(
        p.say_first,
        vec![Speech::Say("This call is recorded.".into())]
    );
}

#[test]
fn unconfigured_number_gets_the_ai() {
    let c = cfg("");
    let r = Routing::new(
        &c,
        Toggles::of(&c),
        monday_10(),
        chrono_tz::Europe::London,
        Caller {
            from: CALLER,
            to: "+15550001111",
            stir_verstat: None,
        },
        &[],
    );
    assert_eq!(r.inbound().step, ai(Mode::Primary));
    assert_eq!(r.inbound().number, None);
}

// ---- Config errors name the key ----

#[test]
fn config_errors_name_the_key() {
    let seven = r#"["sam", "kim", "lee", "u4", "u5", "u6", "u7"]"#;
    let extra: String = (4..=7)
        .map(|i| format!("[[users]]\nid = \"u{i}\"\n"))
        .collect();
    for (toml, key) in [
        (
            format!("{extra}[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"alex\"\nring_more = {seven}\n"),
            "numbers[0].ring_more",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"nobody\"\n"),
            "numbers[0].team_member",
        ),
        (
            "[[numbers]]\ne164 = \"020 7946 0001\"\n".to_string(),
            "numbers[0].e164",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\nexternal_phone = \"+4412\"\n"),
            "numbers[0].external_phone",
        ),
        (
            "[[ivr]]\nid = \"m\"\nprompt = \"x\"\n[ivr.options]\n\"1\" = \"menu:nowhere\"\n".to_string(),
            "ivr[0].options.1",
        ),
        (
            "[[ivr]]\nid = \"m\"\nprompt = \"x\"\n[ivr.options]\n\"1\" = \"dance\"\n".to_string(),
            "ivr",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\nivr = \"nope\"\n"),
            "numbers[0].ivr",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\ntimeout_s = 2\n"),
            "numbers[0].timeout_s",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"sam\"\nteam_member_devices = [\"sip\"]\n"),
            "numbers[0].team_member_devices",
        ),
        (
            format!("[[numbers]]\ne164 = \"{MAIN}\"\nring_mor = []\n"),
            "ring_mor",
        ),
        (
            "[[oncall]]\nid = \"o\"\nmembers = [\"kim\"]\n".to_string(),
            "oncall[0].members[0]",
        ),
        ("[business.hours]\nmon = [\"17:00-09:00\"]\n".to_string(), "business.hours.mon[0]"),
        ("[business]\nholidays = [\"25/12/2026\"]\n".to_string(), "business.holidays[0]"),
    ] {
        let e = cfg_err(&toml);
        assert!(e.contains(key), "{key}: {e:?}\n{toml}");
    }
    // Exactly six ring-more members is fine.
    let six = r#"["sam", "kim", "lee", "u4", "u5", "u6"]"#;
    cfg(&format!(
        "{extra}[[numbers]]\ne164 = \"{MAIN}\"\nteam_member = \"alex\"\nring_more = {six}\n"
    ));
}
