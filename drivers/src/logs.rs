//! Which runtime log records `weft run` prints: `--log-level` / `WEFT_LOG` directives, a default
//! level plus levels per target. Only decides; printing the records is run.rs's.
//!
//! A directive list reads like RUST_LOG: `warn`, `debug`, `warn,app:worker=debug,app:cli=off`.
//! A record's targets are its `entry`, `service` and `logger` fields and the entry of its
//! `location`; a directive names a target or a prefix of one ending at `:`, `.` or `/` (so `app`
//! covers every entry of namespace app). The longest matching directive wins.

use weft_engine::node::Level;

/// The environment variable read when no log flag is given.
pub const ENV: &str = "WEFT_LOG";

#[derive(Debug, Clone, PartialEq)]
pub struct LogFilter {
    /// `None`: off.
    default: Option<Level>,
    rules: Vec<(String, Option<Level>)>,
}

fn parse_level(s: &str) -> Result<Option<Level>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" | "debug" => Ok(Some(Level::Debug)),
        "info" => Ok(Some(Level::Info)),
        "warn" | "warning" => Ok(Some(Level::Warn)),
        "error" => Ok(Some(Level::Error)),
        "off" | "none" => Ok(None),
        other => Err(format!(
            "unknown level '{other}' (use debug, info, warn, error or off)"
        )),
    }
}

fn covers(rule: &str, target: &str) -> bool {
    target == rule
        || target
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with([':', '.', '/']))
}

impl LogFilter {
    pub fn level(l: Level) -> LogFilter {
        LogFilter {
            default: Some(l),
            rules: Vec::new(),
        }
    }

    /// Parses `LEVEL`, `TARGET=LEVEL` and both, comma-separated; a later bare level replaces
    /// the default, which is `fallback` until one is given.
    pub fn parse(spec: &str, fallback: Level) -> Result<LogFilter, String> {
        let mut f = LogFilter::level(fallback);
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((target, level)) if !target.trim().is_empty() => {
                    f.rules
                        .push((target.trim().to_string(), parse_level(level)?));
                }
                Some(_) => return Err(format!("'{part}': a target goes before '='")),
                None => f.default = parse_level(part)?,
            }
        }
        Ok(f)
    }

    /// Whether a record at `level` with these fields is printed.
    pub fn allows(&self, level: Level, fields: &[(String, String)]) -> bool {
        let targets = fields.iter().filter_map(|(k, v)| match k.as_str() {
            "entry" | "service" | "logger" => Some(v.as_str()),
            // `ns:name:line`: the entry is what comes before the line.
            "location" => Some(v.rsplit_once(':').map_or(v.as_str(), |(e, _)| e)),
            _ => None,
        });
        let mut best: Option<(usize, Option<Level>)> = None;
        for t in targets {
            for (rule, l) in &self.rules {
                if covers(rule, t) && best.is_none_or(|(len, _)| rule.len() > len) {
                    best = Some((rule.len(), *l));
                }
            }
        }
        let min = best.map_or(self.default, |(_, l)| l);
        min.is_some_and(|m| level >= m)
    }

    /// The lowest level any record may pass at, so the node need not make the others.
    pub fn min(&self) -> Option<Level> {
        std::iter::once(self.default)
            .chain(self.rules.iter().map(|(_, l)| *l))
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn directives_pick_the_longest_matching_target() {
        let f =
            LogFilter::parse("warn,app=info,app:worker=debug,app:cli=off", Level::Error).unwrap();
        let worker = rec(&[("entry", "app:worker")]);
        let cli = rec(&[("location", "app:cli:12")]);
        let other = rec(&[("service", "app:relay-service")]);
        let system = rec(&[]);
        assert!(f.allows(Level::Debug, &worker));
        assert!(!f.allows(Level::Error, &cli));
        assert!(f.allows(Level::Info, &other) && !f.allows(Level::Debug, &other));
        assert!(f.allows(Level::Warn, &system) && !f.allows(Level::Info, &system));
        // `app:work` is no boundary of `app:worker`.
        let g = LogFilter::parse("error,app:work=debug", Level::Warn).unwrap();
        assert!(!g.allows(Level::Debug, &worker));
        assert_eq!(f.min(), Some(Level::Debug));
    }

    #[test]
    fn bad_directives_are_reported_and_off_turns_everything_off() {
        assert!(LogFilter::parse("loud", Level::Warn)
            .unwrap_err()
            .contains("loud"));
        assert!(LogFilter::parse("=debug", Level::Warn).is_err());
        let off = LogFilter::parse("off", Level::Warn).unwrap();
        assert_eq!(off.min(), None);
        assert!(!off.allows(Level::Error, &[]));
        assert_eq!(
            LogFilter::parse("", Level::Warn).unwrap(),
            LogFilter::level(Level::Warn)
        );
    }
}
