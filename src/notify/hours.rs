//! In hours or after hours: a pure function of `(now, time zone, weekly
//! hours, holidays)`, and the business day's opening instants the digest and
//! the escalation are anchored to. No clock is read here.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::booking::{minutes_to_time, parse_range, WeekHours};
use crate::config_error::ConfigError;

/// Opening hours, parsed.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    tz: Tz,
    /// Index 0 = Monday; minutes since local midnight, sorted.
    week: [Vec<(u32, u32)>; 7],
    holidays: Vec<NaiveDate>,
}

/// The furthest back [`BusinessHours::last_opening`] looks (a year of closure).
const LOOKBACK_DAYS: i64 = 370;

impl BusinessHours {
    /// Parse `hours` (`"HH:MM-HH:MM"` ranges, a missing day = closed) in `tz`,
    /// closed on `holidays`. `key` names the config table in errors.
    pub fn new(
        key: &str,
        tz: Tz,
        hours: &WeekHours,
        holidays: &[NaiveDate],
    ) -> Result<BusinessHours, ConfigError> {
        let days = [
            ("mon", &hours.mon),
            ("tue", &hours.tue),
            ("wed", &hours.wed),
            ("thu", &hours.thu),
            ("fri", &hours.fri),
            ("sat", &hours.sat),
            ("sun", &hours.sun),
        ];
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (i, (name, ranges)) in days.iter().enumerate() {
            for r in ranges.iter() {
                let parsed = parse_range(r).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("{key}.{name}"),
                        format!("`{r}` is not an \"HH:MM-HH:MM\" range"),
                    )
                })?;
                week[i].push(parsed);
            }
            week[i].sort_unstable();
        }
        Ok(BusinessHours {
            tz,
            week,
            holidays: holidays.to_vec(),
        })
    }

    /// The business's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    fn ranges(&self, day: NaiveDate) -> &[(u32, u32)] {
        if self.holidays.contains(&day) {
            return &[];
        }
        &self.week[day.weekday().num_days_from_monday() as usize]
    }

    fn instant(&self, day: NaiveDate, minute: u32) -> Option<DateTime<Utc>> {
        let local = day.and_time(minutes_to_time(minute)?);
        // A time skipped by a DST change opens at the first instant after it.
        let t = match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t,
            chrono::LocalResult::Ambiguous(a, _) => a,
            chrono::LocalResult::None => self
                .tz
                .from_local_datetime(&(local + Duration::hours(1)))
                .earliest()?,
        };
        Some(t.with_timezone(&Utc))
    }

    /// Whether `now` falls inside an opening range (start inclusive, end
    /// exclusive) on a day that is not a holiday.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let day = local.date_naive();
        let minute = local
            .time()
            .signed_duration_since(chrono::NaiveTime::MIN)
            .num_minutes() as u32;
        self.ranges(day)
            .iter()
            .any(|&(a, b)| a <= minute && minute < b)
    }

    /// The latest business-day opening (first range of an open day) at or
    /// before `now`.
    pub fn last_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&self.tz).date_naive();
        (0..LOOKBACK_DAYS)
            .filter_map(|back| today.checked_sub_signed(Duration::days(back)))
            .filter_map(|day| {
                let first = self.ranges(day).first()?;
                self.instant(day, first.0)
            })
            .find(|&t| t <= now)
    }

    /// The opening before `opening` (the start of the window a digest at
    /// `opening` covers).
    pub fn opening_before(&self, opening: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_opening(opening - Duration::milliseconds(1))
    }
}

/// In hours or after hours, as one pure function.
pub fn in_hours(now: DateTime<Utc>, hours: &BusinessHours) -> bool {
    hours.is_open(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn london() -> BusinessHours {
        let mut w = WeekHours::weekdays("09:00-17:30");
        w.sat = vec!["10:00-12:00".into()];
        let xmas = NaiveDate::from_ymd_opt(2026, 12, 25).unwrap();
        BusinessHours::new("business.hours", chrono_tz::Europe::London, &w, &[xmas]).unwrap()
    }

    #[test]
    fn hours_days_holidays_and_zone() {
        let h = london();
        // Tuesday 1 Dec 2026 (GMT).
        assert!(in_hours(at("2026-12-01T09:00:00Z"), &h));
        assert!(!in_hours(at("2026-12-01T08:59:59Z"), &h));
        assert!(!in_hours(at("2026-12-01T17:30:00Z"), &h));
        assert!(in_hours(at("2026-12-05T11:00:00Z"), &h)); // Saturday
        assert!(!in_hours(at("2026-12-06T11:00:00Z"), &h)); // Sunday
        assert!(!in_hours(at("2026-12-25T11:00:00Z"), &h)); // holiday Friday
                                                            // Summer time: 09:00 BST is 08:00 UTC.
        assert!(in_hours(at("2026-07-01T08:00:00Z"), &h));
        assert!(!in_hours(at("2026-07-01T16:30:00Z"), &h));
    }

    #[test]
    fn openings_skip_closed_days_and_holidays() {
        let h = london();
        assert_eq!(
            h.last_opening(at("2026-12-01T23:00:00Z")),
            Some(at("2026-12-01T09:00:00Z"))
        );
        assert_eq!(
            h.last_opening(at("2026-12-01T08:00:00Z")),
            Some(at("2026-11-30T09:00:00Z"))
        );
        // Christmas Friday is closed; Saturday 26th opens at 10:00.
        assert_eq!(
            h.last_opening(at("2026-12-26T09:00:00Z")),
            Some(at("2026-12-24T09:00:00Z"))
        );
        // Monday after Sunday: the opening before is Saturday's.
        assert_eq!(
            h.opening_before(at("2026-12-28T09:00:00Z")),
            Some(at("2026-12-26T10:00:00Z"))
        );
        let closed = BusinessHours::new("h", chrono_tz::UTC, &WeekHours::default(), &[]).unwrap();
        assert_eq!(closed.last_opening(at("2026-12-01T09:00:00Z")), None);
        assert!(BusinessHours::new("h", chrono_tz::UTC, &WeekHours::weekdays("9-5"), &[]).is_err());
    }
}
