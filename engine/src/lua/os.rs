//! The Wippy `os` subset: `os.time`, `os.clock`, `os.date`, `os.difftime`, `os.platform`.
//! Time is the driver's: wall time = the node's epoch + its monotonic `now`; no clock is read here.

use super::time::{mono_now, wall_now};
use super::timefmt::{days_from_civil, parts, Parts, DAYS, MONTHS, SECOND};
use mlua::{Lua, Table, Value as LV};

/// The Wippy `os` subset: time, clock, date, difftime, platform.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
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
    fn strftime_formats_like_c() {
        let p = parts(1_700_000_000 * SECOND);
        assert_eq!(
            strftime(&p, "%Y-%m-%d %H:%M:%S %a %A %b %B %j %p %y %%"),
            "2023-11-14 22:13:20 Tue Tuesday Nov November 318 PM 23 %"
        );
        assert_eq!(strftime(&p, "%c"), "Tue Nov 14 22:13:20 2023");
        assert_eq!(strftime(&p, "%x %X %q"), "11/14/23 22:13:20 %q");
    }
}
