//! E.164 normalisation: every way of writing one number gives one key.
//!
//! Parsing uses the `phonenumber` crate (libphonenumber's metadata) with the
//! business's default region for numbers written without a country code.
//! Acceptance is deliberately *possible*, not *valid*: a number whose length
//! fits its country's numbering plan is accepted even when the metadata does
//! not list its range (new ranges, the drama range `+447700900xxx`). Anything
//! with letters, or a length no number of that country can have, is an error
//! rather than a guess.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use phonenumber::metadata::DATABASE;
use phonenumber::Mode;
use serde::{Serialize, Serializer};

/// A normalised phone number in E.164 form (`+447700900123`). Its `Debug` and
/// `Display` are masked like [`crate::pii::Pii`]; use [`E164::as_str`] to send
/// or store it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// The E.164 text (`+` and at most 15 digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code (`44`).
    pub fn country_code(&self) -> u16 {
        // Only ever built from a parsed number, so this re-parse cannot fail;
        // 0 is a harmless fallback.
        phonenumber::parse(None, &self.0)
            .map(|n| n.code().value())
            .unwrap_or(0)
    }

    /// The national significant number without country code or trunk prefix
    /// (`7700900123`), as HubSpot's `hs_searchable_calculated_phone_number` holds it.
    pub fn national_digits(&self) -> String {
        phonenumber::parse(None, &self.0)
            .map(|n| n.national().to_string())
            .unwrap_or_default()
    }

    /// Wrap as personal data.
    pub fn to_pii(&self) -> crate::pii::Pii<String> {
        crate::pii::Pii::new(self.0.clone())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::pii::mask(&self.0))
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::pii::mask(&self.0))
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing but white space.
    #[error("phone number is empty")]
    Empty,
    /// Letters or symbols other than `+ - ( ) . /` and spaces.
    #[error("phone number may contain only digits, spaces and + - ( ) . /")]
    InvalidCharacters,
    /// `+` somewhere other than the start.
    #[error("`+` may only start a phone number")]
    MisplacedPlus,
    /// No country calling code matches.
    #[error("unknown country calling code")]
    UnknownCountryCode,
    /// Too few digits for any number of its country.
    #[error("too short to be a phone number of its country")]
    TooShort,
    /// Too many digits for any number of its country.
    #[error("too long to be a phone number of its country")]
    TooLong,
    /// Digit count between the country's lengths but matching none of them.
    #[error("no phone number of its country has this many digits")]
    ImpossibleLength,
    /// The default region is not an ISO 3166 code the metadata knows.
    #[error("unknown default region `{0}`")]
    UnknownRegion(String),
}

/// The region id for an ISO 3166 alpha-2 code (`GB`).
pub fn region(code: &str) -> Result<country::Id, PhoneError> {
    country::Id::from_str(&code.trim().to_ascii_uppercase())
        .map_err(|_| PhoneError::UnknownRegion(code.to_string()))
}

/// Normalise `input` to E.164; numbers without a country code are read as
/// numbers of `default_region`.
pub fn normalise(input: &str, default_region: country::Id) -> Result<E164, PhoneError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(PhoneError::Empty);
    }
    if s.len() > 40 {
        return Err(PhoneError::TooLong);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()./\t".contains(c))
    {
        return Err(PhoneError::InvalidCharacters);
    }
    if s.chars().skip(1).any(|c| c == '+') {
        return Err(PhoneError::MisplacedPlus);
    }
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() < 4 {
        return Err(PhoneError::TooShort);
    }
    if digits.len() > 17 {
        return Err(PhoneError::TooLong);
    }
    let first = parse_possible(s, default_region);
    match first {
        Ok(e) => Ok(e),
        Err(e) if !s.starts_with('+') => {
            // libphonenumber's rule for `442079460123` with region GB: digits
            // that start with the region's own calling code and are not a
            // possible national number are read as international.
            let own_code = DATABASE
                .by_id(default_region.as_ref())
                .map(|m| m.country_code().to_string());
            match own_code {
                Some(code) if digits.starts_with(&code) && !digits.starts_with('0') => {
                    parse_possible(&format!("+{digits}"), default_region).map_err(|_| e)
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn parse_possible(s: &str, default_region: country::Id) -> Result<E164, PhoneError> {
    // With a leading `+` the region must not be passed: phonenumber 0.3 then
    // fails to parse some numbers (`+441000000000` with region US).
    let region = (!s.starts_with('+')).then_some(default_region);
    let n = phonenumber::parse(region, s).map_err(|e| match e {
        phonenumber::ParseError::TooLong => PhoneError::TooLong,
        phonenumber::ParseError::TooShortNsn | phonenumber::ParseError::TooShortAfterIdd => {
            PhoneError::TooShort
        }
        phonenumber::ParseError::InvalidCountryCode => PhoneError::UnknownCountryCode,
        _ => PhoneError::ImpossibleLength,
    })?;
    let code = n.code().value();
    let national = n.national().to_string();
    let metas = DATABASE
        .by_code(&code)
        .filter(|m| !m.is_empty())
        .ok_or(PhoneError::UnknownCountryCode)?;
    let len = national.len() as u16;
    // The crate leaves the general descriptor's lengths empty; libphonenumber
    // defines them as the union over the number types, so compute that.
    let lengths: Vec<u16> = metas
        .iter()
        .flat_map(|m| {
            let d = m.descriptors();
            [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ]
        })
        .flatten()
        .flat_map(|d| d.possible_length().iter().copied())
        .collect();
    if !lengths.is_empty() && !lengths.contains(&len) {
        let (min, max) = (
            lengths.iter().copied().min().unwrap_or(0),
            lengths.iter().copied().max().unwrap_or(0),
        );
        return Err(if len < min {
            PhoneError::TooShort
        } else if len > max {
            PhoneError::TooLong
        } else {
            PhoneError::ImpossibleLength
        });
    }
    let e164 = n.format().mode(Mode::E164).to_string();
    if e164.len() > 16 {
        return Err(PhoneError::TooLong);
    }
    Ok(E164(e164))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb(s: &str) -> Result<String, PhoneError> {
        normalise(s, country::Id::GB).map(|e| e.as_str().to_string())
    }

    #[test]
    fn one_london_number_three_spellings() {
        for s in [
            "020 7946 0123",
            "+44 20 7946 0123",
            "442079460123",
            "(020) 7946-0123",
            "0044 20 7946 0123",
            "+44 (0)20 7946 0123",
        ] {
            assert_eq!(gb(s).as_deref(), Ok("+442079460123"), "{s}");
        }
    }

    #[test]
    fn possible_but_not_valid_numbers_are_accepted() {
        // Ofcom's drama range: libphonenumber calls it invalid, it is possible.
        assert_eq!(gb("+447700900123").as_deref(), Ok("+447700900123"));
        assert_eq!(gb("07700 900123").as_deref(), Ok("+447700900123"));
        assert_eq!(gb("+1 415 555 0100").as_deref(), Ok("+14155550100"));
        let us = normalise("(415) 555-0100", country::Id::US).unwrap();
        assert_eq!(us.as_str(), "+14155550100");
        assert_eq!(us.national_digits(), "4155550100");
        assert_eq!(us.country_code(), 1);
    }

    #[test]
    fn non_numbers_are_clear_errors() {
        assert_eq!(gb("call me maybe"), Err(PhoneError::InvalidCharacters));
        assert_eq!(gb("0800-FLOWERS"), Err(PhoneError::InvalidCharacters));
        assert_eq!(gb(""), Err(PhoneError::Empty));
        assert_eq!(gb("12"), Err(PhoneError::TooShort));
        assert_eq!(gb("44+20"), Err(PhoneError::MisplacedPlus));
        assert!(gb("+44 20 7946 0123 4567 89").is_err());
        assert!(gb("+999 1234 5678").is_err());
        assert!(matches!(
            gb("+44 20 79"),
            Err(PhoneError::TooShort | PhoneError::ImpossibleLength)
        ));
    }

    #[test]
    fn display_is_masked() {
        let e = normalise("+447700900123", country::Id::GB).unwrap();
        assert_eq!(format!("{e} {e:?}"), "+…23 +…23");
    }

    #[test]
    fn region_codes() {
        assert!(region("gb").is_ok());
        assert!(matches!(region("XX"), Err(PhoneError::UnknownRegion(_))));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = normalise(&s, country::Id::GB);
        }

        #[test]
        fn normalising_is_idempotent(n in 1_000_000_000u64..9_999_999_999u64) {
            if let Ok(e) = normalise(&format!("0{n}"), country::Id::GB) {
                let again = normalise(e.as_str(), country::Id::US).unwrap();
                proptest::prop_assert_eq!(again, e);
            }
        }
    }
}
