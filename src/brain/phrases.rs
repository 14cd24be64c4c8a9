//! What the rules brain says ([`Phrases`], from `prompts/phrases.toml`) and
//! what it knows ([`Knowledge`], from `prompts/knowledge.md`): data, not
//! code. Both are embedded (`include_str!`) and may be replaced by files
//! named in `[brain]`; either way they are parsed and checked once, at
//! start-up, so a bad file stops `check-config` with the key named.

use std::path::Path;

use serde::Deserialize;

use crate::config_error::ConfigError;

/// The embedded phrases.
pub const PHRASES_TOML: &str = include_str!("../../prompts/phrases.toml");
/// The embedded knowledge.
pub const KNOWLEDGE_MD: &str = include_str!("../../prompts/knowledge.md");

/// Placeholders a phrase may use.
const PLACEHOLDERS: [&str; 11] = [
    "business", "name", "slot1", "slot2", "slot", "owner", "range", "service", "answer", "minutes",
    "referrer",
];

macro_rules! phrases {
    ($($field:ident),* $(,)?) => {
        /// Every line the rules brain can say (see `prompts/phrases.toml`).
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct Phrases {
            $(pub $field: String,)*
        }

        impl Phrases {
            fn each(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($field), self.$field.as_str()),)*]
            }
        }
    };
}

phrases!(
    greeting,
    recording_notice,
    greeting_customer,
    greeting_returning,
    transfer_failed,
    reask,
    how_can_i_help,
    ask_name,
    ask_name_spell,
    ack_name,
    ask_size,
    ask_time,
    offer_slots,
    offer_one_slot,
    no_slots,
    pick_slot,
    slot_taken,
    readback,
    ask_email,
    booked,
    released,
    callback_priority,
    callback_morning,
    callback_standard,
    callback_after_hours,
    ask_number,
    ask_new_number,
    ack_number,
    transfer,
    handoff,
    support_ask,
    support_transfer,
    pricing_range,
    pricing_which,
    pricing_bespoke,
    answer,
    referral_ask,
    referral_offer,
    opt_out,
    no_sensitive,
    anything_else,
    goodbye,
    didnt_catch,
    number_slowly,
    number_fallback,
    human_after_hours,
);

impl Phrases {
    /// Parse and check a phrases file (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Phrases, ConfigError> {
        let p: Phrases = toml::from_str(text).map_err(|e| {
            ConfigError::invalid(
                origin,
                e.message().lines().next().unwrap_or("invalid").to_string(),
            )
        })?;
        for (key, text) in p.each() {
            if text.trim().is_empty() {
                return Err(ConfigError::invalid(format!("{origin}: {key}"), "is empty"));
            }
            let mut rest = text;
            while let Some(i) = rest.find('{') {
                let after = &rest[i + 1..];
                let Some(j) = after.find('}') else {
                    return Err(ConfigError::invalid(
                        format!("{origin}: {key}"),
                        "has an unclosed `{`",
                    ));
                };
                let name = &after[..j];
                if !PLACEHOLDERS.contains(&name) {
                    return Err(ConfigError::invalid(
                        format!("{origin}: {key}"),
                        format!("unknown placeholder `{{{name}}}`"),
                    ));
                }
                rest = &after[j + 1..];
            }
        }
        Ok(p)
    }

    /// The embedded phrases (checked by a unit test, so this cannot fail).
    pub fn embedded() -> Phrases {
        Phrases::parse(PHRASES_TOML, "prompts/phrases.toml")
            // The embedded file is checked by `embedded_files_parse` below.
            .expect("embedded phrases are valid")
    }
}

/// Fill `{key}` placeholders of `template` from `vars`.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// One fact: a line of `prompts/knowledge.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// For services and prices: the service name (before the first `:`).
    pub subject: String,
    /// What is said (after the `:` for services and prices; the whole line otherwise).
    pub text: String,
    /// Words that point to this fact.
    pub keywords: Vec<String>,
}

impl Fact {
    /// A price fact without a published range.
    pub fn bespoke(&self) -> bool {
        self.text.trim().eq_ignore_ascii_case("bespoke")
    }
}

/// The business's knowledge, by section.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    /// `## Services`
    pub services: Vec<Fact>,
    /// `## Prices`
    pub prices: Vec<Fact>,
    /// `## Hours`
    pub hours: Vec<Fact>,
    /// `## Location`
    pub location: Vec<Fact>,
}

impl Knowledge {
    /// Parse a knowledge file: `## Services|Prices|Hours|Location` sections
    /// of `- subject: text | keyword, keyword` lines. Prices must be ranges
    /// ("from £49 to £149", "£49–£149") or `bespoke`, never a single number.
    pub fn parse(text: &str, origin: &str) -> Result<Knowledge, ConfigError> {
        let mut k = Knowledge::default();
        let mut section: Option<&str> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(h) = line.strip_prefix("## ") {
                section = Some(match h.trim().to_lowercase().as_str() {
                    "services" => "services",
                    "prices" | "pricing" => "prices",
                    "hours" | "opening hours" => "hours",
                    "location" | "address" => "location",
                    other => {
                        return Err(ConfigError::invalid(
                            format!("{origin}: line {}", n + 1),
                            format!(
                                "unknown section `{other}` (Services, Prices, Hours, Location)"
                            ),
                        ))
                    }
                });
                continue;
            }
            let Some(item) = line.strip_prefix("- ") else {
                continue;
            };
            let Some(sec) = section else { continue };
            let (body, kw) = item.split_once('|').unwrap_or((item, ""));
            let keywords: Vec<String> = kw
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect();
            let (subject, text) = match (sec, body.split_once(':')) {
                ("services" | "prices", Some((s, t))) => {
                    (s.trim().to_string(), t.trim().to_string())
                }
                ("services" | "prices", None) => {
                    return Err(ConfigError::invalid(
                        format!("{origin}: line {}", n + 1),
                        "a service or price line needs `name: text`",
                    ))
                }
                _ => (String::new(), body.trim().to_string()),
            };
            let fact = Fact {
                subject,
                text,
                keywords,
            };
            if sec == "prices" && !fact.bespoke() && !is_range(&fact.text) {
                return Err(ConfigError::invalid(
                    format!("{origin}: line {}", n + 1),
                    "a price must be a range (two amounts) or `bespoke`, never a single number",
                ));
            }
            match sec {
                "services" => k.services.push(fact),
                "prices" => k.prices.push(fact),
                "hours" => k.hours.push(fact),
                _ => k.location.push(fact),
            }
        }
        Ok(k)
    }

    /// The embedded knowledge (checked by a unit test, so this cannot fail).
    pub fn embedded() -> Knowledge {
        Knowledge::parse(KNOWLEDGE_MD, "prompts/knowledge.md")
            // The embedded file is checked by `embedded_files_parse` below.
            .expect("embedded knowledge is valid")
    }
}

/// At least two separate amounts.
fn is_range(text: &str) -> bool {
    let mut amounts = 0;
    let mut in_num = false;
    for c in text.chars() {
        let d = c.is_ascii_digit();
        if d && !in_num {
            amounts += 1;
        }
        in_num = d || (in_num && matches!(c, ',' | '.'));
    }
    amounts >= 2
}

/// Load phrases and knowledge: the files `[brain]` names (read here, at
/// start-up) or the embedded ones.
pub fn load(
    phrases: Option<&Path>,
    knowledge: Option<&Path>,
) -> Result<(Phrases, Knowledge), ConfigError> {
    let read = |key: &str, p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", p.display())))
    };
    let ph = match phrases {
        Some(p) => Phrases::parse(&read("brain.phrases", p)?, "brain.phrases")?,
        None => Phrases::embedded(),
    };
    let kn = match knowledge {
        Some(p) => Knowledge::parse(&read("brain.knowledge", p)?, "brain.knowledge")?,
        None => Knowledge::embedded(),
    };
    Ok((ph, kn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_parse() {
        Phrases::parse(PHRASES_TOML, "p").unwrap();
        let k = Knowledge::parse(KNOWLEDGE_MD, "k").unwrap();
        assert!(!k.prices.is_empty() && !k.hours.is_empty() && !k.location.is_empty());
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = Phrases::parse("greeting = \"hi\"\n", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
        let mut text = PHRASES_TOML.replace("{business}, how", "{shop}, how");
        let e = Phrases::parse(&text, "p").unwrap_err().to_string();
        assert!(e.contains("{shop}"), "{e}");
        text = "## Prices\n- Widgets: £99 | widget\n".into();
        let e = Knowledge::parse(&text, "k").unwrap_err().to_string();
        assert!(e.contains("range"), "{e}");
    }
}
