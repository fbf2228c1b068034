//! Calendar arithmetic and Go reference-layout time formatting and parsing (`2006-01-02 15:04:05`,
//! month and weekday names, zone offsets), shared by the `time` and `os` modules. Pure functions
//! of Unix nanoseconds: no clock is read here.

pub const SECOND: i64 = 1_000_000_000;

pub(super) const MONTHS: [&str; 12] = [
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
pub(super) const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

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
