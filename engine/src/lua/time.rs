//! The `time` module (now, sleep, after, timer, ticker, durations) and the `os` subset.
//! Time is the driver's: wall time = the node's epoch + its monotonic `now`; no clock is read here.

use super::channel::new_chan_ud;
use super::errors::fail;
use super::process::{park_recv, TimerSlot};
use super::task::{Chan, WaitKind};
use super::{current, host};
use crate::duration;
use crate::value::{kind, ErrorValue};
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataMethods, Value as LV};

pub const SECOND: i64 = 1_000_000_000;

/// A point in time: Unix nanoseconds, UTC.
#[derive(Clone, Copy, Debug)]
pub struct TimeUd(pub i64);

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

impl UserData for TimeUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("unix", |_, t, ()| Ok(t.0.div_euclid(SECOND)));
        m.add_method("unix_nano", |_, t, ()| Ok(t.0));
        m.add_method("format_rfc3339", |_, t, ()| Ok(rfc3339(t.0, false)));
        m.add_method("format", |_, t, layout: String| Ok(go_format(t.0, &layout)));
        m.add_method("add", |_, t, d: LV| match to_ns(&d) {
            Ok(n) => Ok(TimeUd(t.0.saturating_add(n))),
            Err(e) => Err(mlua::Error::runtime(e.message)),
        });
        m.add_method("sub", |_, t, o: AnyUserData| {
            Ok(DurationUd(t.0 - o.borrow::<TimeUd>()?.0))
        });
        m.add_method("before", |_, t, o: AnyUserData| {
            Ok(t.0 < o.borrow::<TimeUd>()?.0)
        });
        m.add_method("after", |_, t, o: AnyUserData| {
            Ok(t.0 > o.borrow::<TimeUd>()?.0)
        });
        m.add_method("equal", |_, t, o: AnyUserData| {
            Ok(t.0 == o.borrow::<TimeUd>()?.0)
        });
        m.add_method("is_zero", |_, t, ()| Ok(t.0 == ZERO_TIME_NS));
        m.add_method("year", |_, t, ()| Ok(parts(t.0).year));
        m.add_method("month", |_, t, ()| Ok(parts(t.0).month));
        m.add_method("day", |_, t, ()| Ok(parts(t.0).day));
        m.add_method("hour", |_, t, ()| Ok(parts(t.0).hour));
        m.add_method("minute", |_, t, ()| Ok(parts(t.0).min));
        m.add_method("second", |_, t, ()| Ok(parts(t.0).sec));
        m.add_method("nanosecond", |_, t, ()| Ok(parts(t.0).nano));
        m.add_method("weekday", |_, t, ()| Ok(parts(t.0).wday));
        m.add_method("year_day", |_, t, ()| Ok(parts(t.0).yday));
        m.add_method("date", |_, t, ()| {
            let p = parts(t.0);
            Ok((p.year, p.month, p.day))
        });
        m.add_method("clock", |_, t, ()| {
            let p = parts(t.0);
            Ok((p.hour, p.min, p.sec))
        });
        m.add_method("utc", |_, t, ()| Ok(*t));
        m.add_method("in_local", |_, t, ()| Ok(*t));
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(go_format(t.0, "2006-01-02 15:04:05.999999999 -0700 MST"))
        });
    }
}

/// Go's zero Time (year 1) in Unix ns does not fit; use i64::MIN as its stand-in.
const ZERO_TIME_NS: i64 = i64::MIN;

/// Go reference-layout formatting for the common tokens.
pub fn go_format(ns: i64, layout: &str) -> String {
    let p = parts(ns);
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
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        let tokens: [(&str, String); 22] = [
            ("2006", format!("{:04}", p.year)),
            ("January", MONTHS[(p.month - 1) as usize].to_string()),
            ("Monday", DAYS[p.wday as usize].to_string()),
            ("Jan", MONTHS[(p.month - 1) as usize][..3].to_string()),
            ("Mon", DAYS[p.wday as usize][..3].to_string()),
            ("MST", "UTC".to_string()),
            ("Z07:00", "Z".to_string()),
            ("-07:00", "+00:00".to_string()),
            ("-0700", "+0000".to_string()),
            ("Z0700", "Z".to_string()),
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
            host(lua).core.borrow_mut().cancel_timer(s.key);
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
                Some(k) => Ok(host(lua).core.borrow_mut().reset_timer(k, ns as u64)),
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
    let key = host(lua).core.borrow_mut().arm_timer(
        me,
        local,
        ns,
        if period { Some(ns.max(1)) } else { None },
    );
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
        lua.create_function(|lua, ()| Ok(TimeUd(host(lua).core.borrow().wall_now_ns())))?,
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
        lua.create_function(|_, (s, ns): (i64, i64)| Ok(TimeUd(s * SECOND + ns)))?,
    )?;
    t.set(
        "date",
        lua.create_function(
            |_, (y, mo, d, h, mi, s, ns): (i64, i64, i64, i64, i64, i64, i64)| {
                // Out-of-range fields normalise, as Go's time.Date does.
                let months = y * 12 + (mo - 1);
                let (y, mo) = (months.div_euclid(12), months.rem_euclid(12) + 1);
                let days = days_from_civil(y, mo as u32, 1) + d - 1;
                Ok(TimeUd(
                    ((days * 86_400 + h * 3600 + mi * 60 + s) * SECOND) + ns,
                ))
            },
        )?,
    )?;
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
            None => Ok(host(lua).core.borrow().wall_now_ns().div_euclid(SECOND)),
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
        lua.create_function(|lua, ()| Ok(host(lua).core.borrow().now() as f64 / 1e9))?,
    )?;
    t.set(
        "difftime",
        lua.create_function(|_, (a, b): (f64, Option<f64>)| Ok(a - b.unwrap_or(0.0)))?,
    )?;
    t.set(
        "date",
        lua.create_function(|lua, (fmt, at): (Option<String>, Option<i64>)| {
            let secs =
                at.unwrap_or_else(|| host(lua).core.borrow().wall_now_ns().div_euclid(SECOND));
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
    let _ = kind::INVALID;
    Ok(t)
}

fn strftime(p: &Parts, f: &str) -> String {
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
