//! Cron schedules for CronJobs: the standard five-field format and its `@` descriptors, parsed as robfig/cron's
//! standard parser does, and the times they fire in a time zone (`next_after`), pure functions of their inputs.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

/// The allowed values of each field as bit sets (bit `n` set: value `n` matches).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// The day-of-month / day-of-week field was `*` (or `?`): then both day fields must match, not either.
    dom_star: bool,
    dow_star: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every <duration>`: a constant delay (at least one second, whole seconds).
    Every(Duration),
}

/// A parsed schedule with the time zone it is read in.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

/// How far ahead `next_after` looks before giving up (robfig/cron: five years).
const SEARCH_YEARS: i16 = 5;
/// How far around a found time the search looks for an earlier instant (daylight-saving folds are at most 2 h).
const LOOK_AROUND: SignedDuration = SignedDuration::from_hours(2);

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

fn parse_int(s: &str, expr: &str) -> Result<u32, ScheduleError> {
    let n: i64 = s.parse().map_err(|_| err(format!("failed to parse int from {s}: invalid syntax")))?;
    if n < 0 {
        return Err(err(format!("negative number ({n}) not allowed: {expr}")));
    }
    u32::try_from(n).map_err(|_| err(format!("failed to parse int from {s}: value out of range")))
}

fn parse_int_or_name(s: &str, b: &Bounds, expr: &str) -> Result<u32, ScheduleError> {
    let lower = s.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + b.min),
        None => parse_int(s, expr),
    }
}

/// One comma-separated part of a field: `*`, `n`, `a-b`, each optionally `/step`. Returns the bits and whether it
/// was a plain `*` (a star with a step above one is not).
fn parse_range(expr: &str, b: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let (range, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
        [r] => (*r, None),
        [r, s] => (*r, Some(*s)),
        _ => return Err(err(format!("too many slashes: {expr}"))),
    };
    let parts: Vec<&str> = range.split('-').collect();
    let star = parts[0] == "*" || parts[0] == "?";
    let (start, mut end) = if star {
        if parts.len() > 1 {
            return Err(err(format!("too many hyphens: {expr}")));
        }
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(parts[0], b, expr)?;
        match parts.as_slice() {
            [_] => (start, start),
            [_, e] => (start, parse_int_or_name(e, b, expr)?),
            _ => return Err(err(format!("too many hyphens: {expr}"))),
        }
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let s = parse_int(s, expr)?;
            if s == 0 {
                return Err(err(format!("step of range should be a positive number: {expr}")));
            }
            // `n/step` means `n-max/step`.
            if !star && parts.len() == 1 {
                end = b.max;
            }
            s
        }
    };
    if start < b.min {
        return Err(err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min)));
    }
    if end > b.max {
        return Err(err(format!("end of range ({end}) above maximum ({}): {expr}", b.max)));
    }
    if start > end {
        return Err(err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}")));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star && step == 1))
}

fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0;
    let mut star = false;
    for expr in field.split(',') {
        let (more, s) = parse_range(expr, b)?;
        bits |= more;
        star |= s;
    }
    Ok((bits, star))
}

fn parse_fields(f: [&str; 5]) -> Result<Kind, ScheduleError> {
    let (minute, _) = parse_field(f[0], &MINUTES)?;
    let (hour, _) = parse_field(f[1], &HOURS)?;
    let (dom, dom_star) = parse_field(f[2], &DOM)?;
    let (month, _) = parse_field(f[3], &MONTHS)?;
    let (dow, dow_star) = parse_field(f[4], &DOW)?;
    Ok(Kind::Fields(Fields { minute, hour, dom, month, dow, dom_star, dow_star }))
}

/// A Go `time.ParseDuration` subset (`1h30m`, `90s`, `1.5h`).
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

impl Schedule {
    /// Parses `spec` (five fields or a descriptor) to be read in `tz`. A `TZ=`/`CRON_TZ=` prefix (which validation
    /// rejects on create) names the zone instead, as robfig/cron reads it.
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, ScheduleError> {
        let mut spec = spec.trim();
        let mut tz = tz;
        if spec.is_empty() {
            return Err(err("empty spec string"));
        }
        if let Some(rest) = spec.strip_prefix("TZ=").or_else(|| spec.strip_prefix("CRON_TZ=")) {
            let (name, after) = rest.split_once(' ').unwrap_or((rest, ""));
            tz = TimeZone::get(name).map_err(|e| err(format!("provided bad location {name}: {e}")))?;
            spec = after.trim();
        }
        let kind = if let Some(desc) = spec.strip_prefix('@') {
            match desc {
                "yearly" | "annually" => parse_fields(["0", "0", "1", "1", "*"])?,
                "monthly" => parse_fields(["0", "0", "1", "*", "*"])?,
                "weekly" => parse_fields(["0", "0", "*", "*", "0"])?,
                "daily" | "midnight" => parse_fields(["0", "0", "*", "*", "*"])?,
                "hourly" => parse_fields(["0", "*", "*", "*", "*"])?,
                other => match other.strip_prefix("every ") {
                    Some(d) => {
                        let d = parse_go_duration(d.trim())
                            .ok_or_else(|| err(format!("failed to parse duration {spec}: invalid duration")))?;
                        // Whole seconds, at least one (robfig/cron's `Every`).
                        Kind::Every(Duration::from_secs(d.as_secs().max(1)))
                    }
                    None => return Err(err(format!("unrecognized descriptor: {spec}"))),
                },
            }
        } else {
            let fields: Vec<&str> = spec.split_whitespace().collect();
            let Ok(five) = <[&str; 5]>::try_from(fields.as_slice()) else {
                return Err(err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" "))));
            };
            parse_fields(five)?
        };
        Ok(Schedule { kind, tz })
    }

    /// The time zone the schedule is read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first time strictly after `t` the schedule fires, or `None` if it never does within five years (e.g.
    /// `0 0 30 2 *`).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(d) => {
                let d = SignedDuration::try_from(*d).ok()?;
                let whole = t.checked_sub(SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()))).ok()?;
                whole.checked_add(d).ok()
            }
            Kind::Fields(f) => self.next_matching(f, t),
        }
    }

    /// Every firing time in `(after, now]`, oldest first, at most `limit` of them.
    pub fn unmet_times(&self, after: Timestamp, now: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(next) if next <= now => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }

    fn next_matching(&self, f: &Fields, t: Timestamp) -> Option<Timestamp> {
        let local = t.to_zoned(self.tz.clone()).datetime();
        let whole_minute = local
            .checked_sub(SignedDuration::from_nanos(
                i64::from(local.second()) * 1_000_000_000 + i64::from(local.subsec_nanosecond()),
            ))
            .ok()?;
        // Wall-clock times up to two hours before `t` come again after it when the clock is turned back (a fold),
        // and a later wall-clock time can be an earlier instant: look a little back, and a little on after the
        // first hit, keeping the earliest instant after `t`.
        let from = whole_minute.checked_sub(LOOK_AROUND).ok()?;
        let mut best: Option<Timestamp> = None;
        let mut horizon: Option<DateTime> = None;
        scan(f, from, |dt| {
            if horizon.is_some_and(|h| dt > h) {
                return true;
            }
            if let Some(found) = self.instant_after(dt, t) {
                best = Some(best.map_or(found, |b| b.min(found)));
                if horizon.is_none() {
                    horizon = dt.checked_add(LOOK_AROUND).ok();
                }
            }
            false
        });
        best
    }

    /// The instant of local time `dt` that is after `t`: none in a DST gap (the clock skips it, as robfig/cron's
    /// search does), the earlier of the two in a fold that is still after `t`.
    fn instant_after(&self, dt: DateTime, t: Timestamp) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(dt);
        let candidates = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => vec![offset.to_timestamp(dt).ok()?],
            AmbiguousOffset::Gap { .. } => Vec::new(),
            AmbiguousOffset::Fold { before, after } => {
                vec![before.to_timestamp(dt).ok()?, after.to_timestamp(dt).ok()?]
            }
        };
        candidates.into_iter().filter(|c| *c > t).min()
    }
}

/// Calls `visit` with every local time from `from` (inclusive) that matches `f`, in order, for five years or until
/// `visit` returns true.
fn scan(f: &Fields, from: DateTime, mut visit: impl FnMut(DateTime) -> bool) {
    let last_year = from.year().saturating_add(SEARCH_YEARS);
    let mut date = from.date();
    while date.year() <= last_year {
        if f.month & (1 << date.month()) == 0 {
            let Ok(next) = date.last_of_month().tomorrow() else { return };
            date = next;
            continue;
        }
        if day_matches(f, date) {
            let first_day = date == from.date();
            for hour in 0..24i8 {
                if f.hour & (1 << hour) == 0 || (first_day && hour < from.hour()) {
                    continue;
                }
                for minute in 0..60i8 {
                    if f.minute & (1 << minute) == 0 || (first_day && hour == from.hour() && minute < from.minute()) {
                        continue;
                    }
                    if visit(date.at(hour, minute, 0, 0)) {
                        return;
                    }
                }
            }
        }
        let Ok(next) = date.tomorrow() else { return };
        date = next;
    }
}

/// robfig/cron's day rule: when either day field is `*`, both must match; otherwise either may.
fn day_matches(f: &Fields, date: Date) -> bool {
    let dom = f.dom & (1 << date.day()) != 0;
    let dow = f.dow & (1 << date.weekday().to_sunday_zero_offset()) != 0;
    if f.dom_star || f.dow_star {
        dom && dow
    } else {
        dom || dow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(spec: &str) -> Schedule {
        Schedule::parse(spec, TimeZone::UTC).unwrap()
    }

    fn nexts(spec: &str, from: &str, n: usize) -> Vec<String> {
        let s = utc(spec);
        let mut t = ts(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn every_minute_fires_on_the_next_whole_minute() {
        assert_eq!(nexts("*/1 * * * *", "2024-01-01T00:00:00Z", 2), ["2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"]);
        assert_eq!(nexts("* * * * *", "2024-01-01T00:00:59.5Z", 1), ["2024-01-01T00:01:00Z"]);
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(
            nexts("0,15,30,45 * * * *", "2024-01-01T00:07:00Z", 3),
            ["2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z"]
        );
        assert_eq!(
            nexts("30 6-16/4 * * 1-5", "2024-01-05T15:00:00Z", 3),
            // Friday 14:30 was the last of the day; then Monday 06:30, 10:30.
            ["2024-01-08T06:30:00Z", "2024-01-08T10:30:00Z", "2024-01-08T14:30:00Z"]
        );
        assert_eq!(
            nexts("5/20 * * * *", "2024-01-01T00:00:00Z", 3),
            ["2024-01-01T00:05:00Z", "2024-01-01T00:25:00Z", "2024-01-01T00:45:00Z"]
        );
        assert_eq!(
            nexts("0 0 * jan-feb sun", "2024-02-20T00:00:00Z", 2),
            ["2024-02-25T00:00:00Z", "2025-01-05T00:00:00Z"]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday.
        assert_eq!(
            nexts("0 0 13 * 5", "2024-09-01T00:00:00Z", 3),
            ["2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z", "2024-09-20T00:00:00Z"]
        );
        // With a star day-of-month, only Fridays.
        assert_eq!(nexts("0 0 * * 5", "2024-09-12T00:00:00Z", 1), ["2024-09-13T00:00:00Z"]);
    }

    #[test]
    fn descriptors() {
        assert_eq!(nexts("@hourly", "2024-01-01T00:00:00Z", 1), ["2024-01-01T01:00:00Z"]);
        assert_eq!(nexts("@daily", "2024-01-01T00:00:00Z", 1), ["2024-01-02T00:00:00Z"]);
        assert_eq!(nexts("@midnight", "2024-01-01T10:00:00Z", 1), ["2024-01-02T00:00:00Z"]);
        assert_eq!(nexts("@weekly", "2024-01-01T00:00:00Z", 1), ["2024-01-07T00:00:00Z"]);
        assert_eq!(nexts("@monthly", "2024-01-15T00:00:00Z", 1), ["2024-02-01T00:00:00Z"]);
        assert_eq!(nexts("@yearly", "2024-01-15T00:00:00Z", 1), ["2025-01-01T00:00:00Z"]);
        assert_eq!(nexts("@annually", "2024-01-15T00:00:00Z", 1), ["2025-01-01T00:00:00Z"]);
        assert_eq!(nexts("@every 90s", "2024-01-01T00:00:00.25Z", 2), ["2024-01-01T00:01:30Z", "2024-01-01T00:03:00Z"]);
    }

    #[test]
    fn leap_days_and_impossible_dates() {
        assert_eq!(nexts("0 0 29 2 *", "2024-03-01T00:00:00Z", 1), ["2028-02-29T00:00:00Z"]);
        assert_eq!(utc("0 0 30 2 *").next_after(ts("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let tokyo = Schedule::parse("0 9 * * *", TimeZone::get("Asia/Tokyo").unwrap()).unwrap();
        assert_eq!(tokyo.next_after(ts("2024-01-01T00:00:00Z")).unwrap().to_string(), "2024-01-02T00:00:00Z");
        let ny = TimeZone::get("America/New_York").unwrap();
        // 2:30 does not exist on 2024-03-10 in New York: skipped.
        let gap = Schedule::parse("30 2 * * *", ny.clone()).unwrap();
        assert_eq!(gap.next_after(ts("2024-03-09T12:00:00Z")).unwrap().to_string(), "2024-03-11T06:30:00Z");
        // 1:30 happens twice on 2024-11-03: both fire.
        let fold = Schedule::parse("30 1 * * *", ny).unwrap();
        let first = fold.next_after(ts("2024-11-03T00:00:00Z")).unwrap();
        let second = fold.next_after(first).unwrap();
        assert_eq!(
            (first.to_string(), second.to_string()),
            ("2024-11-03T05:30:00Z".into(), "2024-11-03T06:30:00Z".into())
        );
        // A TZ= prefix names the zone.
        let prefixed = Schedule::parse("TZ=Asia/Tokyo 0 9 * * *", TimeZone::UTC).unwrap();
        assert_eq!(prefixed.next_after(ts("2024-01-01T00:00:00Z")), tokyo.next_after(ts("2024-01-01T00:00:00Z")));
    }

    #[test]
    fn unmet_times_lists_missed_firings() {
        let s = utc("*/15 * * * *");
        let times = s.unmet_times(ts("2024-01-01T00:00:00Z"), ts("2024-01-01T01:00:00Z"), 10);
        let shown: Vec<String> = times.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            shown,
            ["2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z", "2024-01-01T01:00:00Z"]
        );
        assert_eq!(s.unmet_times(ts("2024-01-01T00:00:00Z"), ts("2024-01-02T00:00:00Z"), 3).len(), 3);
    }

    #[test]
    fn parse_errors_read_like_upstream() {
        let e = |s: &str| Schedule::parse(s, TimeZone::UTC).unwrap_err().to_string();
        assert_eq!(e("* * * *"), "expected exactly 5 fields, found 4: [* * * *]");
        assert_eq!(e("60 * * * *"), "end of range (60) above maximum (59): 60");
        assert_eq!(e("*/0 * * * *"), "step of range should be a positive number: */0");
        assert_eq!(e("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(e(""), "empty spec string");
    }
}
