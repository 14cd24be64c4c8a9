//! When the caller would like to talk, and where they are: "Friday morning,
//! any time after ten", "half ten", "next Tuesday afternoon", "tomorrow at
//! 3" → a window of local time; "I'm in New York" or a +1 212 number → a
//! time zone. Pure functions: `today` is an argument.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// A preferred time as said: any part may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimePref {
    /// A day: a date.
    pub day: Option<NaiveDate>,
    /// Earliest minute of the day (local).
    pub from_min: Option<u32>,
    /// Latest start minute of the day (local, exclusive).
    pub to_min: Option<u32>,
    /// "next week": from the Monday after `today`, for a week.
    pub next_week: bool,
}

impl TimePref {
    /// Nothing was said about time.
    pub fn is_empty(&self) -> bool {
        self.day.is_none() && self.from_min.is_none() && self.to_min.is_none() && !self.next_week
    }

    /// The window in UTC this preference covers, looking `days` ahead of
    /// `now` when no day was named.
    pub fn window(&self, tz: Tz, now: DateTime<Utc>, days: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let today = now.with_timezone(&tz).date_naive();
        let (first, last) = match (self.day, self.next_week) {
            (Some(d), _) => (d, d),
            (None, true) => {
                let monday =
                    today + Duration::days(7 - today.weekday().num_days_from_monday() as i64);
                (monday, monday + Duration::days(4))
            }
            (None, false) => (today, today + Duration::days(i64::from(days))),
        };
        let at = |d: NaiveDate, m: u32| {
            let t = d.and_hms_opt(m / 60 % 24, m % 60, 0).unwrap_or_default();
            tz.from_local_datetime(&t)
                .earliest()
                .map(|x| x.with_timezone(&Utc))
                .unwrap_or(now)
        };
        let from = at(first, self.from_min.unwrap_or(0)).max(now);
        let to = match self.to_min {
            Some(m) if m < 24 * 60 => at(last, m),
            _ => at(last + Duration::days(1), 0),
        };
        (from, to.max(from))
    }

    /// Whether local minute `m` of a day fits the time-of-day part.
    pub fn fits_minute(&self, m: u32) -> bool {
        self.from_min.is_none_or(|f| m >= f) && self.to_min.is_none_or(|t| m < t)
    }
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace([',', '.', '?', '!', ';'], " ")
        .replace(':', " : ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn weekday(w: &str) -> Option<Weekday> {
    Some(match w.trim_end_matches('s') {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn number(w: &str) -> Option<u32> {
    const N: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    if let Ok(n) = w.parse() {
        return Some(n);
    }
    N.iter().position(|x| *x == w).map(|i| i as u32)
}

/// A clock time at `w[i..]`: "10", "ten", "10:30", "10 30", "ten thirty",
/// "half ten", "quarter past two", "3pm", "noon". Returns minutes since
/// midnight (hours 1–7 without am/pm read as afternoon) and tokens used.
fn clock(w: &[String], i: usize, part: Option<(u32, u32)>) -> Option<(u32, usize)> {
    let tok = |k: usize| w.get(k).map(String::as_str);
    let t = tok(i)?;
    if t == "noon" || t == "midday" {
        return Some((12 * 60, 1));
    }
    let (mut h, mut m, mut used, mut fixed) = (None, 0u32, 0usize, None::<bool>);
    match t {
        "half" if tok(i + 1) == Some("past") => {
            h = tok(i + 2).and_then(number);
            m = 30;
            used = 3;
        }
        "half" => {
            h = tok(i + 1).and_then(number);
            m = 30;
            used = 2;
        }
        "quarter" if matches!(tok(i + 1), Some("past" | "after")) => {
            h = tok(i + 2).and_then(number);
            m = 15;
            used = 3;
        }
        "quarter" if tok(i + 1) == Some("to") => {
            h = tok(i + 2)
                .and_then(number)
                .map(|x| if x == 1 { 12 } else { x - 1 });
            m = 45;
            used = 3;
        }
        _ => {
            let (num, suffix) = match t.find(|c: char| !c.is_ascii_digit()) {
                Some(p) if p > 0 => (&t[..p], &t[p..]),
                _ => (t, ""),
            };
            if let Some(x) =
                number(num).filter(|x| (1..=12).contains(x) || num.len() <= 2 && *x <= 23)
            {
                h = Some(x);
                used = 1;
                match suffix {
                    "am" | "a" => fixed = Some(false),
                    "pm" | "p" => fixed = Some(true),
                    _ => {}
                }
                // minutes: "10:30", "10 30", "ten thirty", "ten fifteen"
                let mut k = i + 1;
                if tok(k) == Some(":") {
                    k += 1;
                }
                // "30", or "30pm" as in "2:30pm"
                let mins_suffix = tok(k).and_then(|x| {
                    let d = x.find(|c: char| !c.is_ascii_digit()).unwrap_or(x.len());
                    (d == 2).then(|| (&x[..d], &x[d..]))
                });
                let mins = match tok(k) {
                    Some(_)
                        if mins_suffix.is_some_and(|(_, suf)| {
                            matches!(suf, "" | "am" | "pm" | "a" | "p")
                        }) =>
                    {
                        let (digits, suf) = mins_suffix.unwrap_or_default();
                        match suf {
                            "am" | "a" => fixed = Some(false),
                            "pm" | "p" => fixed = Some(true),
                            _ => {}
                        }
                        digits.parse().ok()
                    }
                    Some("thirty") => Some(30),
                    Some("fifteen") => Some(15),
                    Some("forty-five") => Some(45),
                    Some("o'clock") => Some(0),
                    _ => None,
                };
                if let Some(mm) = mins.filter(|mm: &u32| *mm < 60) {
                    m = mm;
                    used = k - i + 1;
                }
            }
        }
    }
    let h = h.filter(|h| *h <= 23)?;
    match tok(i + used) {
        Some("am" | "a.m") => {
            fixed = Some(false);
            used += 1;
        }
        Some("pm" | "p.m") => {
            fixed = Some(true);
            used += 1;
        }
        _ => {}
    }
    let h = match (fixed, h) {
        (Some(true), h) if h < 12 => h + 12,
        (Some(false), 12) => 0,
        (Some(_), h) => h,
        (None, h) if h >= 13 => h,
        // The part of day said elsewhere decides: "Friday afternoon at 2".
        (None, h) if part.is_some_and(|(a, _)| a >= 12 * 60) && h < 12 => h + 12,
        (None, h) if part.is_some() => h,
        (None, h) if (1..=7).contains(&h) => h + 12,
        (None, h) => h,
    };
    Some((h * 60 + m, used))
}

/// The preferred time in `text`, relative to `today` (the caller's date).
pub fn preference(text: &str, today: NaiveDate) -> TimePref {
    let w = words(text);
    let mut p = TimePref::default();
    let has = |s: &str| w.iter().any(|x| x.as_str() == s);
    // Part of day.
    let part = if has("morning") {
        Some((9 * 60, 12 * 60))
    } else if has("lunchtime") || has("lunch") {
        Some((12 * 60, 14 * 60))
    } else if has("afternoon") {
        Some((12 * 60, 17 * 60))
    } else if has("evening") || has("tonight") {
        Some((17 * 60, 20 * 60))
    } else {
        None
    };
    if let Some((a, b)) = part {
        p.from_min = Some(a);
        p.to_min = Some(b);
    }
    // Day.
    for (i, t) in w.iter().enumerate() {
        if t == "today"
            || t == "tonight"
            || (t == "this"
                && matches!(
                    w.get(i + 1).map(String::as_str),
                    Some("morning" | "afternoon" | "evening")
                ))
        {
            p.day = Some(today);
        } else if t == "tomorrow" {
            p.day = today.succ_opt();
        } else if t == "week" && i > 0 && w[i - 1] == "next" {
            p.next_week = true;
        } else if let Some(wd) = weekday(t) {
            let ahead = (wd.num_days_from_monday() as i64
                - today.weekday().num_days_from_monday() as i64)
                .rem_euclid(7);
            let ahead = if ahead == 0 { 7 } else { ahead };
            // "next Tuesday" said on a Monday is usually the 8th day, not tomorrow.
            let next = i > 0 && w[i - 1] == "next" && ahead < 7 && ahead <= 2;
            p.day = Some(today + Duration::days(ahead + if next { 7 } else { 0 }));
        }
    }
    // Clock times: "after ten", "from 2", "before 4", "at half ten".
    let mut i = 0;
    while i < w.len() {
        let t = w[i].as_str();
        let lead = matches!(
            t,
            "after" | "from" | "before" | "until" | "till" | "at" | "around" | "about"
        );
        let start = if lead { i + 1 } else { i };
        if let Some((m, used)) = clock(&w, start, part) {
            // A bare number only counts after a lead word or with a marker.
            let marked = lead
                || matches!(w[start].as_str(), "half" | "quarter" | "noon" | "midday")
                || w[start].contains(|c: char| c.is_ascii_digit())
                    && (w[start].ends_with("am") || w[start].ends_with("pm"))
                || matches!(
                    w.get(start + used - 1).map(String::as_str),
                    Some("am" | "pm" | "o'clock")
                )
                || w.get(start + 1).map(String::as_str) == Some(":");
            if marked {
                match t {
                    "after" | "from" => p.from_min = Some(m),
                    "before" | "until" | "till" => p.to_min = Some(m),
                    _ => {
                        // An exact time: that slot or the half hour after it.
                        p.from_min = Some(m);
                        p.to_min = Some(m + 31);
                    }
                }
                i = start + used;
                continue;
            }
        }
        i += 1;
    }
    p
}

/// A time zone the caller names ("I'm in New York", "Pacific time").
pub fn zone_in(text: &str) -> Option<Tz> {
    let t = format!(" {} ", words(text).join(" "));
    const ZONES: &[(&[&str], Tz)] = &[
        (
            &[
                "eastern",
                "new york",
                "boston",
                "florida",
                "miami",
                "atlanta",
                "washington dc",
                "philadelphia",
                "toronto",
                "est",
                "edt",
            ],
            chrono_tz::America::New_York,
        ),
        (
            &[
                "central time",
                "chicago",
                "texas",
                "dallas",
                "houston",
                "austin",
                "cst",
                "cdt",
            ],
            chrono_tz::America::Chicago,
        ),
        (
            &["mountain time", "denver", "colorado", "utah", "mst", "mdt"],
            chrono_tz::America::Denver,
        ),
        (&["arizona", "phoenix"], chrono_tz::America::Phoenix),
        (
            &[
                "pacific",
                "california",
                "los angeles",
                "san francisco",
                "seattle",
                "portland oregon",
                "vancouver",
                "pst",
                "pdt",
            ],
            chrono_tz::America::Los_Angeles,
        ),
        (
            &[
                "london",
                "uk",
                "england",
                "scotland",
                "edinburgh",
                "glasgow",
                "manchester",
                "birmingham",
                "wales",
                "cardiff",
                "belfast",
                "gmt",
                "bst",
                "british time",
            ],
            chrono_tz::Europe::London,
        ),
        (&["dublin", "ireland"], chrono_tz::Europe::Dublin),
        (&["paris", "france"], chrono_tz::Europe::Paris),
        (&["berlin", "germany"], chrono_tz::Europe::Berlin),
    ];
    ZONES
        .iter()
        .find(|(names, _)| names.iter().any(|n| t.contains(&format!(" {n} "))))
        .map(|(_, tz)| *tz)
}

/// The caller's likely zone from their number: the country, and for North
/// American numbers the area code; `fallback` when nothing is known.
pub fn zone_of_number(e164: &str, fallback: Tz) -> Tz {
    let d = e164.trim_start_matches('+');
    if d.starts_with("44") {
        return chrono_tz::Europe::London;
    }
    if d.starts_with("353") {
        return chrono_tz::Europe::Dublin;
    }
    if let Some(rest) = d.strip_prefix('1') {
        let area = rest.get(..3).unwrap_or("");
        const PACIFIC: &[&str] = &[
            "206", "213", "253", "310", "323", "360", "408", "415", "424", "425", "503", "510",
            "530", "559", "562", "619", "626", "650", "657", "661", "702", "707", "714", "747",
            "760", "805", "818", "831", "858", "909", "916", "925", "949", "971",
        ];
        const MOUNTAIN: &[&str] = &[
            "303", "385", "406", "435", "505", "575", "720", "801", "970", "208", "307",
        ];
        const ARIZONA: &[&str] = &["480", "520", "602", "623", "928"];
        const CENTRAL: &[&str] = &[
            "205", "210", "214", "217", "224", "281", "309", "312", "314", "316", "318", "331",
            "346", "405", "409", "414", "469", "479", "501", "504", "507", "512", "515", "563",
            "573", "601", "608", "612", "615", "618", "630", "636", "651", "682", "708", "713",
            "715", "731", "737", "763", "773", "779", "815", "816", "817", "830", "832", "847",
            "901", "903", "913", "918", "920", "936", "940", "952", "956", "972", "979",
        ];
        return if PACIFIC.contains(&area) {
            chrono_tz::America::Los_Angeles
        } else if MOUNTAIN.contains(&area) {
            chrono_tz::America::Denver
        } else if ARIZONA.contains(&area) {
            chrono_tz::America::Phoenix
        } else if CENTRAL.contains(&area) {
            chrono_tz::America::Chicago
        } else {
            chrono_tz::America::New_York
        };
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tue() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() // a Tuesday
    }

    #[test]
    fn preferred_times_as_callers_say_them() {
        let p = preference("Friday morning, any time after ten", tue());
        assert_eq!(p.day, NaiveDate::from_ymd_opt(2026, 12, 4));
        assert_eq!((p.from_min, p.to_min), (Some(600), Some(720)));
        let p = preference("could we do half ten on Thursday", tue());
        assert_eq!(p.day, NaiveDate::from_ymd_opt(2026, 12, 3));
        assert_eq!(p.from_min, Some(630));
        let p = preference("next Tuesday afternoon", tue());
        assert_eq!(p.day, NaiveDate::from_ymd_opt(2026, 12, 8));
        assert_eq!((p.from_min, p.to_min), (Some(720), Some(1020)));
        let p = preference("tomorrow at 3", tue());
        assert_eq!(p.day, NaiveDate::from_ymd_opt(2026, 12, 2));
        assert_eq!(p.from_min, Some(900));
        let p = preference("Wednesday at 2:30pm", tue());
        assert_eq!(p.from_min, Some(870));
        let p = preference("any time next week", tue());
        assert!(p.next_week);
        assert!(preference("we have fifteen people", tue()).is_empty());
    }

    #[test]
    fn zones_from_words_and_numbers() {
        assert_eq!(
            zone_in("I'm in New York"),
            Some(chrono_tz::America::New_York)
        );
        assert_eq!(
            zone_in("we're on pacific time"),
            Some(chrono_tz::America::Los_Angeles)
        );
        assert_eq!(
            zone_in("I'm calling from Glasgow"),
            Some(chrono_tz::Europe::London)
        );
        assert_eq!(zone_in("hello there"), None);
        let ldn = chrono_tz::Europe::London;
        assert_eq!(
            zone_of_number("+14155552671", ldn),
            chrono_tz::America::Los_Angeles
        );
        assert_eq!(
            zone_of_number("+12125550100", ldn),
            chrono_tz::America::New_York
        );
        assert_eq!(
            zone_of_number("+447700900123", chrono_tz::America::Chicago),
            ldn
        );
    }
}
