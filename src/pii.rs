//! Personal data and secrets, redacted by type.
//!
//! [`Pii<T>`] wraps phone numbers, names and transcripts; [`Secret<T>`] wraps
//! API keys and tokens. Their `Debug` and `Display` never print the value, so a
//! stray `tracing::info!(?x)` cannot leak it. Use [`Pii::expose`] where the real
//! value is needed (a carrier request, a database row).

use std::fmt;

/// Personal data: masked in logs. Phone-like values keep their last two digits
/// so operators can still tell calls apart.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Pii<T>(T);

impl<T> Pii<T> {
    /// Wrap a value.
    pub fn new(v: T) -> Self {
        Pii(v)
    }
    /// The real value, for code that must send or store it.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// Unwrap.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<str>> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0.as_ref()))
    }
}

impl<T: AsRef<str>> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0.as_ref()))
    }
}

/// Mask a string: phone-like values show only their last two digits, anything
/// else shows only its length.
pub fn mask(s: &str) -> String {
    let digits: Vec<char> = s.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() >= 6
        && s.chars()
            .all(|c| c.is_ascii_digit() || "+-() .".contains(c))
    {
        let tail: String = digits[digits.len() - 2..].iter().collect();
        format!("+…{tail}")
    } else {
        format!("<redacted {} chars>", s.chars().count())
    }
}

/// A secret (API key, token): never printed at all.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a secret.
    pub fn new(v: T) -> Self {
        Secret(v)
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_keep_only_two_digits() {
        let p = Pii::new("+447700900123".to_string());
        assert_eq!(format!("{p}"), "+…23");
        assert_eq!(format!("{p:?}"), "+…23");
        assert!(!format!("{p:?}").contains("7700900"));
    }

    #[test]
    fn names_and_transcripts_show_only_length() {
        let p = Pii::new("Jane Doe");
        assert_eq!(format!("{p}"), "<redacted 8 chars>");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-live-123".to_string());
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
    }
}
