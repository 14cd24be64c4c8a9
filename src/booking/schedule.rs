//! Pure slot arithmetic: which instants are slot starts of an owner, where the
//! next business day begins, and how a slot is said out loud. No I/O, no wall
//! clock: `now` is always an argument.
//!
//! Working hours are wall-clock times in the owner's zone. On a
//! daylight-saving day a start that does not exist locally (the spring gap) is
//! skipped, and one that exists twice (the autumn overlap) is offered once, at
//! its earlier instant. Slots are stored and compared as UTC instants.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::{minutes_to_time, Owner, Rules};

/// The UTC instant of local wall-clock time `t` (minutes) on `date` in `tz`;
/// `None` inside a spring-forward gap, the earlier instant in an overlap.
fn resolve(tz: Tz, date: NaiveDate, minutes: u32) -> Option<DateTime<Utc>> {
    let t = minutes_to_time(minutes)?;
    match tz.from_local_datetime(&date.and_time(t)) {
        LocalResult::Single(x) => Some(x.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// Local midnight of `date` in `tz` (the first existing instant of the day).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    // Some zones skip midnight itself on DST days: try the next minutes.
    (0..180)
        .find_map(|m| resolve(tz, date, m))
        .unwrap_or_else(|| date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// Every slot `(start, end)` of `owner` whose start lies in `[from, to)`,
/// ordered by start.
pub fn slots_between(
    owner: &Owner,
    rules: &Rules,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    if from >= to {
        return out;
    }
    let slot_min = rules.slot.num_minutes().max(1) as u32;
    let step_min = rules.step.num_minutes().max(1) as u32;
    // One day of margin on each side covers every zone offset.
    let first = from.with_timezone(&owner.tz).date_naive().pred_opt();
    let last = to.with_timezone(&owner.tz).date_naive();
    let Some(mut date) = first else {
        return out;
    };
    while date <= last {
        let weekday = date.weekday().num_days_from_monday() as usize;
        for &(open, close) in &owner.week[weekday] {
            let mut t = open;
            while t + slot_min <= close {
                if let Some(start) = resolve(owner.tz, date, t) {
                    if start >= from && start < to {
                        out.push((start, start + rules.slot));
                    }
                }
                t += step_min;
            }
        }
        match date.succ_opt() {
            Some(d) => date = d,
            None => break,
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The end of the slot starting at `start`, if `start` is a slot start of
/// `owner` (on the grid, inside working hours).
pub fn slot_at(owner: &Owner, rules: &Rules, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    slots_between(owner, rules, start, start + Duration::minutes(1))
        .into_iter()
        .find(|(s, _)| *s == start)
        .map(|(_, e)| e)
}

/// The start (local midnight, as UTC) of the owner's next business day after
/// `now`: the first following date on which the owner has working hours.
pub fn next_business_day(owner: &Owner, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&owner.tz).date_naive();
    let mut d = today;
    for _ in 0..14 {
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
        if !owner.week[d.weekday().num_days_from_monday() as usize].is_empty() {
            return start_of_day(owner.tz, d);
        }
    }
    start_of_day(owner.tz, today.succ_opt().unwrap_or(today))
}

/// The end of a window of `days` calendar days in zone `tz` (the owner's)
/// starting at `from`: local midnight after the last day, so DST days count
/// as whole days.
pub fn window_end(from: DateTime<Utc>, days: u32, tz: Tz) -> DateTime<Utc> {
    let d = from.with_timezone(&tz).date_naive();
    match d.checked_add_days(chrono::Days::new(u64::from(days))) {
        Some(end) => start_of_day(tz, end),
        None => from + Duration::days(i64::from(days)),
    }
}

/// A zone's spoken label: the city of an IANA name (`America/New_York` →
/// "New York").
pub fn zone_label(tz: Tz) -> String {
    let name = tz.name();
    name.rsplit('/').next().unwrap_or(name).replace('_', " ")
}

/// How the receptionist says a slot: in the caller's zone, relative to `now`
/// ("today at 4 pm", "tomorrow at 2 pm", "Tuesday at 10:30 am", "Monday
/// 3 November at 9 am"). When the caller's zone is not the owner's, the zone
/// is named ("… New York time") so neither side can mishear the hour.
pub fn spoken(start: DateTime<Utc>, caller: Tz, owner: Tz, now: DateTime<Utc>) -> String {
    let local = start.with_timezone(&caller);
    let today = now.with_timezone(&caller).date_naive();
    let date = local.date_naive();
    let ahead = (date - today).num_days();
    let weekday = weekday_name(date);
    let day = match ahead {
        0 => "today".to_string(),
        1 => "tomorrow".to_string(),
        2..=6 => weekday.to_string(),
        _ => format!("{weekday} {} {}", date.day(), month_name(date)),
    };
    let (h, m) = (local.hour(), local.minute());
    let (h12, half) = match h {
        0 => (12, "am"),
        1..=11 => (h, "am"),
        12 => (12, "pm"),
        _ => (h - 12, "pm"),
    };
    let time = if m == 0 {
        format!("{h12} {half}")
    } else {
        format!("{h12}:{m:02} {half}")
    };
    if caller == owner {
        format!("{day} at {time}")
    } else {
        format!("{day} at {time} {} time", zone_label(caller))
    }
}

fn weekday_name(d: NaiveDate) -> &'static str {
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ][d.weekday().num_days_from_monday() as usize]
}

fn month_name(d: NaiveDate) -> &'static str {
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ][d.month0() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::{CalendarConfig, OwnerConfig, WeekHours};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn owner(tz: &str, hours: WeekHours) -> (Owner, Rules) {
        let cfg = CalendarConfig {
            owners: vec![OwnerConfig {
                id: "o".into(),
                timezone: tz.into(),
                hours,
                ..OwnerConfig::default()
            }],
            ..CalendarConfig::default()
        };
        (cfg.parse_owners().unwrap().remove(0), cfg.rules())
    }

    #[test]
    fn next_business_day_skips_weekends() {
        let (o, _) = owner("Europe/London", WeekHours::weekdays("09:00-17:00"));
        // Friday 2025-10-10 15:00 UTC → Monday 13th, 00:00 BST = Sunday 23:00 UTC.
        assert_eq!(
            next_business_day(&o, utc("2025-10-10T15:00:00Z")),
            utc("2025-10-12T23:00:00Z")
        );
        // Monday → Tuesday.
        assert_eq!(
            next_business_day(&o, utc("2025-10-13T08:00:00Z")),
            utc("2025-10-13T23:00:00Z")
        );
    }

    #[test]
    fn grid_with_buffer() {
        let (o, mut r) = owner("UTC", WeekHours::weekdays("09:00-11:00"));
        r.step = Duration::minutes(45); // 30-minute slots, 15-minute buffer
        let s = slots_between(
            &o,
            &r,
            utc("2025-10-13T00:00:00Z"),
            utc("2025-10-14T00:00:00Z"),
        );
        let starts: Vec<String> = s
            .iter()
            .map(|(a, _)| a.format("%H:%M").to_string())
            .collect();
        // 10:30–11:00 ends exactly at closing time, so it is offered.
        assert_eq!(starts, ["09:00", "09:45", "10:30"]);
    }

    #[test]
    fn spring_gap_is_skipped_and_autumn_overlap_offered_once() {
        let hours = WeekHours {
            sun: vec!["00:00-04:00".into()],
            ..WeekHours::default()
        };
        let (o, r) = owner("Europe/London", hours);
        // 2025-03-30: 01:00–02:00 does not exist in London.
        let spring = slots_between(
            &o,
            &r,
            utc("2025-03-29T12:00:00Z"),
            utc("2025-03-30T12:00:00Z"),
        );
        let local: Vec<String> = spring
            .iter()
            .map(|(s, _)| s.with_timezone(&o.tz).format("%H:%M").to_string())
            .collect();
        assert_eq!(
            local,
            ["00:00", "00:30", "02:00", "02:30", "03:00", "03:30"]
        );
        // 2025-10-26: 01:00–02:00 happens twice; each wall time is offered once.
        let autumn = slots_between(
            &o,
            &r,
            utc("2025-10-25T12:00:00Z"),
            utc("2025-10-26T12:00:00Z"),
        );
        assert_eq!(autumn.len(), 8);
        assert_eq!(autumn[2].0, utc("2025-10-26T00:00:00Z")); // 01:00 BST, the earlier one
        assert!(autumn.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn slot_at_checks_the_grid() {
        let (o, r) = owner("Europe/London", WeekHours::weekdays("09:00-17:00"));
        assert_eq!(
            slot_at(&o, &r, utc("2025-10-14T08:30:00Z")),
            Some(utc("2025-10-14T09:00:00Z"))
        );
        assert_eq!(slot_at(&o, &r, utc("2025-10-14T08:15:00Z")), None);
        assert_eq!(slot_at(&o, &r, utc("2025-10-14T16:30:00Z")), None); // 17:30 local
        assert_eq!(slot_at(&o, &r, utc("2025-10-18T09:00:00Z")), None); // Saturday
    }

    #[test]
    fn spoken_forms() {
        let london: Tz = "Europe/London".parse().unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        let now = utc("2025-10-13T08:00:00Z"); // Monday
        assert_eq!(
            spoken(utc("2025-10-13T15:00:00Z"), london, london, now),
            "today at 4 pm"
        );
        assert_eq!(
            spoken(utc("2025-10-14T13:00:00Z"), london, london, now),
            "tomorrow at 2 pm"
        );
        assert_eq!(
            spoken(utc("2025-10-16T09:30:00Z"), london, london, now),
            "Thursday at 10:30 am"
        );
        assert_eq!(
            spoken(utc("2025-10-21T11:00:00Z"), london, london, now),
            "Tuesday 21 October at 12 pm"
        );
        // The caller in New York hears their own time and the zone's name.
        assert_eq!(
            spoken(utc("2025-10-14T13:00:00Z"), ny, london, now),
            "tomorrow at 9 am New York time"
        );
        // Just after midnight UTC it is still "today" (the evening) in New York.
        let late = utc("2025-10-14T02:00:00Z");
        assert_eq!(
            spoken(utc("2025-10-14T03:30:00Z"), ny, london, late),
            "today at 11:30 pm New York time"
        );
        assert_eq!(
            spoken(utc("2025-10-14T04:00:00Z"), ny, ny, late),
            "tomorrow at 12 am"
        );
    }
}
