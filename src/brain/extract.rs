//! What a caller's words say, deterministically: intent, e-mail addresses
//! and phone numbers read aloud, team-size and urgency signals, opt-outs —
//! and what must never be kept (card numbers, health details), redacted.
//!
//! Pure functions over transcript text (as speech-to-text writes it: words,
//! sometimes digits, little punctuation). The rules brain decides with them;
//! the LLM brain's tool arguments are checked with them.

use crate::phone;

/// Why the caller is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Demo, quote, discovery: a new lead.
    NewEnquiry,
    /// What does it cost.
    Pricing,
    /// An existing customer with a problem or question.
    Support,
    /// Referral or partnership.
    Referral,
    /// Not clear: hand to a human, never force-classify.
    Unclear,
}

/// Lower-case words, punctuation other than `@ . ' -` turned into spaces.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '@' | '\'' | '-') {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn has_any(text: &str, phrases: &[&str]) -> bool {
    // Word-boundary match on the normalised text.
    let norm = format!(" {} ", words(text).join(" "));
    phrases.iter().any(|p| norm.contains(&format!(" {p} ")))
}

/// The intent of one caller turn, or `None` when it carries no signal (an
/// answer to a question, a name, small talk).
pub fn intent(text: &str) -> Option<Intent> {
    const SUPPORT: &[&str] = &[
        "existing customer",
        "already a customer",
        "i'm a customer",
        "we're a customer",
        "my account",
        "our account",
        "not working",
        "stopped working",
        "broken",
        "problem with",
        "issue with",
        "support",
        "complaint",
        "my order",
        "my booking",
        "invoice",
        "refund",
    ];
    const REFERRAL: &[&str] = &[
        "referral",
        "referred",
        "recommended you",
        "recommended by",
        "partnership",
        "partner with",
        "partnering",
        "reseller",
        "collaborate",
    ];
    const PRICING: &[&str] = &[
        "price", "prices", "pricing", "cost", "costs", "how much", "rates", "fees", "charge",
        "budget",
    ];
    const NEW: &[&str] = &[
        "demo",
        "demonstration",
        "book a",
        "appointment",
        "consultation",
        "discovery",
        "quote",
        "interested in",
        "looking for",
        "we need",
        "i need",
        "sign up",
        "get started",
        "evaluating",
        "new project",
    ];
    if has_any(text, SUPPORT) {
        Some(Intent::Support)
    } else if has_any(text, REFERRAL) {
        Some(Intent::Referral)
    } else if has_any(text, PRICING) {
        Some(Intent::Pricing)
    } else if has_any(text, NEW) {
        Some(Intent::NewEnquiry)
    } else {
        None
    }
}

/// The caller asks for a person.
pub fn wants_human(text: &str) -> bool {
    has_any(
        text,
        &[
            "speak to someone",
            "speak to a person",
            "speak to a human",
            "talk to someone",
            "talk to a person",
            "talk to a human",
            "real person",
            "human being",
            "an operator",
            "the manager",
            "put me through",
            "transfer me",
        ],
    )
}

/// The caller does not want to be contacted.
pub fn opts_out(text: &str) -> bool {
    has_any(
        text,
        &[
            "don't call me",
            "do not call me",
            "don't contact me",
            "do not contact me",
            "stop calling",
            "remove me",
            "take me off",
            "unsubscribe",
            "no more calls",
            "not interested",
        ],
    )
}

/// Urgency signals: a tight timeline.
pub fn urgent(text: &str) -> bool {
    has_any(
        text,
        &[
            "urgent",
            "urgently",
            "asap",
            "as soon as possible",
            "today",
            "tomorrow",
            "this week",
            "right away",
            "immediately",
            "emergency",
            "deadline",
        ],
    )
}

const UNITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

fn small_number(w: &str) -> Option<u32> {
    const TEENS: [&str; 10] = [
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Ok(n) = w.parse::<u32>() {
        return Some(n);
    }
    if let Some(i) = UNITS.iter().position(|u| *u == w) {
        return Some(i as u32);
    }
    if let Some(i) = TEENS.iter().position(|u| *u == w) {
        return Some(10 + i as u32);
    }
    if let Some(i) = TENS.iter().position(|u| *u == w) {
        return Some(20 + 10 * i as u32);
    }
    if let Some((t, u)) = w.split_once('-') {
        let t = TENS.iter().position(|x| *x == t)? as u32;
        let u = UNITS.iter().position(|x| *x == u)? as u32;
        return Some(20 + 10 * t + u);
    }
    match w {
        "hundred" => Some(100),
        _ => None,
    }
}

/// Team size, when the caller states one ("a 15-person sales team", "about
/// fifteen people", "we're forty staff", "twenty-five of us").
pub fn team_size(text: &str) -> Option<u32> {
    let w = words(
        &text
            .replace("-person", " person")
            .replace("-strong", " strong"),
    );
    const PEOPLE: &[&str] = &[
        "people",
        "person",
        "staff",
        "employees",
        "users",
        "seats",
        "agents",
        "reps",
        "engineers",
        "of",
        "strong",
    ];
    for i in 0..w.len() {
        let Some(n) = small_number(&w[i]) else {
            continue;
        };
        // "twenty five" → 25
        let (n, next) = match w.get(i + 1).and_then(|x| small_number(x)) {
            Some(u) if (20..100).contains(&n) && n % 10 == 0 && u < 10 => (n + u, i + 2),
            _ => (n, i + 1),
        };
        // "a hundred" / "two hundred"
        let (n, next) = match w.get(next).map(String::as_str) {
            Some("hundred") => (n.max(1) * 100, next + 1),
            _ => (n, next),
        };
        let after: Vec<&str> = w[next..w.len().min(next + 3)]
            .iter()
            .map(String::as_str)
            .collect();
        // "15 people", "twenty of us", or one describing word between:
        // "15 sales people" (but not "one of our sites").
        let is_people = after.first().is_some_and(|a| PEOPLE.contains(a))
            && !(after.first() == Some(&"of") && after.get(1) != Some(&"us"))
            || (after.len() >= 2
                && small_number(after[0]).is_none()
                && PEOPLE.contains(&after[1])
                && after[1] != "of");
        if is_people && n > 0 {
            return Some(n);
        }
    }
    None
}

/// More than one site or location.
pub fn multi_site(text: &str) -> bool {
    if has_any(
        text,
        &[
            "multi-site",
            "multi site",
            "multiple sites",
            "multiple locations",
            "several sites",
            "several locations",
            "several offices",
            "multiple offices",
            "branches",
        ],
    ) {
        return true;
    }
    let w = words(text);
    w.windows(2).any(|p| {
        small_number(&p[0]).is_some_and(|n| n >= 2)
            && matches!(
                p[1].as_str(),
                "sites" | "locations" | "offices" | "branches" | "stores" | "clinics"
            )
    })
}

/// Digits spoken or written in `words` ("oh seven seven double oh", "0 7 7",
/// "077", "plus four four"): the digit string and whether it began with plus.
fn spoken_digits<'a>(tokens: impl Iterator<Item = &'a str>) -> (String, bool) {
    let mut out = String::new();
    let mut plus = false;
    let mut repeat = 1usize;
    for t in tokens {
        let d: Option<String> = match t {
            "plus" if out.is_empty() => {
                plus = true;
                None
            }
            "double" => {
                repeat = 2;
                continue;
            }
            "triple" => {
                repeat = 3;
                continue;
            }
            "oh" | "o" | "zero" | "nought" => Some("0".into()),
            w if w.chars().all(|c| c.is_ascii_digit()) => Some(w.into()),
            w if w.starts_with('+') && w[1..].chars().all(|c| c.is_ascii_digit()) => {
                plus = out.is_empty();
                Some(w[1..].into())
            }
            w => UNITS.iter().position(|u| *u == w).map(|i| i.to_string()),
        };
        if let Some(d) = d {
            for _ in 0..repeat {
                out.push_str(&d);
            }
            repeat = 1;
        }
    }
    (out, plus)
}

/// A phone number read aloud or written in `text`, normalised to E.164 with
/// `region` for national forms. The longest run of digit words wins; filler
/// words ("it's", "and", "uh") between groups are skipped.
pub fn phone_number(text: &str, region: phonenumber::country::Id) -> Option<phone::E164> {
    const FILLER: &[&str] = &[
        "uh", "um", "er", "erm", "and", "then", "that's", "its", "it's",
    ];
    let lower = text.to_lowercase().replace(['(', ')', '.', ',', '-'], " ");
    // Whisper (tiny.en, measured in three voices) writes a spoken "oh" as
    // the letter L ("L 7 7 L L 9 …", "L77 00900123"): in a run of digits it
    // is a zero, as a lone "o" is.
    let tokens: Vec<String> = lower
        .split_whitespace()
        .map(|t| match t.strip_prefix(['l', 'o']) {
            Some("") => "o".to_string(),
            Some(rest) if rest.chars().all(|c| c.is_ascii_digit()) => format!("0{rest}"),
            _ => t.to_string(),
        })
        .collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let is_digitish = |t: &str| {
        matches!(
            t,
            "plus" | "double" | "triple" | "oh" | "o" | "zero" | "nought"
        ) || UNITS.contains(&t)
            || t.trim_start_matches('+')
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-')
                && t.chars().any(|c| c.is_ascii_digit())
    };
    let mut best: Option<(String, bool)> = None;
    let mut i = 0;
    while i < tokens.len() {
        if !is_digitish(tokens[i])
            || (tokens[i] == "o" && i + 1 < tokens.len() && !is_digitish(tokens[i + 1]))
        {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut run: Vec<String> = Vec::new();
        while j < tokens.len() && (is_digitish(tokens[j]) || FILLER.contains(&tokens[j])) {
            if is_digitish(tokens[j]) {
                run.extend(tokens[j].split('-').map(str::to_string));
            }
            j += 1;
        }
        let (digits, plus) = spoken_digits(run.iter().map(String::as_str));
        if digits.len() >= 7 && best.as_ref().is_none_or(|(b, _)| digits.len() > b.len()) {
            best = Some((digits, plus));
        }
        i = j.max(i + 1);
    }
    let (digits, plus) = best?;
    let candidate = if plus {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else {
        digits
    };
    // Heard, not typed: a digit lost in recognition must not make a wrong
    // number that merely has a possible length.
    phone::normalise(&candidate, region)
        .ok()
        .filter(phone::E164::is_plausible)
}

/// The letters of a spelled word: "s m i t h", "s-m-i-t-h", "S for sugar"
/// style is not expected from callers, so single letters only.
fn spelled(tokens: &[&str]) -> Option<String> {
    if tokens.len() >= 2
        && tokens
            .iter()
            .all(|t| t.len() == 1 && t.chars().all(|c| c.is_alphabetic()))
    {
        Some(tokens.concat())
    } else {
        None
    }
}

/// An e-mail address said aloud ("j dot smith at example dot co dot uk",
/// "jane underscore doe at gmail dot com", "j s m i t h at example dot com")
/// or written. Lower-case; `None` unless it has a local part, an `@` and a
/// dotted domain.
pub fn email(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    // Written as is.
    for t in lower.split_whitespace() {
        let t = t.trim_matches(|c: char| !c.is_alphanumeric());
        if let Some((l, d)) = t.split_once('@') {
            if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') {
                return Some(t.to_string());
            }
        }
    }
    let tokens: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let at = tokens.iter().position(|t| *t == "at" || *t == "@")?;
    // The local part: back from "at" over words joined by dot/underscore/dash
    // or spelled letters.
    let joiner = |t: &str| matches!(t, "dot" | "underscore" | "dash" | "hyphen" | "point");
    let letter = |t: &str| t.chars().count() == 1 && t.chars().all(|c| c.is_alphanumeric());
    let mut start = at;
    while start > 0 {
        let t = tokens[start - 1];
        let next = tokens[start];
        let first = start == at;
        // The word right before "at", joiners, words a joiner follows, and
        // runs of spelled letters belong to the local part.
        let take = first
            || joiner(t)
            || (start < at && joiner(next))
            || (start < at && letter(t) && letter(next));
        if !take {
            break;
        }
        start -= 1;
    }
    let render = |toks: &[&str]| -> String {
        let mut out = String::new();
        let mut letters: Vec<&str> = Vec::new();
        let flush = |letters: &mut Vec<&str>, out: &mut String| {
            if let Some(s) = spelled(letters) {
                out.push_str(&s);
            } else {
                out.push_str(&letters.concat());
            }
            letters.clear();
        };
        for t in toks {
            match *t {
                "dot" | "point" => {
                    flush(&mut letters, &mut out);
                    out.push('.');
                }
                "underscore" => {
                    flush(&mut letters, &mut out);
                    out.push('_');
                }
                "dash" | "hyphen" => {
                    flush(&mut letters, &mut out);
                    out.push('-');
                }
                w => letters.push(w),
            }
        }
        flush(&mut letters, &mut out);
        out.chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect()
    };
    let local = render(&tokens[start..at]);
    // The domain: forward from "at" while words alternate with "dot".
    let mut end = at + 1;
    let mut want_word = true;
    while end < tokens.len() {
        let t = tokens[end];
        let is_dot = matches!(t, "dot" | "point");
        if want_word == is_dot {
            break;
        }
        want_word = !want_word;
        end += 1;
    }
    if want_word {
        end -= 1; // a trailing "dot"
    }
    let domain = render(&tokens[at + 1..end.max(at + 1)]);
    if local.is_empty() || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.')
    {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// Common English words that are not names ("it's been raining", "I'm
/// looking", "this is about"): a name candidate stops at one.
pub const COMMON: &[&str] = &[
    "a",
    "about",
    "actually",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anyway",
    "are",
    "as",
    "at",
    "back",
    "basically",
    "be",
    "because",
    "been",
    "before",
    "being",
    "best",
    "better",
    "both",
    "but",
    "by",
    "call",
    "calling",
    "can",
    "can't",
    "could",
    "customer",
    "did",
    "do",
    "does",
    "doing",
    "don't",
    "done",
    "down",
    "each",
    "even",
    "ever",
    "every",
    "fine",
    "for",
    "from",
    "get",
    "getting",
    "glad",
    "go",
    "going",
    "good",
    "got",
    "great",
    "had",
    "happy",
    "has",
    "have",
    "having",
    "he",
    "hello",
    "her",
    "here",
    "hi",
    "him",
    "his",
    "hoping",
    "how",
    "i",
    "i'd",
    "i'll",
    "i'm",
    "i've",
    "if",
    "in",
    "interested",
    "into",
    "is",
    "isn't",
    "it",
    "it's",
    "its",
    "just",
    "know",
    "like",
    "list",
    "looking",
    "lot",
    "me",
    "mine",
    "more",
    "morning",
    "much",
    "must",
    "my",
    "need",
    "needing",
    "never",
    "new",
    "no",
    "not",
    "now",
    "of",
    "off",
    "oh",
    "ok",
    "okay",
    "on",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "person",
    "phoning",
    "please",
    "pleased",
    "pretty",
    "quite",
    "raining",
    "rather",
    "real",
    "really",
    "regarding",
    "remove",
    "right",
    "ringing",
    "said",
    "same",
    "see",
    "she",
    "should",
    "so",
    "some",
    "someone",
    "something",
    "sorry",
    "speak",
    "speaking",
    "still",
    "stop",
    "sure",
    "take",
    "talk",
    "thank",
    "thanks",
    "that",
    "that's",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "think",
    "this",
    "those",
    "though",
    "through",
    "to",
    "today",
    "tomorrow",
    "too",
    "trying",
    "um",
    "uh",
    "erm",
    "up",
    "us",
    "very",
    "wanted",
    "wanting",
    "want",
    "was",
    "way",
    "we",
    "we're",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "with",
    "wondering",
    "would",
    "yeah",
    "yes",
    "yet",
    "you",
    "your",
    "afraid",
    "again",
    "week",
    "weekend",
    "month",
    "year",
    "afternoon",
    "evening",
    "tonight",
    "quote",
    "demo",
    "booking",
    "appointment",
    "price",
    "pricing",
    "support",
    "help",
    "problem",
    "issue",
    "question",
    "enquiry",
    "inquiry",
    "number",
    "email",
    "phone",
    "mobile",
    "office",
    "team",
    "company",
    "business",
    "people",
    "staff",
    "free",
    "busy",
    "ready",
    "available",
    "around",
    "bit",
    "little",
    "kind",
    "sort",
];

/// Whether `w` (lower case) is a common word, not a name.
pub fn is_common_word(w: &str) -> bool {
    COMMON.contains(&w)
}

/// The caller's name, when they give it ("my name is Jane Doe", "this is
/// Sam from Acme", "it's Priya", "Jane Doe here"); a spelled surname ("Doe,
/// d o e") is joined. Capitalised as names are.
pub fn name(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphabetic() || c == '\'' || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let tokens: Vec<&str> = cleaned.split_whitespace().collect();
    const STOP: &[&str] = &[
        "from",
        "and",
        "i",
        "i'm",
        "calling",
        "here",
        "at",
        "with",
        "the",
        "a",
        "about",
        "my",
        "we",
        "our",
        "is",
        "just",
        "speaking",
        "please",
        "that's",
        "so",
        "but",
        "who",
        "in",
        "on",
        "for",
        "to",
        "looking",
        "interested",
        "ringing",
        "phoning",
        "that",
        "spelled",
        "spelt",
        "thanks",
        "thank",
        "you",
        "yes",
        "yeah",
        "hi",
        "hello",
        "um",
        "uh",
    ];
    let starts = [
        &["my", "name", "is"][..],
        &["my", "name's"][..],
        &["name", "is"][..],
        &["this", "is"][..],
        &["it's"][..],
        &["i", "am"][..],
        &["i'm"][..],
        &["call", "me"][..],
    ];
    for i in 0..tokens.len() {
        for s in starts {
            if tokens.len() >= i + s.len() && tokens[i..i + s.len()] == *s {
                let rest = &tokens[i + s.len()..];
                let mut parts: Vec<String> = Vec::new();
                let mut k = 0;
                while k < rest.len() && parts.len() < 3 {
                    let t = rest[k];
                    if STOP.contains(&t) || t.len() < 2 && parts.is_empty() {
                        break;
                    }
                    if t.len() == 1 || is_common_word(t) {
                        break;
                    }
                    parts.push(t.to_string());
                    k += 1;
                }
                // A spelled surname after the name replaces the heard one.
                let letters: Vec<&str> = rest[k..]
                    .iter()
                    .copied()
                    .skip_while(|t| matches!(*t, "spelled" | "spelt" | "that's"))
                    .take_while(|t| t.len() == 1)
                    .collect();
                if let Some(s) = spelled(&letters) {
                    if parts.len() >= 2 {
                        parts.pop();
                    }
                    if parts.is_empty() || parts.len() == 1 && letters.len() >= 2 {
                        parts.push(s);
                    }
                }
                // "I'm calling about…", "I'm interested…": not a name.
                if parts.is_empty() {
                    continue;
                }
                let cap = |w: &str| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                };
                return Some(parts.iter().map(|p| cap(p)).collect::<Vec<_>>().join(" "));
            }
        }
    }
    None
}

/// Words that make a turn health information (never asked for or kept).
const HEALTH: &[&str] = &[
    "diagnosed",
    "diagnosis",
    "cancer",
    "diabetes",
    "diabetic",
    "depression",
    "anxiety",
    "pregnant",
    "pregnancy",
    "hiv",
    "medication",
    "prescription",
    "surgery",
    "chemotherapy",
    "disability",
    "disabled",
    "illness",
    "my condition",
    "my doctor",
    "in hospital",
    "mental health",
    "therapy",
    "heart attack",
    "stroke",
];

/// Luhn check of a digit string.
fn luhn(d: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in d.chars().rev().enumerate() {
        let Some(mut v) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// What a turn must not keep, removed: card numbers (13–19 digits, written
/// or spoken, in any grouping, that pass the Luhn check or are said to be a
/// card), bank account and sort codes said as such, and every sentence with a
/// health detail. Returns the redacted text and whether anything was removed.
pub fn redact(text: &str) -> (String, bool) {
    let mut changed = false;
    let lower = text.to_lowercase();
    let card_context = [
        "card",
        "visa",
        "mastercard",
        "amex",
        "debit",
        "credit",
        "cvv",
        "expiry",
        "sort code",
        "account number",
        "iban",
    ]
    .iter()
    .any(|k| lower.contains(k));
    // Sentence-level health redaction.
    let mut kept: Vec<String> = Vec::new();
    for sentence in split_sentences(text) {
        if has_any(&sentence, HEALTH) {
            changed = true;
            kept.push("[health detail removed]".into());
        } else {
            kept.push(sentence);
        }
    }
    let text = kept.join(" ");
    // Digit runs (written or spoken) of 8+ digits in a card/bank context, or
    // 13–19 that pass Luhn.
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let digitish = |t: &str| {
        let t = t.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':'));
        let l = t.to_lowercase();
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '-'))
            || matches!(l.as_str(), "oh" | "zero" | "double" | "triple" | "nought")
            || UNITS.contains(&l.as_str())
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !digitish(tokens[i]) {
            out.push(tokens[i].to_string());
            i += 1;
            continue;
        }
        let mut j = i;
        while j < tokens.len() && digitish(tokens[j]) {
            j += 1;
        }
        let run: Vec<String> = tokens[i..j]
            .iter()
            .map(|t| {
                t.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':'))
                    .to_lowercase()
                    .replace('-', "")
            })
            .collect();
        let (digits, _) = spoken_digits(run.iter().map(String::as_str));
        let card = (13..=19).contains(&digits.len()) && luhn(&digits);
        let bank = card_context && digits.len() >= 6;
        if card || bank {
            changed = true;
            out.push("[number removed]".into());
        } else {
            out.extend(tokens[i..j].iter().map(|t| t.to_string()));
        }
        i = j;
    }
    (out.join(" "), changed)
}

fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if matches!(c, '.' | '?' | '!') {
            let s = cur.trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            cur.clear();
        }
    }
    let s = cur.trim().to_string();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id;

    #[test]
    fn intents_from_what_callers_say() {
        for (text, want) in [
            (
                "Hi, I'd like to book a demo of your booking tool",
                Some(Intent::NewEnquiry),
            ),
            (
                "could I get a quote for a new kitchen",
                Some(Intent::NewEnquiry),
            ),
            ("how much does it cost per month", Some(Intent::Pricing)),
            ("what are your prices", Some(Intent::Pricing)),
            (
                "I'm an existing customer and my account is locked",
                Some(Intent::Support),
            ),
            (
                "the system stopped working this morning",
                Some(Intent::Support),
            ),
            ("I was referred by Sarah at Acme", Some(Intent::Referral)),
            (
                "we'd like to talk about a partnership",
                Some(Intent::Referral),
            ),
            ("erm hello, yes, it's about the thing", None),
            ("Jane Doe", None),
        ] {
            assert_eq!(intent(text), want, "{text}");
        }
    }

    #[test]
    fn opt_outs_and_requests_for_a_person() {
        assert!(opts_out("please don't call me again"));
        assert!(opts_out("Remove me from your list."));
        assert!(!opts_out("please call me back"));
        assert!(wants_human("can I speak to someone please"));
        assert!(wants_human("I want a real person"));
        assert!(!wants_human("I'd like a demo"));
    }

    #[test]
    fn team_sizes_and_sites() {
        for (text, want) in [
            ("we're evaluating it for a 15-person sales team", Some(15)),
            ("there are about fifteen people in the team", Some(15)),
            ("twenty five of us", Some(25)),
            ("we have forty staff", Some(40)),
            ("a team of 8 engineers", Some(8)),
            ("two hundred employees", Some(200)),
            ("I'd like a demo on Friday at 10", None),
            ("one of our sites", None),
        ] {
            assert_eq!(team_size(text), want, "{text}");
        }
        assert!(multi_site("we run three sites across the north west"));
        assert!(multi_site("it's for multiple locations"));
        assert!(!multi_site("just the one office"));
    }

    #[test]
    fn phone_numbers_read_aloud() {
        for (text, region, want) in [
            (
                "it's oh seven seven double oh nine oh oh one two three",
                Id::GB,
                "+447700900123",
            ),
            ("07700 900123", Id::GB, "+447700900123"),
            (
                "oh seven seven oh oh, nine oh oh, one two three",
                Id::GB,
                "+447700900123",
            ),
            (
                "plus four four seven seven double oh nine double oh one two three",
                Id::GB,
                "+447700900123",
            ),
            ("call me on 020 7946 0000 please", Id::GB, "+442079460000"),
            (
                "four one five, five five five, two six seven one",
                Id::US,
                "+14155552671",
            ),
            ("(415) 555-2671", Id::US, "+14155552671"),
            (
                "double four seven seven oh oh nine oh oh one two three with plus at the start",
                Id::GB,
                "+447700900123",
            ),
            // How Whisper writes a spoken "oh", one digit at a time or not.
            ("L 7 7 L L 9 L L 1 2 3", Id::GB, "+447700900123"),
            ("L77 00900123", Id::GB, "+447700900123"),
            ("L-7-7-L-L-9-L-L-1-2-3", Id::GB, "+447700900123"),
        ] {
            let got = phone_number(text, region).map(|e| e.as_str().to_string());
            assert_eq!(got.as_deref(), Some(want), "{text}");
        }
        assert_eq!(phone_number("I have two kids and one dog", Id::GB), None);
        // Digits missing: no number at all, not a wrong one.
        assert_eq!(phone_number("077 0090123", Id::GB), None);
        assert_eq!(
            phone_number("oh seven seven oh oh nine oh one two three", Id::GB),
            None
        );
        assert_eq!(phone_number("friday at ten", Id::GB), None);
        // An L among words is a letter.
        assert_eq!(phone_number("my name is l smith", Id::GB), None);
    }

    #[test]
    fn email_addresses_said_aloud() {
        for (text, want) in [
            (
                "it's j dot smith at example dot co dot uk",
                "j.smith@example.co.uk",
            ),
            ("jane underscore doe at gmail dot com", "jane_doe@gmail.com"),
            ("j s m i t h at example dot com", "jsmith@example.com"),
            ("my email is priya@acme.io thanks", "priya@acme.io"),
            (
                "sam dash lee at brightside dot org",
                "sam-lee@brightside.org",
            ),
        ] {
            assert_eq!(email(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(email("we're at the office all day"), None);
        assert_eq!(email("I'll be at home"), None);
    }

    #[test]
    fn names_with_spelled_surnames() {
        for (text, want) in [
            ("Hi, my name is Jane Doe", Some("Jane Doe")),
            ("this is Sam from Acme", Some("Sam")),
            (
                "it's Priya Patel, I'm calling about a demo",
                Some("Priya Patel"),
            ),
            (
                "my name's Alex Rivera spelled r i v e r a",
                Some("Alex Rivera"),
            ),
            ("I'm calling about pricing", None),
            ("I'm interested in a demo", None),
        ] {
            assert_eq!(name(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn card_numbers_and_health_details_never_survive() {
        let (r, changed) = redact("my card is 4111 1111 1111 1111 expiry 12 28");
        assert!(changed);
        assert!(!r.contains("4111") && !r.contains("1111"), "{r}");
        let (r, changed) = redact(
            "the card number is four one one one one one one one one one one one one one one one",
        );
        assert!(changed && !r.contains("one one one one"), "{r}");
        let (r, changed) = redact("I was diagnosed with diabetes last year. I'd like a demo.");
        assert!(changed);
        assert!(!r.to_lowercase().contains("diabetes"), "{r}");
        assert!(r.contains("I'd like a demo."), "{r}");
        // A phone number is not a card.
        let (r, changed) = redact("call me on 07700 900123");
        assert!(!changed, "{r}");
        assert!(r.contains("07700 900123"));
    }
}
