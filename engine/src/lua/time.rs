//! The `time` module (now, sleep, after, timer, ticker, durations, Time and Location values);
//! layouts and calendar arithmetic are in `timefmt`. Time is the driver's: wall time = the
//! node's epoch + its monotonic `now`; no clock is read here.

use super::channel::new_chan_ud;
use super::coroutines::{Chan, WaitKind};
use super::current;
use super::errors::fail;
use super::lua_process::{park_recv, TimerSlot};
use super::timefmt::{days_from_civil, go_format_in, go_parse, parts, Zone, SECOND};
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

/// Go's zero Time (year 1) in Unix ns does not fit; use i64::MIN as its stand-in.
const ZERO_TIME_NS: i64 = i64::MIN;

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
fn arm(lua: &Lua, ns: i64, period: bool, chan: super::coroutines::ChanRef) -> mlua::Result<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
