//! Scenarios: what each emulated caller says and when. A TOML file with one
//! array of steps (format in `docs/loadtest.md`):
//!
//! ```toml
//! steps = [
//!   { silence = 500 },                                             # ms of line noise
//!   { say = "demo_request" },                                      # fixture name or .wav path
//!   { wait_reply = 5000 },                                         # turn timeout, ms
//!   { interrupt = { fixture = "existing_customer", after_ms = 500 } },
//!   "repeat",                                                      # back to the first step
//! ]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::clip::Clip;
use super::LoadtestError;

/// The built-in scenario (used without `--scenario`).
pub const DEFAULT_SCENARIO: &str = r#"steps = [
  { silence = 500 },
  { say = "demo_request" },
  { wait_reply = 5000 },
  { silence = 300 },
  { say = "pricing" },
  { interrupt = { fixture = "existing_customer", after_ms = 500 } },
  { wait_reply = 5000 },
  { say = "referral" },
  { wait_reply = 5000 },
  "repeat",
]
"#;

/// One step as written in the file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum StepSpec {
    Silence(u64),
    Say(String),
    WaitReply(u64),
    Interrupt { fixture: String, after_ms: u64 },
    Repeat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    steps: Vec<StepSpec>,
}

/// One resolved step.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send line noise for this many 20 ms frames.
    Silence {
        /// Frames (ms / 20, rounded up).
        frames: u32,
    },
    /// Speak a clip.
    Say(Arc<Clip>),
    /// Send line noise until the reply to the last utterance has started and
    /// finished, or no reply started within `timeout` (a missed turn).
    WaitReply {
        /// Turn timeout from the end of the utterance.
        timeout: Duration,
    },
    /// Wait until the bot's reply has played for `after`, then speak `clip`
    /// over it (a barge-in).
    Interrupt {
        /// What to say.
        clip: Arc<Clip>,
        /// How far into the reply.
        after: Duration,
    },
    /// Start again from the first step.
    Repeat,
}

/// A resolved scenario: steps with their audio loaded.
#[derive(Debug)]
pub struct Scenario {
    /// Where it came from (`built-in` or the file path).
    pub source: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// What silence sends.
    pub noise: Arc<Clip>,
}

impl Scenario {
    /// Parse `text` and load its fixtures: a bare name resolves to
    /// `fixtures/<name>.wav`; a value ending in `.wav` is a path relative to
    /// `base` (the scenario file's directory). Line noise is
    /// `fixtures/line_noise.wav`, synthesised when absent.
    pub fn load(
        source: &str,
        text: &str,
        fixtures: &Path,
        base: &Path,
    ) -> Result<Self, LoadtestError> {
        let bad = |reason: String| LoadtestError::Scenario {
            origin: source.to_string(),
            reason,
        };
        let file: ScenarioFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.steps.is_empty() {
            return Err(bad("no steps".into()));
        }
        if let Some(i) = file.steps.iter().position(|s| *s == StepSpec::Repeat) {
            if i + 1 != file.steps.len() {
                return Err(bad("`repeat` must be the last step".into()));
            }
            let sends_audio = file.steps.iter().any(|s| match s {
                StepSpec::Silence(ms) => *ms > 0,
                StepSpec::Say(_) | StepSpec::Interrupt { .. } => true,
                _ => false,
            });
            if !sends_audio {
                return Err(bad(
                    "a repeating scenario needs a `silence` or `say` step".into()
                ));
            }
        }
        let mut cache: HashMap<PathBuf, Arc<Clip>> = HashMap::new();
        let mut clip = |name: &str| -> Result<Arc<Clip>, LoadtestError> {
            let path = if name.ends_with(".wav") {
                base.join(name)
            } else {
                fixtures.join(format!("{name}.wav"))
            };
            if let Some(c) = cache.get(&path) {
                return Ok(c.clone());
            }
            let c = Arc::new(Clip::load_wav(name, &path)?);
            cache.insert(path, c.clone());
            Ok(c)
        };
        let mut steps = Vec::with_capacity(file.steps.len());
        for s in &file.steps {
            steps.push(match s {
                StepSpec::Silence(ms) => Step::Silence {
                    frames: ms.div_ceil(20).min(u64::from(u32::MAX)) as u32,
                },
                StepSpec::Say(f) => Step::Say(clip(f)?),
                StepSpec::WaitReply(ms) => Step::WaitReply {
                    timeout: Duration::from_millis(*ms),
                },
                StepSpec::Interrupt { fixture, after_ms } => Step::Interrupt {
                    clip: clip(fixture)?,
                    after: Duration::from_millis(*after_ms),
                },
                StepSpec::Repeat => Step::Repeat,
            });
        }
        let noise_path = fixtures.join("line_noise.wav");
        let noise = if noise_path.exists() {
            Arc::new(Clip::load_wav("line_noise", &noise_path)?)
        } else {
            Arc::new(Clip::synthetic_noise())
        };
        Ok(Self {
            source: source.to_string(),
            steps,
            noise,
        })
    }

    /// Load `--scenario FILE`, or the built-in scenario when `None`.
    pub fn from_args(path: Option<&Path>, fixtures: &Path) -> Result<Self, LoadtestError> {
        match path {
            None => Self::load("built-in", DEFAULT_SCENARIO, fixtures, Path::new(".")),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| LoadtestError::Scenario {
                    origin: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                let base = p.parent().unwrap_or(Path::new("."));
                Self::load(&p.display().to_string(), &text, fixtures, base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_parses() {
        let f: ScenarioFile =
            toml::from_str(DEFAULT_SCENARIO).unwrap_or(ScenarioFile { steps: vec![] });
        assert_eq!(f.steps.len(), 10);
        assert_eq!(f.steps[0], StepSpec::Silence(500));
        assert_eq!(
            f.steps[5],
            StepSpec::Interrupt {
                fixture: "existing_customer".into(),
                after_ms: 500
            }
        );
        assert_eq!(f.steps[9], StepSpec::Repeat);
    }

    #[test]
    fn bad_scenarios_are_rejected_with_a_reason() {
        let dir = Path::new("/nonexistent");
        let cases = [
            ("steps = []", "no steps"),
            ("steps = [\"repeat\", { silence = 1 }]", "last step"),
            ("steps = [{ wait_reply = 1 }, \"repeat\"]", "needs a"),
            ("steps = [{ shout = \"x\" }]", "unknown variant"),
            ("steps = [{ say = \"missing\" }]", "missing.wav"),
        ];
        for (text, want) in cases {
            match Scenario::load("t", text, dir, dir) {
                Ok(_) => panic!("{text} accepted"),
                Err(e) => assert!(e.to_string().contains(want), "{text}: {e}"),
            }
        }
        // Silence only, no fixtures needed: line noise is synthesised.
        let s = Scenario::load("t", "steps = [{ silence = 30 }, \"repeat\"]", dir, dir);
        assert!(matches!(s.map(|s| s.steps.len()), Ok(2)));
    }
}
