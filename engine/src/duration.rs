//! Go duration text: `time.ParseDuration` grammar and `Duration.String()` rendering, in nanoseconds.
//! Pure string arithmetic only: never reads a clock, and never panics on any input.

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Magnitude of `i64::MIN`: Go accumulates into a `uint64` so the most negative duration parses.
const LIMIT: u64 = 1 << 63;

fn unit_scale(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => NANOSECOND,
        // Go accepts both the micro sign U+00B5 and the Greek mu U+03BC.
        "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
        "ms" => MILLISECOND,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        _ => return None,
    })
}

/// Go's `time.quote`: error messages must match Go byte for byte, and Go hex-escapes
/// every non-ASCII or control byte rather than using strconv.Quote's rules.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{:02x}", b));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn invalid(orig: &str) -> String {
    format!("time: invalid duration {}", quote(orig))
}

/// Consumes `[0-9]*`; `None` on overflow past 2^63 (Go treats that as an invalid duration).
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let bytes = s.as_bytes();
    let mut x: u64 = 0;
    let mut i = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(bytes[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Consumes `[0-9]*` after a decimal point. Excess digits only stop adding precision
/// (Go's behaviour), so a very long fraction is not an error.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let bytes = s.as_bytes();
    let mut x: u64 = 0;
    let mut scale = 1.0f64;
    let mut overflow = false;
    let mut i = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        let digit = u64::from(bytes[i] - b'0');
        i += 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + digit;
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Parses a Go duration string (`"1h30m"`, `"-1.5s"`, `"300ms"`) into nanoseconds.
/// Errors carry Go's exact messages so scripts that print them see the same text.
pub fn parse(orig: &str) -> Result<i64, String> {
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.as_bytes().first() {
        if *c == b'-' || *c == b'+' {
            neg = *c == b'-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid(orig));
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid(orig));
        }
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(|| invalid(orig))?;
        s = rest;
        let pre = before != s.len();

        let mut f: u64 = 0;
        let mut scale = 1.0f64;
        let mut post = false;
        if s.as_bytes().first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (ff, sc, rest) = leading_fraction(s);
            f = ff;
            scale = sc;
            s = rest;
            post = before != s.len();
        }
        if !pre && !post {
            return Err(invalid(orig));
        }

        // The unit runs up to the next number; it is ASCII-delimited so the slice is on a char boundary.
        let unit_len = s
            .as_bytes()
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit = match unit_scale(unit_text) {
            Some(u) => u,
            None => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit_text),
                    quote(orig)
                ))
            }
        };

        if v > LIMIT / unit {
            return Err(invalid(orig));
        }
        v *= unit;
        if f > 0 {
            // Go goes through float64 here; copying that keeps fractional hours bit-identical.
            // f < scale, so the product is below one unit (at most 3.6e12) and the cast is exact-range.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid(orig));
            }
        }
        // Go's uint64 sum can wrap (2^63 + 2^63 == 0) and then slips past its own check;
        // that is a Go bug, not grammar, so a checked add rejects it instead.
        d = match d.checked_add(v) {
            Some(sum) if sum <= LIMIT => sum,
            _ => return Err(invalid(orig)),
        };
    }
    if neg {
        // d == 2^63 wraps to i64::MIN, which is exactly -2^63.
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid(orig));
    }
    Ok(d as i64)
}

/// Writes the fraction `v / 10^prec` as ".ddd" with trailing zeros dropped (nothing if zero)
/// and returns `v / 10^prec`.
fn frac(out: &mut Vec<u8>, mut v: u64, prec: usize) -> u64 {
    let mut digits = Vec::with_capacity(prec + 1);
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            digits.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        digits.push(b'.');
    }
    // Built least-significant first, like Go's right-to-left buffer.
    out.extend(digits.iter().rev());
    v
}

/// Renders nanoseconds exactly as Go's `Duration.String()` does (`"1h2m0.5s"`, `"1.5µs"`, `"0s"`).
pub fn format(ns: i64) -> String {
    let neg = ns < 0;
    // unsigned_abs handles i64::MIN, whose magnitude does not fit in i64.
    let mut u = ns.unsigned_abs();
    let mut out: Vec<u8> = Vec::with_capacity(32);
    if neg {
        out.push(b'-');
    }
    if u < SECOND {
        // Below a second Go switches to the largest sub-second unit instead of "0.0015s".
        let (prec, unit): (usize, &str) = if u == 0 {
            return "0s".to_string();
        } else if u < MICROSECOND {
            (0, "ns")
        } else if u < MILLISECOND {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        let mut tail = Vec::new();
        u = frac(&mut tail, u, prec);
        out.extend_from_slice(u.to_string().as_bytes());
        out.extend_from_slice(&tail);
        out.extend_from_slice(unit.as_bytes());
    } else {
        let mut tail = Vec::new();
        u = frac(&mut tail, u, 9);
        let secs = u % 60;
        u /= 60;
        if u > 0 {
            let mins = u % 60;
            u /= 60;
            // Go stops at hours because days vary in length.
            if u > 0 {
                out.extend_from_slice(u.to_string().as_bytes());
                out.push(b'h');
            }
            out.extend_from_slice(mins.to_string().as_bytes());
            out.push(b'm');
        }
        out.extend_from_slice(secs.to_string().as_bytes());
        out.extend_from_slice(&tail);
        out.push(b's');
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_cases() {
        // Go's own time_test.go parseDurationTests, plus a few edge cases.
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * SECOND as i64),
            ("30s", 30 * SECOND as i64),
            ("1478s", 1478 * SECOND as i64),
            ("-5s", -5 * SECOND as i64),
            ("+5s", 5 * SECOND as i64),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * SECOND as i64),
            ("5.6s", 5 * SECOND as i64 + 600 * MILLISECOND as i64),
            ("5.s", 5 * SECOND as i64),
            (".5s", 500 * MILLISECOND as i64),
            ("1.0s", SECOND as i64),
            ("1.00s", SECOND as i64),
            ("1.004s", SECOND as i64 + 4 * MILLISECOND as i64),
            ("1.0040s", SECOND as i64 + 4 * MILLISECOND as i64),
            ("100.00100s", 100 * SECOND as i64 + MILLISECOND as i64),
            ("10ns", 10),
            ("11us", 11 * MICROSECOND as i64),
            ("12µs", 12 * MICROSECOND as i64),
            ("12μs", 12 * MICROSECOND as i64),
            ("13ms", 13 * MILLISECOND as i64),
            ("14s", 14 * SECOND as i64),
            ("15m", 15 * MINUTE as i64),
            ("16h", 16 * HOUR as i64),
            ("3h30m", 3 * HOUR as i64 + 30 * MINUTE as i64),
            (
                "10.5s4m",
                4 * MINUTE as i64 + 10 * SECOND as i64 + 500 * MILLISECOND as i64,
            ),
            (
                "-2m3.4s",
                -(2 * MINUTE as i64 + 3 * SECOND as i64 + 400 * MILLISECOND as i64),
            ),
            (
                "1h2m3s4ms5us6ns",
                HOUR as i64 + 2 * MINUTE as i64 + 3 * SECOND as i64 + 4_005_006,
            ),
            (
                "39h9m14.425s",
                39 * HOUR as i64 + 9 * MINUTE as i64 + 14_425 * MILLISECOND as i64,
            ),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * MINUTE as i64),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-9223372036854775808ns", -1 << 63),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * MINUTE as i64),
            (
                "0.830103483285477580700h",
                49 * MINUTE as i64 + 48 * SECOND as i64 + 372_539_827,
            ),
            ("1.5s", 1_500_000_000),
            (
                "2h45m30.5s",
                2 * HOUR as i64 + 45 * MINUTE as i64 + 30_500 * MILLISECOND as i64,
            ),
            ("0s", 0),
            ("0.000000001s", 1),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(*want), "parse({input:?})");
        }
    }

    #[test]
    fn parse_error_cases() {
        let cases: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("3", r#"time: missing unit in duration "3""#),
            ("1", r#"time: missing unit in duration "1""#),
            ("-", r#"time: invalid duration "-""#),
            ("s", r#"time: invalid duration "s""#),
            (".", r#"time: invalid duration ".""#),
            ("-.", r#"time: invalid duration "-.""#),
            (".s", r#"time: invalid duration ".s""#),
            ("+.s", r#"time: invalid duration "+.s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("2w", r#"time: unknown unit "w" in duration "2w""#),
            ("1s1", r#"time: missing unit in duration "1s1""#),
            ("x", r#"time: invalid duration "x""#),
            ("1.5", r#"time: missing unit in duration "1.5""#),
            (" 1s", r#"time: invalid duration " 1s""#),
            ("\"foo\"", r#"time: invalid duration "\"foo\"""#),
            (
                "1µd",
                r#"time: unknown unit "\xc2\xb5d" in duration "1\xc2\xb5d""#,
            ),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "9223372036854775.808us",
                r#"time: invalid duration "9223372036854775.808us""#,
            ),
            (
                "9223372036854ms775us808ns",
                r#"time: invalid duration "9223372036854ms775us808ns""#,
            ),
            (
                "-9223372036854775809ns",
                r#"time: invalid duration "-9223372036854775809ns""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "99999999999999999999999s",
                r#"time: invalid duration "99999999999999999999999s""#,
            ),
            (
                "-9223372036854775808ns9223372036854775808ns",
                r#"time: invalid duration "-9223372036854775808ns9223372036854775808ns""#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Err(want.to_string()), "parse({input:?})");
        }
    }

    #[test]
    fn format_cases() {
        // Go's durationTests plus the brief's examples.
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (2, "2ns"),
            (1100, "1.1µs"),
            (1000, "1µs"),
            (2200 * MICROSECOND as i64, "2.2ms"),
            (100 * MILLISECOND as i64, "100ms"),
            (3300 * MILLISECOND as i64, "3.3s"),
            (1_500_000_000, "1.5s"),
            (4 * MINUTE as i64 + 5 * SECOND as i64, "4m5s"),
            (4 * MINUTE as i64 + 5001 * MILLISECOND as i64, "4m5.001s"),
            (
                5 * HOUR as i64 + 6 * MINUTE as i64 + 7001 * MILLISECOND as i64,
                "5h6m7.001s",
            ),
            (8 * MINUTE as i64 + 1, "8m0.000000001s"),
            (90 * MINUTE as i64, "1h30m0s"),
            (-90 * SECOND as i64, "-1m30s"),
            (SECOND as i64 + 1, "1.000000001s"),
            (-1, "-1ns"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (HOUR as i64, "1h0m0s"),
            (999_999_999, "999.999999ms"),
        ];
        for (ns, want) in cases {
            assert_eq!(format(*ns), *want, "format({ns})");
        }
    }

    #[test]
    fn round_trip() {
        for ns in [
            0i64,
            1,
            999,
            1_000,
            1_500_000_000,
            5_400_000_000_000,
            i64::MAX,
            i64::MIN,
            -42,
            123_456_789_012,
        ] {
            assert_eq!(parse(&format(ns)), Ok(ns), "round trip {ns}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "-", "+", "..", "1..s", "1.2.3s", "µ", "1µ", "1\u{0}s", "0.s", "00", "-0s", "1e3s",
            "٣s", "1ہ",
        ] {
            let _ = parse(s);
        }
    }
}
