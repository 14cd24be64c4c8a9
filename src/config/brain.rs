//! `[brain]` and `[tiers]`: which conversation answers calls, and the tier
//! rules it routes by (defaults from the lead-routing guide, seed 003).
//!
//! Parsing and range checks only (a leaf under [`crate::config`]): the
//! rules that use these values live in the brain's `rules` and
//! `actions`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config_error::ConfigError;

/// Which conversation answers a media call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrainKind {
    /// The deterministic receptionist: extraction, tiers, replies from
    /// `prompts/phrases.toml` (default; offline, no model).
    #[default]
    Rules,
    /// A model with the receptionist prompt (`prompts/receptionist.md`) and
    /// tools, on the same action layer; the rules brain takes over a call
    /// whose model fails. Needs a real model: `[providers.llm] kind =
    /// "openai"` (OpenAI or any OpenAI-compatible server).
    Llm,
    /// Greets with `[call] greeting` and answers every turn with the
    /// configured LLM provider (the load test's fixed-latency fake).
    Scripted,
}

/// `[brain]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainConfig {
    /// `rules` (default) | `llm` | `scripted`.
    pub kind: BrainKind,
    /// A phrases file replacing the embedded `prompts/phrases.toml`
    /// (default: none; relative to the config file). The llm brain says
    /// its greeting and closing lines from it too.
    pub phrases: Option<PathBuf>,
    /// A knowledge file replacing the embedded `prompts/knowledge.md`
    /// (default: none; relative to the config file). The llm brain's
    /// prompt carries it.
    pub knowledge: Option<PathBuf>,
    /// `kind = "llm"`: a system prompt replacing the embedded
    /// `prompts/receptionist.md` (default: none; relative to the config
    /// file; placeholders `{business}`, `{knowledge}`, `{b_team_size}`,
    /// `{b_callback_minutes}`, `{c_callback_minutes}`, `{book_intents}`,
    /// `{tier_b}`).
    pub prompt: Option<PathBuf>,
    /// `kind = "llm"`: upper bound on tokens per model reply (default 300,
    /// 16–4096).
    pub max_tokens: u32,
}

impl Default for BrainConfig {
    fn default() -> Self {
        BrainConfig {
            kind: BrainKind::default(),
            phrases: None,
            knowledge: None,
            prompt: None,
            max_tokens: 300,
        }
    }
}

impl BrainConfig {
    /// Range checks; errors name the key. (That `kind = "llm"` has a model
    /// that can call tools is checked with the providers, in
    /// [`crate::config::Config::validate`].)
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=4096).contains(&self.max_tokens) {
            return Err(ConfigError::invalid(
                "brain.max_tokens",
                format!("{} is out of range; allowed 16–4096", self.max_tokens),
            ));
        }
        Ok(())
    }
}

/// `[tiers]`: the routing tiers A–D of seed 003.
///
/// A: clear intent for a bookable service with availability → book now.
/// B: larger-deal signals → warm transfer in hours, else a priority callback.
/// C: genuine interest, standard size, no urgency → standard callback.
/// D: a factual question answered → CRM note, no callback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersConfig {
    /// A stated team size at or over this makes a lead tier B (default 10, 2–100000).
    pub b_team_size: u32,
    /// More than one site makes a lead tier B (default true).
    pub b_multi_site: bool,
    /// A tight timeline ("urgent", "this week", "as soon as possible") makes
    /// a lead tier B (default true).
    pub b_urgent: bool,
    /// Tier B in business hours is put through to a person at once (default
    /// true); false, or after hours: a priority callback.
    pub b_transfer: bool,
    /// Tier B callback due within this many minutes (after hours: of the
    /// next opening) (default 5, 1–1440).
    pub b_callback_minutes: u32,
    /// Tier C callback due within this many business-hours minutes (default 120, 5–10080).
    pub c_callback_minutes: u32,
    /// Intents that can be booked straight away (tier A) (default
    /// `["new_enquiry", "referral", "pricing"]`; pricing books a scoping call).
    pub book_intents: Vec<String>,
    /// Days ahead the receptionist looks for slots to offer (default 14, 1–60).
    pub slot_days: u32,
}

impl Default for TiersConfig {
    fn default() -> Self {
        TiersConfig {
            b_team_size: 10,
            b_multi_site: true,
            b_urgent: true,
            b_transfer: true,
            b_callback_minutes: 5,
            c_callback_minutes: 120,
            book_intents: vec!["new_enquiry".into(), "referral".into(), "pricing".into()],
            slot_days: 14,
        }
    }
}

/// Intent names `book_intents` may list.
pub const INTENT_NAMES: [&str; 5] = ["new_enquiry", "pricing", "support", "referral", "unclear"];

impl TiersConfig {
    /// Range checks; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u32, u32, u32); 4] = [
            ("tiers.b_team_size", self.b_team_size, 2, 100_000),
            ("tiers.b_callback_minutes", self.b_callback_minutes, 1, 1440),
            (
                "tiers.c_callback_minutes",
                self.c_callback_minutes,
                5,
                10_080,
            ),
            ("tiers.slot_days", self.slot_days, 1, 60),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(ConfigError::invalid(
                    key,
                    format!("{v} is out of range; allowed {lo}–{hi}"),
                ));
            }
        }
        for (i, b) in self.book_intents.iter().enumerate() {
            if !INTENT_NAMES.contains(&b.as_str()) || b == "unclear" || b == "support" {
                return Err(ConfigError::invalid(
                    format!("tiers.book_intents[{i}]"),
                    format!("`{b}` is not a bookable intent (new_enquiry, pricing, referral)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether calls of `intent` can be booked now.
    pub fn books(&self, intent: &str) -> bool {
        self.book_intents.iter().any(|b| b == intent)
    }
}
