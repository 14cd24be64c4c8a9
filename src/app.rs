//! The composition root: builds every shared service once, from a validated
//! [`Config`] and an [`Env`], and hands out handles.
//!
//! Order (fixed): [`App::validate`] checks everything `serve` would reject —
//! config values, the environment variables the configured features need,
//! the database URL, provider files — without connecting anything; then
//! [`App::build`] connects and migrates the store and builds the calendar,
//! CRM and providers. The HTTP router, the media driver and the CLI commands
//! take their handles from the [`App`]; nothing else reads the environment or
//! constructs a service.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio_util::task::TaskTracker;

use crate::booking::{CalcomCalendar, Calendar, CalendarProvider, LocalCalendar};
use crate::call::conversation::{ConversationFactory, ScriptedConversations};
use crate::call::driver::CallServices;
use crate::call::record::RecordWriter;
use crate::call::tools::StoreBackedTools;
use crate::call::ToolExecutor;
use crate::clock::{Clock, TokioSleeper};
use crate::config::brain::BrainKind;
use crate::config::{env, Config, ConfigError, Env};
use crate::crm::{Crm, CrmProvider, HubspotCrm, LocalCrm};
use crate::metrics::Metrics;
use crate::notify::Notify;
use crate::phone;
use crate::pii::Secret;
use crate::providers::Providers;
use crate::routing::signature::StreamKey;
use crate::store::{Store, StoreError};

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad config or a missing environment variable (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The business services the API and the call's actions share: the same
/// calendar the brain books on is the one `/api/holds` uses.
#[derive(Debug, Clone)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// The calendar (local or Cal.com).
    pub calendar: Arc<dyn Calendar>,
    /// The CRM (local or HubSpot).
    pub crm: Arc<dyn Crm>,
    /// Source of wall-clock `now`.
    pub clock: Arc<dyn Clock>,
    /// Region for phone numbers written without a country code.
    pub region: phonenumber::country::Id,
    /// The business's time zone.
    pub business_tz: Tz,
    /// Hold time when a request gives none.
    pub hold_ttl: Duration,
    /// `TWILIO_AUTH_TOKEN`: checks `X-Twilio-Signature` and keys the stream
    /// token (`None`: every Twilio webhook answers 403).
    pub twilio_auth_token: Option<Secret<String>>,
    /// Slack cards, call-back links, the post-call webhook (`None`: none
    /// of them is configured).
    pub notify: Option<Notify>,
}

/// Everything built once per process.
#[derive(Clone)]
pub struct App {
    /// The validated config.
    pub config: Arc<Config>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// STT, LLM, TTS.
    pub providers: Providers,
    /// Store, calendar, CRM, clock.
    pub services: Services,
    /// Bearer token of `/api` (`None`: every API route answers 401).
    pub api_token: Option<Secret<String>>,
    /// Makes each media call's conversation (`[brain] kind`).
    pub conversations: Arc<dyn ConversationFactory>,
    /// The action layer the conversations' tool jobs run on.
    pub tools: Arc<dyn ToolExecutor>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("providers", &self.providers)
            .field("store", &self.services.store.backend())
            .finish_non_exhaustive()
    }
}

/// What [`App::validate`] resolved, so [`App::build`] does not resolve twice.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The database URL to connect to.
    pub database_url: String,
    /// Phone region.
    pub region: phonenumber::country::Id,
    /// Business time zone.
    pub business_tz: Tz,
}

impl App {
    /// Everything `serve` would reject, checked without connecting anything:
    /// `check-config` runs exactly this. Errors name the key or the variable.
    pub fn validate(config: &Config, env: &Env) -> Result<Validated, ConfigError> {
        config.validate()?;
        crate::routing::plan::validate(config)?;
        let database_url = config.database_url(env)?;
        if config.calendar.provider == CalendarProvider::Calcom
            && env.secret(env::CALCOM_API_KEY).is_none()
        {
            return Err(ConfigError::missing_env(
                "calendar.provider",
                "\"calcom\"",
                env::CALCOM_API_KEY,
            ));
        }
        if config.crm.provider == CrmProvider::Hubspot && env.secret(env::HUBSPOT_TOKEN).is_none() {
            return Err(ConfigError::missing_env(
                "crm.provider",
                "\"hubspot\"",
                env::HUBSPOT_TOKEN,
            ));
        }
        if !config.numbers.is_empty() && env.secret(env::TWILIO_AUTH_TOKEN).is_none() {
            // Without the token no webhook signature can be checked, so a
            // configured number could never be routed.
            return Err(ConfigError::missing_env(
                "numbers",
                "a [[numbers]] entry",
                env::TWILIO_AUTH_TOKEN,
            ));
        }
        notify_env(config, env)?;
        // Each configured provider's key (the first missing one is named).
        for need in config.providers.required_env() {
            if env.secret(need.var).is_none() {
                return Err(ConfigError::missing_env(&need.key, &need.value, need.var));
            }
        }
        // The rules brain's phrases and knowledge (embedded or the files
        // `[brain]` names), parsed and checked.
        crate::brain::phrases::load(
            config.brain.phrases.as_deref(),
            config.brain.knowledge.as_deref(),
        )?;
        // The llm brain's prompt (embedded or the file `[brain]` names).
        if config.brain.kind == BrainKind::Llm || config.brain.prompt.is_some() {
            crate::brain::llm::load_prompt(config.brain.prompt.as_deref())?;
        }
        business_hours(config, chrono_tz::UTC)?;
        // Files the providers load at start-up (the offline models, the
        // scripted TTS audio).
        Providers::preflight(config, env)
            .map_err(|e| ConfigError::invalid(e.key.clone(), e.message.clone()))?;
        let region = phone::region(&config.business.default_region).map_err(|_| {
            ConfigError::invalid(
                "business.default_region",
                format!(
                    "`{}` is not an ISO 3166 region (e.g. GB, US)",
                    config.business.default_region
                ),
            )
        })?;
        let business_tz: Tz = config
            .business
            .timezone
            .parse()
            .map_err(|_| ConfigError::invalid("business.timezone", "not an IANA time zone"))?;
        Ok(Validated {
            database_url,
            region,
            business_tz,
        })
    }

    /// Validate, then connect and migrate the store and build every service.
    pub async fn build(config: Config, env: &Env, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let v = App::validate(&config, env)?;
        let metrics = Arc::new(Metrics::default());
        let providers = Providers::from_config(&config, env, metrics.clone())
            .map_err(|e| ConfigError::invalid(e.key.clone(), e.message.clone()))?;
        let store = Store::connect(&v.database_url, &config.storage).await?;
        let services = Services::build(&config, env, &v, store, clock)?;
        let (conversations, tools) = build_brain(&config, &services)?;
        Ok(App {
            config: Arc::new(config),
            metrics,
            providers,
            services,
            api_token: env.secret(env::API_TOKEN),
            conversations,
            tools,
        })
    }
}

impl Services {
    /// Calendar and CRM over `store`, as `config` asks (secrets from `env`).
    pub fn build(
        config: &Config,
        env: &Env,
        v: &Validated,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Services, ConfigError> {
        let calendar: Arc<dyn Calendar> = match config.calendar.provider {
            CalendarProvider::Local => Arc::new(LocalCalendar::new(
                store.clone(),
                &config.calendar,
                clock.clone(),
            )?),
            CalendarProvider::Calcom => {
                let key = env.secret(env::CALCOM_API_KEY).ok_or_else(|| {
                    ConfigError::missing_env("calendar.provider", "\"calcom\"", env::CALCOM_API_KEY)
                })?;
                Arc::new(CalcomCalendar::new(
                    &config.calendar,
                    key,
                    clock.clone(),
                    Arc::new(TokioSleeper),
                )?)
            }
        };
        let crm: Arc<dyn Crm> = match config.crm.provider {
            CrmProvider::Local => Arc::new(LocalCrm::new(store.clone(), clock.clone())),
            CrmProvider::Hubspot => {
                let token = env.secret(env::HUBSPOT_TOKEN).ok_or_else(|| {
                    ConfigError::missing_env("crm.provider", "\"hubspot\"", env::HUBSPOT_TOKEN)
                })?;
                Arc::new(HubspotCrm::new(
                    &config.crm.hubspot,
                    token,
                    Arc::new(TokioSleeper),
                )?)
            }
        };
        // Leads, tasks and meetings are synced through the outbox to a
        // remote CRM; the local CRM is the store itself.
        let remote_crm = (config.crm.provider == CrmProvider::Hubspot).then(|| crm.clone());
        let notify = build_notify(config, env, v, &store, &clock, remote_crm)?;
        Ok(Services {
            notify,
            store,
            calendar,
            crm,
            clock,
            region: v.region,
            business_tz: v.business_tz,
            hold_ttl: config.calendar.rules().hold_ttl,
            twilio_auth_token: env.secret(env::TWILIO_AUTH_TOKEN),
        })
    }
}

/// The environment the notify features need: a bot token in bot mode, the
/// link secret wherever links are handed out (Slack cards, reps), the webhook
/// secret with a post-call URL.
fn notify_env(config: &Config, env: &Env) -> Result<(), ConfigError> {
    use crate::config::notify::SlackMode;
    let mode = match config.slack.mode {
        SlackMode::Off => None,
        SlackMode::Bot => Some("\"bot\""),
        SlackMode::Webhook => Some("\"webhook\""),
    };
    if config.slack.mode == SlackMode::Bot && env.secret(env::SLACK_BOT_TOKEN).is_none() {
        return Err(ConfigError::missing_env(
            "slack.mode",
            "\"bot\"",
            env::SLACK_BOT_TOKEN,
        ));
    }
    if let Some(m) = mode {
        if env.secret(env::LINK_SECRET).is_none() {
            return Err(ConfigError::missing_env("slack.mode", m, env::LINK_SECRET));
        }
    }
    if !config.links.reps.is_empty() && env.secret(env::LINK_SECRET).is_none() {
        return Err(ConfigError::missing_env(
            "links.reps",
            "a rep list",
            env::LINK_SECRET,
        ));
    }
    if !config.webhooks.post_call_url.is_empty() && env.secret(env::WEBHOOK_SECRET).is_none() {
        return Err(ConfigError::missing_env(
            "webhooks.post_call_url",
            "a URL",
            env::WEBHOOK_SECRET,
        ));
    }
    if !config.twilio.sms_from.is_empty() {
        for var in [env::TWILIO_ACCOUNT_SID, env::TWILIO_AUTH_TOKEN] {
            if env.secret(var).is_none() {
                return Err(ConfigError::missing_env("twilio.sms_from", "a number", var));
            }
        }
    }
    Ok(())
}

/// Opening hours for in-hours / after-hours decisions: `[business.hours]`
/// in `business.timezone`, closed on `business.holidays` (validated as
/// dates by `Config::validate`).
pub(crate) fn business_hours(
    config: &Config,
    tz: Tz,
) -> Result<crate::notify::BusinessHours, ConfigError> {
    let mut holidays = Vec::with_capacity(config.business.holidays.len());
    for (i, h) in config.business.holidays.iter().enumerate() {
        let d = chrono::NaiveDate::parse_from_str(h.trim(), "%Y-%m-%d").map_err(|_| {
            ConfigError::invalid(format!("business.holidays[{i}]"), "not a date (YYYY-MM-DD)")
        })?;
        holidays.push(d);
    }
    crate::notify::BusinessHours::new("business.hours", tz, &config.business.hours, &holidays)
}

fn build_notify(
    config: &Config,
    env: &Env,
    v: &Validated,
    store: &Store,
    clock: &Arc<dyn Clock>,
    crm: Option<Arc<dyn Crm>>,
) -> Result<Option<Notify>, ConfigError> {
    use crate::config::notify::SlackMode;
    use crate::notify::{dial::TwilioDialer, slack::SlackClient, webhook::WebhookClient};
    let link_secret = env.secret(env::LINK_SECRET);
    let slack_on = config.slack.mode != SlackMode::Off;
    let hook_on = !config.webhooks.post_call_url.is_empty();
    let sms_on = !config.twilio.sms_from.is_empty();
    if !slack_on && !hook_on && !sms_on && crm.is_none() && link_secret.is_none() {
        return Ok(None);
    }
    let client_err = |key: &str| {
        let key = key.to_string();
        move |e: reqwest::Error| {
            ConfigError::invalid(key, format!("cannot build the HTTP client: {e}"))
        }
    };
    let slack = if slack_on {
        Some(
            SlackClient::new(&config.slack, env.secret(env::SLACK_BOT_TOKEN))
                .map_err(client_err("slack"))?,
        )
    } else {
        None
    };
    let webhook = match env.secret(env::WEBHOOK_SECRET) {
        Some(secret) if hook_on => Some(
            WebhookClient::new(
                &config.webhooks.post_call_url,
                secret,
                Duration::from_millis(config.webhooks.timeout_ms),
            )
            .map_err(client_err("webhooks"))?,
        ),
        _ => None,
    };
    let dialer = match (
        env.secret(env::TWILIO_ACCOUNT_SID),
        env.secret(env::TWILIO_AUTH_TOKEN),
    ) {
        (Some(sid), Some(token)) if !config.links.caller_id.is_empty() => Some(
            TwilioDialer::new(
                &config.twilio.api_base_url,
                sid,
                token,
                &config.links.caller_id,
            )
            .map_err(client_err("twilio"))?,
        ),
        _ => None,
    };
    let sms = match (
        env.secret(env::TWILIO_ACCOUNT_SID),
        env.secret(env::TWILIO_AUTH_TOKEN),
    ) {
        (Some(sid), Some(token)) if sms_on => Some(
            crate::notify::sms::TwilioSms::new(
                &config.twilio.api_base_url,
                sid,
                token,
                &config.twilio.sms_from,
                Duration::from_secs(10),
            )
            .map_err(client_err("twilio"))?,
        ),
        _ => None,
    };
    let media = match (
        env.secret(env::TWILIO_ACCOUNT_SID),
        env.secret(env::TWILIO_AUTH_TOKEN),
    ) {
        (Some(sid), Some(token)) => Some(
            crate::notify::media::TwilioMedia::new(&config.twilio.api_base_url, sid, token)
                .map_err(client_err("twilio"))?,
        ),
        _ => None,
    };
    Ok(Some(Notify::new(crate::notify::NotifyParts {
        store: store.clone(),
        clock: clock.clone(),
        sleeper: Arc::new(TokioSleeper),
        hours: business_hours(config, v.business_tz)?,
        public_url: config.server.public_url.clone(),
        links: link_secret.as_ref().map(crate::notify::LinkSigner::new),
        link_ttl: chrono::Duration::hours(i64::from(config.links.ttl_h)),
        reps: config.links.reps.clone(),
        dialer,
        slack_cfg: config.slack.clone(),
        slack,
        slack_signing: env.secret(env::SLACK_SIGNING_SECRET),
        webhook,
        sms,
        sms_cfg: config.sms.clone(),
        business_name: config.business.name.clone(),
        own_numbers: own_numbers(config),
        recording_dir: config.recording.dir.clone(),
        media,
        crm,
    })))
}

/// Every number of the business itself (its Twilio numbers, forwarding
/// and team phones, the business phone, the SMS sender and click-to-call
/// caller ID, the reps' phones): texts never go to them.
fn own_numbers(config: &Config) -> Vec<String> {
    let mut own: Vec<String> = Vec::new();
    own.extend(config.numbers.iter().map(|n| n.e164.clone()));
    own.extend(config.numbers.iter().map(|n| n.external_phone.clone()));
    own.extend(config.users.iter().flat_map(|u| u.phones.iter().cloned()));
    own.extend(config.links.reps.iter().map(|r| r.phone.clone()));
    own.push(config.location.business_phone.clone());
    own.push(config.twilio.sms_from.clone());
    own.push(config.links.caller_id.clone());
    own.retain(|n| !n.is_empty());
    own.sort();
    own.dedup();
    own
}

impl App {
    /// The action layer as a call's tool runner drives it: each job claimed
    /// in the store first, so it runs at most once per call and job id.
    pub fn call_tools(&self) -> Arc<dyn ToolExecutor> {
        Arc::new(StoreBackedTools::new(
            self.tools.clone(),
            self.services.store.clone(),
            self.services.clock.clone(),
        ))
    }

    /// The handles a media call needs: the conversation `[brain]` chose and
    /// the action layer, each job claimed in the store first (exactly once
    /// per call and job id), the process-wide record writer, and the
    /// stream-token key when numbers are configured.
    pub fn call_services(&self, tracker: TaskTracker) -> CallServices {
        let s = &self.services;
        CallServices {
            config: self.config.clone(),
            providers: self.providers.clone(),
            metrics: self.metrics.clone(),
            conversations: self.conversations.clone(),
            tools: self.call_tools(),
            records: Some(RecordWriter::start(
                s.store.clone(),
                self.metrics.clone(),
                !self.config.webhooks.post_call_url.is_empty(),
            )),
            clock: s.clock.clone(),
            region: Some(s.region),
            tracker,
            tap: None,
            // With numbers configured, App::validate requires the token.
            stream_key: (!self.config.numbers.is_empty())
                .then(|| {
                    s.twilio_auth_token
                        .as_ref()
                        .map(|t| Arc::new(StreamKey::from_auth_token(t.expose())))
                })
                .flatten(),
        }
    }
}

/// The conversation factory and the action layer, as [`build_brain`] makes them.
pub type BrainHandles = (Arc<dyn ConversationFactory>, Arc<dyn ToolExecutor>);

/// The conversation factory `[brain] kind` asks for, and the action layer
/// its tool jobs run on (the same calendar, CRM and store the API uses).
pub fn build_brain(config: &Config, services: &Services) -> Result<BrainHandles, ConfigError> {
    use crate::brain::actions::{ActionParts, Actions};
    use crate::brain::llm::{LlmBrains, LlmSettings};
    use crate::brain::rules::{RulesBrains, RulesSettings};
    let hours = business_hours(config, services.business_tz)?;
    let actions = Actions::new(ActionParts {
        store: services.store.clone(),
        calendar: services.calendar.clone(),
        crm: services.crm.clone(),
        clock: services.clock.clone(),
        region: services.region,
        hours,
        tiers: config.tiers.clone(),
        hold_ttl: services.hold_ttl,
        notify: services.notify.clone(),
    });
    // The rules brain's settings: the rules brain's own, and the llm
    // brain's lines, knowledge, tiers and fallback.
    let rules = || -> Result<RulesSettings, ConfigError> {
        let (phrases, knowledge) = crate::brain::phrases::load(
            config.brain.phrases.as_deref(),
            config.brain.knowledge.as_deref(),
        )?;
        Ok(RulesSettings {
            business: config.business.name.clone(),
            phrases,
            knowledge,
            tiers: config.tiers.clone(),
            business_tz: services.business_tz,
            region: services.region,
            slot_end_ms: config.vad.slot_end_ms,
            always_recorded: config.recording.always,
        })
    };
    let conversations: Arc<dyn ConversationFactory> = match config.brain.kind {
        BrainKind::Rules => Arc::new(RulesBrains::new(rules()?)),
        BrainKind::Llm => {
            let prompt = crate::brain::llm::load_prompt(config.brain.prompt.as_deref())?;
            Arc::new(LlmBrains::new(LlmSettings::new(
                rules()?,
                &prompt,
                config.brain.max_tokens,
            )))
        }
        BrainKind::Scripted => Arc::new(ScriptedConversations {
            greeting: config.call.greeting.clone(),
            system_prompt: crate::call::conversation::SYSTEM_PROMPT
                .replace("{business}", &config.business.name),
        }),
    };
    Ok((conversations, Arc::new(actions)))
}
