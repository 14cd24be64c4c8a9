//! E.164 normalisation: every way of writing one number gives one key.
//!
//! Parsing uses the `phonenumber` crate (libphonenumber's metadata) with the
//! business's default region for numbers written without a country code.
//! Acceptance is deliberately *possible*, not *valid*: a number whose length
//! fits its country's numbering plan is accepted even when the metadata does
//! not list its range (new ranges, the drama range `+447700900xxx`). Anything
//! with letters, or a length no number of that country can have, is an error
//! rather than a guess. A number written without a country code must also
//! look like one of the default region (see [`normalise`]): a US-shaped
//! `(415) 555-2671` in a GB business is refused, not filed as a UK number.

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

    /// Whether this can be a subscriber's number, not merely one of a
    /// possible length: valid by the numbering plan's metadata, or as long
    /// as the country's longest fixed-line or mobile numbers (the ranges
    /// set aside for drama and examples, `07700 900123`, are not "valid"
    /// but are whole). A number heard from a caller must be one before
    /// anyone is promised a call on it: `0770 090123`, a digit short, is not.
    pub fn is_plausible(&self) -> bool {
        let Ok(n) = phonenumber::parse(None, &self.0) else {
            return false;
        };
        if phonenumber::is_valid(&n) {
            return true;
        }
        let len = n.national().to_string().len() as u16;
        let longest = DATABASE
            .by_code(&n.code().value())
            .into_iter()
            .flatten()
            .flat_map(|m| {
                let d = m.descriptors();
                [d.fixed_line(), d.mobile()]
            })
            .flatten()
            .flat_map(|d| d.possible_length().iter().copied())
            .max();
        longest == Some(len)
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
    /// Written without a country code, but not a number of the business's
    /// default region (e.g. a US-shaped `(415) 555-2671` in a GB business).
    #[error(
        "not a valid phone number for region {0}; write it with its country code (starting with +)"
    )]
    NotInRegion(String),
    /// An extension (`ext. 123`, `x123`, `#12`): E.164 cannot carry one.
    #[error("phone extensions are not supported; give the number without the extension")]
    Extension,
    /// The default region is not an ISO 3166 code the metadata knows.
    #[error("unknown default region `{0}`")]
    UnknownRegion(String),
}

/// The region id for an ISO 3166 alpha-2 code (`GB`).
pub fn region(code: &str) -> Result<country::Id, PhoneError> {
    country::Id::from_str(&code.trim().to_ascii_uppercase())
        .map_err(|_| PhoneError::UnknownRegion(code.to_string()))
}

/// Normalise `input` to E.164.
///
/// A number written with `+` (also `(+44)`), an international prefix (`00`,
/// `011`) or, digits only, its region's own calling code (`44…` in GB) is read
/// as international and accepted when its length is possible. A number
/// written without any of those is read as a number of `default_region` and
/// must look like one: valid by the metadata, or written with the region's
/// trunk prefix (`07700 900123` in GB), or in a region that has none. So
/// `(415) 555-2671` in a GB business is [`PhoneError::NotInRegion`], asking for
/// the country code, rather than silently becoming `+44 4155 552671`.
///
/// Spacing is free (any white space, tabs, `-`, `.`, `/`, brackets); a `(0)`
/// trunk prefix after the country code is dropped (`+44 (0) 20 …`). An
/// extension is refused ([`PhoneError::Extension`]): E.164 cannot carry one,
/// and dropping it silently would merge people behind one switchboard.
pub fn normalise(input: &str, default_region: country::Id) -> Result<E164, PhoneError> {
    let cleaned = clean(input)?;
    let digits = cleaned.trim_start_matches('+');
    if digits.len() < 4 {
        return Err(PhoneError::TooShort);
    }
    if digits.len() > 17 {
        return Err(PhoneError::TooLong);
    }
    if cleaned.starts_with('+') {
        return parse_possible(&cleaned, default_region).map(|p| p.e164);
    }
    let meta = DATABASE.by_id(default_region.as_ref());
    let trunk = meta
        .and_then(|m| m.national_prefix())
        .filter(|t| !t.is_empty());
    let trunk_prefixed = trunk.is_some_and(|t| digits.starts_with(t));
    let dialled_abroad = digits.starts_with("00") || digits.starts_with("011");
    let not_in_region = || PhoneError::NotInRegion(default_region.as_ref().to_string());
    // libphonenumber's rule for `442079460123` with region GB: digits that
    // start with the region's own calling code and are not a national number
    // of it are read as international.
    let own_code_reading = || {
        let code = meta.map(|m| m.country_code().to_string())?;
        (digits.starts_with(&code) && !digits.starts_with('0'))
            .then(|| parse_possible(&format!("+{digits}"), default_region).ok())
            .flatten()
    };
    match parse_possible(&cleaned, default_region) {
        Ok(p) if !p.national_reading => Ok(p.e164),
        Ok(p) if p.valid || trunk_prefixed || trunk.is_none() => Ok(p.e164),
        Ok(_) => own_code_reading().map(|p| p.e164).ok_or_else(not_in_region),
        Err(e) => match own_code_reading() {
            Some(p) => Ok(p.e164),
            None if dialled_abroad || trunk_prefixed || trunk.is_none() => Err(e),
            None => Err(not_in_region()),
        },
    }
}

/// Check the characters and reduce `input` to an optional `+` and digits.
fn clean(input: &str) -> Result<String, PhoneError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(PhoneError::Empty);
    }
    if s.len() > 40 {
        return Err(PhoneError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_digit() || c.is_whitespace() || "+-()./".contains(c);
    if let Some(pos) = s.find(|c: char| !allowed(c)) {
        let (head, tail) = s.split_at(pos);
        return Err(if is_extension(head, tail) {
            PhoneError::Extension
        } else {
            PhoneError::InvalidCharacters
        });
    }
    // One `+`, before every digit (only `(` and white space may precede it).
    let mut plus = false;
    let mut started = false;
    for c in s.chars() {
        match c {
            '+' if plus || started => return Err(PhoneError::MisplacedPlus),
            '+' => plus = true,
            '(' => {}
            c if c.is_whitespace() => {}
            _ => started = true,
        }
    }
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut digits = String::new();
    let mut i = 0;
    while i < chars.len() {
        let international = plus || digits.starts_with("00") || digits.starts_with("011");
        // `+44 (0) 20 …`: the trunk prefix in brackets is not dialled from abroad.
        if international && !digits.is_empty() && chars[i..].starts_with(&['(', '0', ')']) {
            i += 3;
            continue;
        }
        if chars[i].is_ascii_digit() {
            digits.push(chars[i]);
        }
        i += 1;
    }
    Ok(if plus { format!("+{digits}") } else { digits })
}

/// `head` is a number and `tail` an extension marker with digits
/// (`ext. 123`, `x123`, `#12`, `;ext=5`).
fn is_extension(head: &str, tail: &str) -> bool {
    if head.chars().filter(char::is_ascii_digit).count() < 4 {
        return false;
    }
    let tail = tail.trim().to_ascii_lowercase();
    let Some(rest) = [";ext=", "extension", "ext.", "ext", "x", "#"]
        .iter()
        .find_map(|m| tail.strip_prefix(m))
    else {
        return false;
    };
    let rest = rest.trim_start();
    let rest = rest.strip_prefix([':', '.', '=']).unwrap_or(rest).trim();
    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
}

/// A parsed number whose length is possible for its country.
struct Parsed {
    e164: E164,
    /// Read as a national number of the default region (no `+`, no
    /// international prefix, no calling code).
    national_reading: bool,
    /// Valid by the metadata (the range is assigned).
    valid: bool,
}

fn parse_possible(s: &str, default_region: country::Id) -> Result<Parsed, PhoneError> {
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
    Ok(Parsed {
        e164: E164(e164),
        national_reading: region.is_some() && n.code().source() == country::Source::Default,
        valid: n.is_valid(),
    })
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

    /// How callers and forms write numbers, for a GB and a US business.
    #[test]
    fn table_of_spellings() {
        use country::Id::{GB, US};
        let ok = |input: &str, region, want: &str| {
            assert_eq!(
                normalise(input, region).map(|e| e.as_str().to_string()),
                Ok(want.to_string()),
                "{input:?} in {region:?}"
            );
        };
        // UK numbers, every common spelling, in a GB business.
        ok("07700 900123", GB, "+447700900123");
        ok("07700900123", GB, "+447700900123");
        ok("+44 7700 900123", GB, "+447700900123");
        ok("+44 (0) 7700 900123", GB, "+447700900123");
        ok("+44(0)7700 900123", GB, "+447700900123");
        ok("(+44) 7700 900123", GB, "+447700900123");
        ok("(+44) (0) 7700 900123", GB, "+447700900123");
        ok("0044 7700 900123", GB, "+447700900123");
        ok("0044 (0) 7700 900123", GB, "+447700900123");
        ok("07700\t900123", GB, "+447700900123");
        ok("+44\t7700\t900123", GB, "+447700900123");
        ok("07700\u{a0}900123", GB, "+447700900123");
        ok("447700900123", GB, "+447700900123");
        ok("+44 20 7946 0000", GB, "+442079460000");
        ok("020 7946 0000", GB, "+442079460000");
        ok("020-7946-0000", GB, "+442079460000");
        ok("020.7946.0000", GB, "+442079460000");
        // A US number in a GB business needs its country code…
        ok("+1 415 555 2671", GB, "+14155552671");
        ok("001 415 555 2671", GB, "+14155552671");
        // …and in a US business it does not.
        ok("(415) 555-2671", US, "+14155552671");
        ok("415-555-2671", US, "+14155552671");
        ok("1 415 555 2671", US, "+14155552671");
        ok("+1 (415) 555-2671", US, "+14155552671");
        ok("011 44 7700 900123", US, "+447700900123");
        ok("+44 7700 900123", US, "+447700900123");

        let bad = |input: &str, region, want: PhoneError| {
            assert_eq!(
                normalise(input, region).map(|e| e.as_str().to_string()),
                Err(want),
                "{input:?} in {region:?}"
            );
        };
        // A US-shaped national number in a GB business is not silently a UK number.
        bad("(415) 555-2671", GB, PhoneError::NotInRegion("GB".into()));
        bad("415 555 2671", GB, PhoneError::NotInRegion("GB".into()));
        // A UK national number in a US business is not a US number either.
        bad("07700 900123", US, PhoneError::NotInRegion("US".into()));
        // Extensions are refused by name rather than dropped or mangled.
        bad("+44 20 7946 0000 ext. 123", GB, PhoneError::Extension);
        bad("020 7946 0000 x123", GB, PhoneError::Extension);
        bad("(415) 555-2671 #12", US, PhoneError::Extension);
        bad("+44 20 7946 0000;ext=5", GB, PhoneError::Extension);
        bad("07700 9OO123", GB, PhoneError::InvalidCharacters);
        bad("++44 7700 900123", GB, PhoneError::MisplacedPlus);
        bad("(44+) 7700 900123", GB, PhoneError::MisplacedPlus);
        bad(" \t ", GB, PhoneError::Empty);
        bad("999", GB, PhoneError::TooShort);
        bad("+44 7700 900123 4567", GB, PhoneError::TooLong);
        bad("+999 1234 5678", GB, PhoneError::UnknownCountryCode);
        // Every message tells the person what to do, and never echoes the number.
        let e = normalise("(415) 555-2671", GB).unwrap_err().to_string();
        assert!(e.contains("GB") && e.contains("country code"), "{e}");
        assert!(!e.contains("555"), "{e}");
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
