//! The config error type and the checks shared by every section's validator.
//!
//! A leaf: `config` composes the sections that `booking`, `crm`, `store` and
//! the rest own, and those sections report problems with [`ConfigError`]
//! without importing `config` back.

use std::path::PathBuf;

/// A config problem, naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or a key has the wrong type / is unknown.
    #[error("config error at `{key}`: {message}")]
    Parse {
        /// Dotted path of the offending key (`vad.start_ms`), or `(root)`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A configured feature needs an environment variable that is not set.
    #[error("config error at `{key}`: {value} needs the environment variable {var}, which is not set (or is blank)")]
    MissingEnv {
        /// The key that turned the feature on.
        key: String,
        /// Its value, as written in TOML.
        value: String,
        /// The variable.
        var: String,
    },
    /// An environment variable is set but unusable.
    #[error("environment variable {var}: {message}")]
    BadEnv {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value parsed but is out of range or inconsistent.
    #[error("config error at `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    /// `key = value` needs `var` in the environment.
    pub fn missing_env(key: &str, value: &str, var: &str) -> Self {
        ConfigError::MissingEnv {
            key: key.into(),
            value: value.into(),
            var: var.into(),
        }
    }

    /// The key or variable the error names.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "(file)",
            ConfigError::Parse { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::MissingEnv { key, .. } => key,
            ConfigError::BadEnv { var, .. } => var,
        }
    }

    /// A value that parsed but is unusable.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Checks shared by every remote HTTP client's config (`[calendar.calcom]`,
/// `[crm.hubspot]`, …): `{prefix}.base_url`, `.timeout_ms`, `.max_retries`,
/// `.max_backoff_ms`.
pub fn check_http_client(
    prefix: &str,
    base_url: &str,
    timeout_ms: u64,
    max_retries: u32,
    max_backoff_ms: u64,
) -> Result<(), ConfigError> {
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(ConfigError::invalid(
            format!("{prefix}.base_url"),
            "must be an http(s) URL",
        ));
    }
    if !(100..=120_000).contains(&timeout_ms) {
        return Err(ConfigError::invalid(
            format!("{prefix}.timeout_ms"),
            "out of range; allowed 100–120000 ms",
        ));
    }
    if max_retries > 10 {
        return Err(ConfigError::invalid(
            format!("{prefix}.max_retries"),
            "out of range; allowed 0–10",
        ));
    }
    if max_backoff_ms > 600_000 {
        return Err(ConfigError::invalid(
            format!("{prefix}.max_backoff_ms"),
            "out of range; allowed 0–600000 ms",
        ));
    }
    Ok(())
}
