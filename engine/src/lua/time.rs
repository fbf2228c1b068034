//! The `time` module (now, sleep, after, timer, ticker, durations) and the `os` subset.
//! Time is the driver's: wall time = the node's epoch + its monotonic `now`; no clock is read here.

use super::channel::new_chan_ud;
use super::current;
use super::errors::fail;
use super::process::{park_recv, TimerSlot};
use super::task::{Chan, WaitKind};
use crate::command::Command;
use crate::duration;
use crate::value::{kind, ErrorValue, Value};

/// The node's wall clock (Unix ns), as the driver hands it in.
pub(crate) fn wall_now(lua: &Lua) -> mlua::Result<i64> {
    match super::request(lua, Command::Now { wall: true })? {
        Ok(Value::Int(ns)) => Ok(ns),
        _ => Err(mlua::Error::runtime("clock unavailable")),
    }
}

/// The node's monotonic clock (ns since node start).
pub(crate) fn mono_now(lua: &Lua) -> mlua::Result<i64> {
    match super::request(lua, Command::Now { wall: false })? {
        Ok(Value::Int(ns)) => Ok(ns),
        _ => Err(mlua::Error::runtime("clock unavailable")),
    }
}
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataMethods, Value as LV};

pub const SECOND: i64 = 1_000_000_000;

const MONTHS: [&str; 12] = [
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
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A point in time: Unix nanoseconds, UTC.
#[derive(Clone, Debug)]
pub struct TimeUd(pub i64, pub Zone);

/// A span of time in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct DurationUd(pub i64);

/// Number (ns), Go duration string or Duration userdata → nanoseconds.
pub fn to_ns(v: &LV) -> Result<i64, ErrorValue> {
    match v {
        LV::Integer(i) => Ok(*i),
        LV::Number(n) if n.is_finite() => Ok(*n as i64),
        LV::String(s) => {
            duration::parse(&s.to_string_lossy()).map_err(|e| ErrorValue::new(kind::INVALID, e))
        }
        LV::UserData(ud) => ud
            .borrow::<DurationUd>()
            .map(|d| d.0)
            .map_err(|_| ErrorValue::new(kind::INVALID, "expected a duration")),
        _ => Err(ErrorValue::new(
            kind::INVALID,
            format!("invalid duration: {}", super::errors::display(v)),
        )),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub struct Parts {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub nano: u32,
    pub wday: u32,
    pub yday: u32,
}

pub fn parts(unix_ns: i64) -> Parts {
    let secs = unix_ns.div_euclid(SECOND);
    let nano = unix_ns.rem_euclid(SECOND) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    Parts {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        min: (rem % 3600 / 60) as u32,
        sec: (rem % 60) as u32,
        nano,
        wday: (days + 4).rem_euclid(7) as u32,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
    }
}

pub fn rfc3339(unix_ns: i64, nanos: bool) -> String {
    let p = parts(unix_ns);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    );
    if nanos && p.nano != 0 {
        let f = format!("{:09}", p.nano);
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn other(o: &AnyUserData) -> mlua::Result<i64> {
    Ok(o.borrow::<TimeUd>()?.0)
}

fn months_days(t: &TimeUd, years: i64, months: i64, days: i64) -> TimeUd {
    let local = t.local_ns();
    let p = parts(local);
    let total = p.year * 12 + (p.month as i64 - 1) + years * 12 + months;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let day_ns = (p.hour as i64 * 3600 + p.min as i64 * 60 + p.sec as i64) * SECOND + p.nano as i64;
    let d = days_from_civil(y, m as u32, 1) + p.day as i64 - 1 + days;
    TimeUd(
        d * 86_400 * SECOND + day_ns - t.1.offset as i64 * SECOND,
        t.1.clone(),
    )
}

impl UserData for TimeUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("unix", |_, t, ()| Ok(t.0.div_euclid(SECOND)));
        m.add_method("unix_nano", |_, t, ()| Ok(t.0));
        m.add_method("format_rfc3339", |_, t, ()| {
            Ok(t.format("2006-01-02T15:04:05Z07:00"))
        });
        m.add_method("format", |_, t, layout: String| Ok(t.format(&layout)));
        m.add_method("add", |_, t, d: LV| match to_ns(&d) {
            Ok(n) => Ok(TimeUd(t.0.saturating_add(n), t.1.clone())),
            Err(e) => Err(mlua::Error::runtime(e.message)),
        });
        m.add_method("add_date", |_, t, (y, mo, d): (i64, i64, i64)| {
            Ok(months_days(t, y, mo, d))
        });
        m.add_method("sub", |_, t, o: AnyUserData| {
            Ok(DurationUd(t.0 - other(&o)?))
        });
        m.add_method("before", |_, t, o: AnyUserData| Ok(t.0 < other(&o)?));
        m.add_method("after", |_, t, o: AnyUserData| Ok(t.0 > other(&o)?));
        m.add_method("equal", |_, t, o: AnyUserData| Ok(t.0 == other(&o)?));
        m.add_method("is_zero", |_, t, ()| Ok(t.0 == ZERO_TIME_NS));
        m.add_method("year", |_, t, ()| Ok(parts(t.local_ns()).year));
        m.add_method("month", |_, t, ()| Ok(parts(t.local_ns()).month));
        m.add_method("day", |_, t, ()| Ok(parts(t.local_ns()).day));
        m.add_method("hour", |_, t, ()| Ok(parts(t.local_ns()).hour));
        m.add_method("minute", |_, t, ()| Ok(parts(t.local_ns()).min));
        m.add_method("second", |_, t, ()| Ok(parts(t.local_ns()).sec));
        m.add_method("nanosecond", |_, t, ()| Ok(parts(t.local_ns()).nano));
        m.add_method("weekday", |_, t, ()| Ok(parts(t.local_ns()).wday));
        m.add_method("year_day", |_, t, ()| Ok(parts(t.local_ns()).yday));
        m.add_method("date", |_, t, ()| {
            let p = parts(t.local_ns());
            Ok((p.year, p.month, p.day))
        });
        m.add_method("clock", |_, t, ()| {
            let p = parts(t.local_ns());
            Ok((p.hour, p.min, p.sec))
        });
        m.add_method("utc", |_, t, ()| Ok(TimeUd::utc(t.0)));
        m.add_method("in_local", |_, t, ()| Ok(TimeUd(t.0, Zone::local())));
        m.add_method("in_location", |_, t, l: AnyUserData| {
            Ok(TimeUd(t.0, l.borrow::<Zone>()?.clone()))
        });
        m.add_method("location", |_, t, ()| Ok(t.1.clone()));
        m.add_method("round", |_, t, d: AnyUserData| {
            let d = d.borrow::<DurationUd>()?.0;
            if d <= 0 {
                return Ok(TimeUd(t.0, t.1.clone()));
            }
            let r = t.0.rem_euclid(d);
            let base = t.0 - r;
            Ok(TimeUd(if r + r < d { base } else { base + d }, t.1.clone()))
        });
        m.add_method("truncate", |_, t, d: AnyUserData| {
            let d = d.borrow::<DurationUd>()?.0;
            if d <= 0 {
                return Ok(TimeUd(t.0, t.1.clone()));
            }
            Ok(TimeUd(t.0 - t.0.rem_euclid(d), t.1.clone()))
        });
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(t.format("2006-01-02 15:04:05.999999999 -0700 MST"))
        });
    }
}

/// A location: a name and a fixed offset east of UTC in seconds. Weft carries no time-zone
/// database yet, so named zones other than UTC resolve with offset 0 (see load_location).
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    pub name: std::rc::Rc<str>,
    pub offset: i32,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            offset: 0,
        }
    }

    /// The node's local zone. Deterministic on purpose: the engine may not read the host's zone.
    pub fn local() -> Zone {
        Zone {
            name: "Local".into(),
            offset: 0,
        }
    }
}

impl UserData for Zone {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("string", |_, z, ()| Ok(z.name.to_string()));
        m.add_meta_method(MetaMethod::ToString, |_, z, ()| Ok(z.name.to_string()));
    }
}

impl TimeUd {
    pub fn utc(ns: i64) -> TimeUd {
        TimeUd(ns, Zone::utc())
    }

    fn local_ns(&self) -> i64 {
        self.0.saturating_add(self.1.offset as i64 * SECOND)
    }

    pub fn format(&self, layout: &str) -> String {
        go_format_in(self.local_ns(), &self.1, layout)
    }
}

/// Go's time.Parse for the reference-layout tokens Wippy apps use. Returns Unix ns.
pub fn go_parse(layout: &str, value: &str) -> Result<i64, String> {
    let fail =
        |what: &str| format!("parsing time \"{value}\" as \"{layout}\": cannot parse {what}");
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nano) =
        (1i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut offset = 0i64;
    let (mut l, mut v) = (layout, value);
    fn digits(v: &str, min: usize, max: usize) -> Option<(i64, &str)> {
        let n = v
            .bytes()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        Some((v[..n].parse().ok()?, &v[n..]))
    }
    fn frac(v: &str) -> (i64, &str) {
        if let Some(rest) = v.strip_prefix('.').or_else(|| v.strip_prefix(',')) {
            let n = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if n > 0 {
                let d = &rest[..n.min(9)];
                let mut x: i64 = d.parse().unwrap_or(0);
                for _ in d.len()..9 {
                    x *= 10;
                }
                return (x, &rest[n..]);
            }
        }
        (0, v)
    }
    fn offset_of(v: &str, colon: bool, z: bool) -> Option<(i64, &str)> {
        if z {
            if let Some(rest) = v.strip_prefix('Z') {
                return Some((0, rest));
            }
        }
        let sign = match v.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, rest) = digits(&v[1..], 2, 2)?;
        let rest = if colon { rest.strip_prefix(':')? } else { rest };
        let (m, rest) = digits(rest, 2, 2)?;
        Some((sign * (h * 3600 + m * 60), rest))
    }
    while !l.is_empty() {
        macro_rules! take {
            ($tok:expr) => {
                l.starts_with($tok) && {
                    l = &l[$tok.len()..];
                    true
                }
            };
        }
        if take!("2006") {
            (year, v) = digits(v, 4, 4).ok_or_else(|| fail("year"))?;
        } else if take!("January") {
            let i = MONTHS
                .iter()
                .position(|m| v.starts_with(m))
                .ok_or_else(|| fail("month"))?;
            v = &v[MONTHS[i].len()..];
            month = i as i64 + 1;
        } else if take!("Monday") {
            let i = DAYS
                .iter()
                .position(|d| v.starts_with(d))
                .ok_or_else(|| fail("day"))?;
            v = &v[DAYS[i].len()..];
        } else if take!("Jan") {
            let i = MONTHS
                .iter()
                .position(|m| v.starts_with(&m[..3]))
                .ok_or_else(|| fail("month"))?;
            v = &v[3..];
            month = i as i64 + 1;
        } else if take!("Mon") {
            DAYS.iter()
                .position(|d| v.starts_with(&d[..3]))
                .ok_or_else(|| fail("day"))?;
            v = &v[3..];
        } else if take!("MST") {
            let n = v.bytes().take_while(|b| b.is_ascii_uppercase()).count();
            if n < 3 {
                return Err(fail("zone"));
            }
            v = &v[n..];
        } else if take!("Z07:00") {
            (offset, v) = offset_of(v, true, true).ok_or_else(|| fail("offset"))?;
        } else if take!("-07:00") {
            (offset, v) = offset_of(v, true, false).ok_or_else(|| fail("offset"))?;
        } else if take!("Z0700") {
            (offset, v) = offset_of(v, false, true).ok_or_else(|| fail("offset"))?;
        } else if take!("-0700") {
            (offset, v) = offset_of(v, false, false).ok_or_else(|| fail("offset"))?;
        } else if l.starts_with(".0") || l.starts_with(".9") {
            let n = 1 + l[1..]
                .bytes()
                .take_while(|b| *b == b'0' || *b == b'9')
                .count();
            l = &l[n..];
            (nano, v) = frac(v);
        } else if take!("01") {
            (month, v) = digits(v, 2, 2).ok_or_else(|| fail("month"))?;
        } else if take!("02") {
            (day, v) = digits(v, 2, 2).ok_or_else(|| fail("day"))?;
        } else if take!("15") {
            (hour, v) = digits(v, 1, 2).ok_or_else(|| fail("hour"))?;
        } else if take!("03") {
            (hour, v) = digits(v, 2, 2).ok_or_else(|| fail("hour"))?;
        } else if take!("04") {
            (min, v) = digits(v, 2, 2).ok_or_else(|| fail("minute"))?;
        } else if take!("05") {
            (sec, v) = digits(v, 2, 2).ok_or_else(|| fail("second"))?;
            if !l.starts_with('.') {
                (nano, v) = frac(v); // Go accepts fractional seconds the layout does not show
            }
        } else if take!("PM") {
            pm = Some(if v.starts_with("PM") {
                true
            } else if v.starts_with("AM") {
                false
            } else {
                return Err(fail("AM/PM"));
            });
            v = &v[2..];
        } else if take!("06") {
            let (y, rest) = digits(v, 2, 2).ok_or_else(|| fail("year"))?;
            year = if y >= 69 { 1900 + y } else { 2000 + y };
            v = rest;
        } else if take!("_2") {
            (day, v) = digits(v.trim_start_matches(' '), 1, 2).ok_or_else(|| fail("day"))?;
        } else if take!("1") {
            (month, v) = digits(v, 1, 2).ok_or_else(|| fail("month"))?;
        } else if take!("2") {
            (day, v) = digits(v, 1, 2).ok_or_else(|| fail("day"))?;
        } else if take!("3") {
            (hour, v) = digits(v, 1, 2).ok_or_else(|| fail("hour"))?;
        } else if take!("4") {
            (min, v) = digits(v, 1, 2).ok_or_else(|| fail("minute"))?;
        } else if take!("5") {
            (sec, v) = digits(v, 1, 2).ok_or_else(|| fail("second"))?;
        } else {
            let c = l.chars().next().unwrap_or(' ');
            if !v.starts_with(c) {
                return Err(fail(&format!("\"{v}\"")));
            }
            l = &l[c.len_utf8()..];
            v = &v[c.len_utf8()..];
        }
    }
    if !v.is_empty() {
        return Err(format!("parsing time \"{value}\": extra text \"{v}\""));
    }
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 59 {
        return Err(format!("parsing time \"{value}\": value out of range"));
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    // Unix nanoseconds cover 1678–2262; Go's year-1 default for date-less layouts does not fit.
    secs.checked_mul(SECOND)
        .and_then(|n| n.checked_add(nano))
        .ok_or_else(|| {
            format!("parsing time \"{value}\": outside the years 1678-2262 that weft can represent")
        })
}

/// Go's zero Time (year 1) in Unix ns does not fit; use i64::MIN as its stand-in.
const ZERO_TIME_NS: i64 = i64::MIN;

/// Go reference-layout formatting for the common tokens.
pub fn go_format(ns: i64, layout: &str) -> String {
    go_format_in(ns, &Zone::utc(), layout)
}

fn zone_offset(offset: i32, colon: bool, z: bool) -> String {
    if z && offset == 0 {
        return "Z".into();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let o = offset.unsigned_abs();
    if colon {
        format!("{sign}{:02}:{:02}", o / 3600, o % 3600 / 60)
    } else {
        format!("{sign}{:02}{:02}", o / 3600, o % 3600 / 60)
    }
}

/// Formats local-time nanoseconds `ns` (already shifted by the zone's offset) in `zone`.
pub fn go_format_in(ns: i64, zone: &Zone, layout: &str) -> String {
    let p = parts(ns);
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        let tokens: [(&str, String); 22] = [
            ("2006", format!("{:04}", p.year)),
            ("January", MONTHS[(p.month - 1) as usize].to_string()),
            ("Monday", DAYS[p.wday as usize].to_string()),
            ("Jan", MONTHS[(p.month - 1) as usize][..3].to_string()),
            ("Mon", DAYS[p.wday as usize][..3].to_string()),
            ("MST", zone.name.to_string()),
            ("Z07:00", zone_offset(zone.offset, true, true)),
            ("-07:00", zone_offset(zone.offset, true, false)),
            ("-0700", zone_offset(zone.offset, false, false)),
            ("Z0700", zone_offset(zone.offset, false, true)),
            (".999999999", frac(p.nano, 9, true)),
            (".000000000", frac(p.nano, 9, false)),
            (".999999", frac(p.nano / 1000, 6, true)),
            (".000000", frac(p.nano / 1000, 6, false)),
            (".999", frac(p.nano / 1_000_000, 3, true)),
            (".000", frac(p.nano / 1_000_000, 3, false)),
            ("01", format!("{:02}", p.month)),
            ("02", format!("{:02}", p.day)),
            ("15", format!("{:02}", p.hour)),
            (
                "03",
                format!(
                    "{:02}",
                    if p.hour.is_multiple_of(12) {
                        12
                    } else {
                        p.hour % 12
                    }
                ),
            ),
            ("04", format!("{:02}", p.min)),
            ("05", format!("{:02}", p.sec)),
        ];
        let mut matched = false;
        for (tok, val) in tokens.iter() {
            if rest.starts_with(tok) {
                out.push_str(val);
                rest = &rest[tok.len()..];
                matched = true;
                break;
            }
        }
        if matched {
            continue;
        }
        let more: [(&str, String); 5] = [
            (
                "PM",
                if p.hour >= 12 {
                    "PM".into()
                } else {
                    "AM".into()
                },
            ),
            ("06", format!("{:02}", p.year % 100)),
            ("1", p.month.to_string()),
            ("2", p.day.to_string()),
            (
                "3",
                (if p.hour.is_multiple_of(12) {
                    12
                } else {
                    p.hour % 12
                })
                .to_string(),
            ),
        ];
        for (tok, val) in more.iter() {
            if rest.starts_with(tok) {
                out.push_str(val);
                rest = &rest[tok.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn frac(v: u32, width: usize, trim: bool) -> String {
    let s = format!("{:0width$}", v, width = width);
    let s = if trim {
        s.trim_end_matches('0').to_string()
    } else {
        s
    };
    if s.is_empty() {
        String::new()
    } else {
        format!(".{s}")
    }
}

impl UserData for DurationUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("nanoseconds", |_, d, ()| Ok(d.0));
        m.add_method("microseconds", |_, d, ()| Ok(d.0 / 1000));
        m.add_method("milliseconds", |_, d, ()| Ok(d.0 / 1_000_000));
        m.add_method("seconds", |_, d, ()| Ok(d.0 as f64 / 1e9));
        m.add_method("minutes", |_, d, ()| Ok(d.0 as f64 / 6e10));
        m.add_method("hours", |_, d, ()| Ok(d.0 as f64 / 3.6e12));
        m.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(duration::format(d.0)));
    }
}

/// `time.timer` / `time.ticker` handle.
pub struct TimerUd {
    pub local: u64,
    pub chan: AnyUserData,
    pub ticker: bool,
}

fn stop_timer(lua: &Lua, local: u64) -> mlua::Result<bool> {
    let st = current(lua)?;
    let slot = st.borrow_mut().timers.remove(&local);
    match slot {
        Some(s) => {
            super::request(lua, Command::TimerStop { key: s.key })?
                .map_err(|e| mlua::Error::runtime(e.message))?;
            let mut s2 = st.borrow_mut();
            let mut c = s.chan.borrow_mut();
            s2.tasks.close(&mut c);
            Ok(true)
        }
        None => Ok(false),
    }
}

impl UserData for TimerUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("response", |_, t, ()| Ok(t.chan.clone()));
        m.add_method("channel", |_, t, ()| Ok(t.chan.clone()));
        m.add_method("stop", |lua, t, ()| {
            let was = stop_timer(lua, t.local)?;
            Ok(if t.ticker { true } else { was })
        });
        m.add_method("reset", |lua, t, d: LV| {
            let ns = to_ns(&d).map_err(|e| mlua::Error::runtime(e.message))?;
            if ns <= 0 {
                return Err(mlua::Error::runtime(
                    "timer:reset needs a positive duration",
                ));
            }
            let st = current(lua)?;
            let key = st.borrow().timers.get(&t.local).map(|s| s.key);
            match key {
                Some(key) => Ok(matches!(
                    super::request(
                        lua,
                        Command::TimerReset {
                            key,
                            delay_ns: ns as u64,
                        },
                    )?,
                    Ok(Value::Bool(true))
                )),
                None => Ok(false),
            }
        });
    }
}

/// Arms a process timer delivering into `chan`; returns its local id.
fn arm(lua: &Lua, ns: i64, period: bool, chan: super::task::ChanRef) -> mlua::Result<u64> {
    let st = current(lua)?;
    let (me, local) = {
        let mut s = st.borrow_mut();
        (s.id, s.next_id())
    };
    let ns = ns.max(0) as u64;
    let _ = me;
    let key = match super::request(
        lua,
        Command::Timer {
            local,
            delay_ns: ns,
            period_ns: if period { Some(ns.max(1)) } else { None },
        },
    )? {
        Ok(Value::Int(k)) => k as u64,
        Ok(_) => return Err(mlua::Error::runtime("timer: no key")),
        Err(e) => return Err(mlua::Error::runtime(e.message)),
    };
    st.borrow_mut().timers.insert(
        local,
        TimerSlot {
            chan,
            key,
            ticker: period,
        },
    );
    Ok(local)
}

fn positive(lua: &Lua, d: &LV) -> Result<i64, mlua::Result<(LV, LV)>> {
    match to_ns(d) {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(fail(
            lua,
            ErrorValue::new(kind::INVALID, "duration must be positive"),
        )),
        Err(e) => Err(fail(lua, e)),
    }
}

pub fn install_raw(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "sleep",
        lua.create_function(|lua, d: LV| {
            let ns = match to_ns(&d) {
                Ok(n) => n,
                Err(e) => {
                    let (a, b) = fail(lua, e)?;
                    return Ok((a, b));
                }
            };
            let ch = Chan::new(1);
            arm(lua, ns, false, ch.clone())?;
            Ok((park_recv(lua, ch, WaitKind::Sleep)?, LV::Nil))
        })?,
    )?;
    Ok(())
}

pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "now",
        lua.create_function(|lua, ()| Ok(TimeUd::utc(wall_now(lua)?)))?,
    )?;
    t.set("sleep", prelude.get::<LV>("sleep")?)?;
    t.set(
        "after",
        lua.create_function(|lua, d: LV| {
            let ns = match positive(lua, &d) {
                Ok(n) => n,
                Err(r) => return r,
            };
            let ch = Chan::new(1);
            ch.borrow_mut().one_shot = true;
            arm(lua, ns, false, ch.clone())?;
            Ok((LV::UserData(new_chan_ud(lua, ch)?), LV::Nil))
        })?,
    )?;
    for (name, ticker) in [("timer", false), ("ticker", true)] {
        t.set(
            name,
            lua.create_function(move |lua, d: LV| {
                let ns = match positive(lua, &d) {
                    Ok(n) => n,
                    Err(r) => return r,
                };
                let ch = Chan::new(if ticker { 16 } else { 1 });
                let local = arm(lua, ns, ticker, ch.clone())?;
                let chan = new_chan_ud(lua, ch)?;
                Ok((
                    LV::UserData(lua.create_userdata(TimerUd {
                        local,
                        chan,
                        ticker,
                    })?),
                    LV::Nil,
                ))
            })?,
        )?;
    }
    t.set(
        "parse_duration",
        lua.create_function(|lua, d: LV| match to_ns(&d) {
            Ok(n) => Ok((LV::UserData(lua.create_userdata(DurationUd(n))?), LV::Nil)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "unix",
        lua.create_function(|_, (s, ns): (i64, i64)| Ok(TimeUd::utc(s * SECOND + ns)))?,
    )?;
    t.set(
        "date",
        lua.create_function(
            |_,
             (y, mo, d, h, mi, s, ns, loc): (
                i64,
                i64,
                i64,
                i64,
                i64,
                i64,
                i64,
                Option<AnyUserData>,
            )| {
                // Out-of-range fields normalise, as Go's time.Date does.
                let zone = match loc {
                    Some(l) => l.borrow::<Zone>()?.clone(),
                    None => Zone::local(),
                };
                let months = y * 12 + (mo - 1);
                let (y, mo) = (months.div_euclid(12), months.rem_euclid(12) + 1);
                let days = days_from_civil(y, mo as u32, 1) + d - 1;
                let local = ((days * 86_400 + h * 3600 + mi * 60 + s) * SECOND) + ns;
                Ok(TimeUd(local - zone.offset as i64 * SECOND, zone))
            },
        )?,
    )?;
    t.set(
        "parse",
        lua.create_function(
            |lua, (layout, value, loc): (String, String, Option<AnyUserData>)| match go_parse(
                &layout, &value,
            ) {
                Ok(ns) => {
                    let zone = match loc {
                        Some(l) => l.borrow::<Zone>()?.clone(),
                        None => Zone::utc(),
                    };
                    Ok((
                        LV::UserData(lua.create_userdata(TimeUd(ns, zone))?),
                        LV::Nil,
                    ))
                }
                Err(m) => fail(lua, ErrorValue::new(kind::INVALID, m)),
            },
        )?,
    )?;
    t.set("utc", Zone::utc())?;
    t.set("localtz", Zone::local())?;
    t.set(
        "load_location",
        lua.create_function(|lua, name: String| {
            if name.is_empty() {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "location name must not be empty"),
                );
            }
            // No time-zone database yet: UTC/Local and well-formed Area/City names resolve,
            // the latter with offset 0 (recorded as a known gap).
            const AREAS: [&str; 11] = [
                "Africa",
                "America",
                "Antarctica",
                "Arctic",
                "Asia",
                "Atlantic",
                "Australia",
                "Europe",
                "Indian",
                "Pacific",
                "Etc",
            ];
            let known = name == "UTC"
                || name == "Local"
                || name
                    .split_once('/')
                    .is_some_and(|(a, c)| AREAS.contains(&a) && !c.is_empty());
            if !known {
                return fail(
                    lua,
                    ErrorValue::new(kind::NOT_FOUND, format!("unknown time zone {name}")),
                );
            }
            Ok((
                LV::UserData(lua.create_userdata(Zone {
                    name: name.as_str().into(),
                    offset: 0,
                })?),
                LV::Nil,
            ))
        })?,
    )?;
    t.set(
        "fixed_zone",
        lua.create_function(|_, (name, offset): (String, i64)| {
            Ok(Zone {
                name: name.as_str().into(),
                offset: offset.clamp(-86_400, 86_400) as i32,
            })
        })?,
    )?;
    for (i, name) in [
        "JANUARY",
        "FEBRUARY",
        "MARCH",
        "APRIL",
        "MAY",
        "JUNE",
        "JULY",
        "AUGUST",
        "SEPTEMBER",
        "OCTOBER",
        "NOVEMBER",
        "DECEMBER",
    ]
    .iter()
    .enumerate()
    {
        t.set(*name, i as i64 + 1)?;
    }
    for (i, name) in [
        "SUNDAY",
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
    ]
    .iter()
    .enumerate()
    {
        t.set(*name, i as i64)?;
    }
    for (name, v) in [
        ("NANOSECOND", 1i64),
        ("MICROSECOND", 1_000),
        ("MILLISECOND", 1_000_000),
        ("SECOND", SECOND),
        ("MINUTE", 60 * SECOND),
        ("HOUR", 3600 * SECOND),
    ] {
        t.set(name, v)?;
    }
    for (name, v) in [
        ("RFC3339", "2006-01-02T15:04:05Z07:00"),
        ("RFC3339NANO", "2006-01-02T15:04:05.999999999Z07:00"),
        ("DATE_TIME", "2006-01-02 15:04:05"),
        ("DATE_ONLY", "2006-01-02"),
        ("TIME_ONLY", "15:04:05"),
        ("KITCHEN", "3:04PM"),
        ("RFC822", "02 Jan 06 15:04 MST"),
        ("RFC822Z", "02 Jan 06 15:04 -0700"),
        ("RFC850", "Monday, 02-Jan-06 15:04:05 MST"),
        ("RFC1123", "Mon, 02 Jan 2006 15:04:05 MST"),
        ("RFC1123Z", "Mon, 02 Jan 2006 15:04:05 -0700"),
        ("STAMP", "Jan _2 15:04:05"),
        ("STAMP_MILLI", "Jan _2 15:04:05.000"),
        ("STAMP_MICRO", "Jan _2 15:04:05.000000"),
        ("STAMP_NANO", "Jan _2 15:04:05.000000000"),
    ] {
        t.set(name, v)?;
    }
    Ok(t)
}

/// The Wippy `os` subset: time, clock, date, difftime, platform.
pub fn os_module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "time",
        lua.create_function(|lua, tbl: Option<Table>| match tbl {
            None => Ok(wall_now(lua)?.div_euclid(SECOND)),
            Some(t) => {
                let y: i64 = t.get("year")?;
                let m: i64 = t.get("month")?;
                let d: i64 = t.get("day")?;
                let h: i64 = t.get::<Option<i64>>("hour")?.unwrap_or(0);
                let mi: i64 = t.get::<Option<i64>>("min")?.unwrap_or(0);
                let s: i64 = t.get::<Option<i64>>("sec")?.unwrap_or(0);
                let months = y * 12 + (m - 1);
                let days =
                    days_from_civil(months.div_euclid(12), (months.rem_euclid(12) + 1) as u32, 1)
                        + d
                        - 1;
                Ok(days * 86_400 + h * 3600 + mi * 60 + s)
            }
        })?,
    )?;
    t.set(
        "clock",
        lua.create_function(|lua, ()| Ok(mono_now(lua)? as f64 / 1e9))?,
    )?;
    t.set(
        "difftime",
        lua.create_function(|_, (a, b): (f64, Option<f64>)| Ok(a - b.unwrap_or(0.0)))?,
    )?;
    t.set(
        "date",
        lua.create_function(|lua, (fmt, at): (Option<String>, Option<i64>)| {
            let secs = match at {
                Some(a) => a,
                None => wall_now(lua)?.div_euclid(SECOND),
            };
            let p = parts(secs * SECOND);
            let fmt = fmt.unwrap_or_else(|| "%c".into());
            let f = fmt.trim_start_matches('!');
            if f.starts_with("*t") {
                let t = lua.create_table()?;
                t.set("year", p.year)?;
                t.set("month", p.month)?;
                t.set("day", p.day)?;
                t.set("hour", p.hour)?;
                t.set("min", p.min)?;
                t.set("sec", p.sec)?;
                t.set("wday", p.wday + 1)?;
                t.set("yday", p.yday)?;
                t.set("isdst", false)?;
                return Ok(LV::Table(t));
            }
            Ok(LV::String(lua.create_string(strftime(&p, f))?))
        })?,
    )?;
    t.set("platform", "wippy")?;
    Ok(t)
}

fn strftime(p: &Parts, f: &str) -> String {
    let mut out = String::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&p.year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", p.year % 100)),
            Some('m') => out.push_str(&format!("{:02}", p.month)),
            Some('d') => out.push_str(&format!("{:02}", p.day)),
            Some('H') => out.push_str(&format!("{:02}", p.hour)),
            Some('M') => out.push_str(&format!("{:02}", p.min)),
            Some('S') => out.push_str(&format!("{:02}", p.sec)),
            Some('p') => out.push_str(if p.hour >= 12 { "PM" } else { "AM" }),
            Some('A') => out.push_str(DAYS[p.wday as usize]),
            Some('a') => out.push_str(&DAYS[p.wday as usize][..3]),
            Some('B') => out.push_str(MONTHS[(p.month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(p.month - 1) as usize][..3]),
            Some('j') => out.push_str(&format!("{:03}", p.yday)),
            Some('x') => out.push_str(&format!("{:02}/{:02}/{:02}", p.month, p.day, p.year % 100)),
            Some('X') => out.push_str(&format!("{:02}:{:02}:{:02}", p.hour, p.min, p.sec)),
            Some('c') => out.push_str(&format!(
                "{} {} {:2} {:02}:{:02}:{:02} {}",
                &DAYS[p.wday as usize][..3],
                &MONTHS[(p.month - 1) as usize][..3],
                p.day,
                p.hour,
                p.min,
                p.sec,
                p.year
            )),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        assert_eq!(civil(20_780), (2026, 11, 23));
        let p = parts(1_700_000_000 * SECOND);
        assert_eq!(
            (p.year, p.month, p.day, p.hour, p.min, p.sec),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(p.wday, 2);
    }

    #[test]
    fn parses_like_go() {
        let t = go_parse("2006-01-02 15:04:05", "2024-12-29 15:04:05").unwrap();
        assert_eq!(
            go_format(t, "Mon Jan 2 15:04:05 MST 2006"),
            "Sun Dec 29 15:04:05 UTC 2024"
        );
        let f = go_parse("2006-01-02T15:04:05.999999999Z", "2024-01-01T12:34:56.789Z").unwrap();
        assert_eq!(f.rem_euclid(SECOND), 789_000_000);
        let z = go_parse("2006-01-02T15:04:05Z07:00", "2024-01-01T12:00:00+02:00").unwrap();
        assert_eq!(go_format(z, "15:04"), "10:00");
        assert_eq!(
            go_parse("2006-01-02 3:04PM", "2024-01-01 1:30PM")
                .map(|n| go_format(n, "15:04"))
                .unwrap(),
            "13:30"
        );
        assert!(go_parse("2006-01-02", "invalid-date")
            .unwrap_err()
            .contains("cannot parse"));
        assert!(go_parse("2006-01-02", "2024-13-01").is_err());
        assert!(go_parse("2006", "2024x").is_err());
        assert!(go_parse("3:04PM", "1:30PM")
            .unwrap_err()
            .contains("outside the years"));
    }

    #[test]
    fn formats_in_a_zone_and_adds_dates() {
        let est = Zone {
            name: "EST".into(),
            offset: -5 * 3600,
        };
        let t = TimeUd(
            go_parse("2006-01-02 15:04", "2024-12-29 15:04").unwrap(),
            est,
        );
        assert_eq!(
            t.format("2006-01-02 15:04 MST -07:00"),
            "2024-12-29 10:04 EST -05:00"
        );
        let later = months_days(&TimeUd::utc(t.0), 1, 2, 3);
        assert_eq!(later.format("2006-01-02"), "2026-03-04");
    }

    #[test]
    fn formats_like_go() {
        let t = 1_700_000_000 * SECOND + 5_000_000;
        assert_eq!(rfc3339(t, false), "2023-11-14T22:13:20Z");
        assert_eq!(
            go_format(t, "2006-01-02 15:04:05.000"),
            "2023-11-14 22:13:20.005"
        );
        assert_eq!(
            go_format(t, "Jan 2, 2006 at 3:04PM"),
            "Nov 14, 2023 at 10:13PM"
        );
    }
}
