//! Supervised `process.service` entries: lifecycle config, state, restart with backoff.
//! Pure decisions: the node spawns, arms timers and sends CANCEL on what this returns.

use crate::duration;
use crate::value::{Table, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    pub initial_delay_ns: u64,
    pub max_delay_ns: u64,
    pub backoff_factor: f64,
    pub jitter: f64,
    /// 0 = unlimited.
    pub max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lifecycle {
    pub auto_start: bool,
    pub stop_timeout_ns: u64,
    pub stable_threshold_ns: u64,
    pub requires: Vec<String>,
    pub restart: Restart,
}

const SECOND_NS: u64 = 1_000_000_000;

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            auto_start: false,
            stop_timeout_ns: 10 * SECOND_NS,
            stable_threshold_ns: 5 * SECOND_NS,
            requires: Vec::new(),
            restart: Restart {
                initial_delay_ns: SECOND_NS,
                max_delay_ns: 90 * SECOND_NS,
                backoff_factor: 2.0,
                jitter: 0.1,
                max_attempts: 0,
            },
        }
    }
}

fn dur(v: Option<&Value>, field: &str, default: u64) -> Result<u64, String> {
    match v {
        None | Some(Value::Nil) => Ok(default),
        Some(Value::Str(_)) => {
            let s = v.and_then(|v| v.as_str()).unwrap_or("");
            duration::parse(s)
                .map(|n| n.max(0) as u64)
                .map_err(|e| format!("lifecycle.{field}: {e}"))
        }
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
        Some(other) => Err(format!(
            "lifecycle.{field}: expected a duration such as \"5s\", got {}",
            other.to_display()
        )),
    }
}

fn num(v: Option<&Value>, default: f64) -> f64 {
    match v {
        Some(Value::Int(n)) => *n as f64,
        Some(Value::Float(f)) => *f,
        _ => default,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Table(t)) => t
            .array
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(v) => v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
        None => Vec::new(),
    }
}

impl Lifecycle {
    /// Reads an entry's `lifecycle:` block; missing fields take Wippy's defaults.
    pub fn from_data(data: &Table) -> Result<Lifecycle, String> {
        let mut lc = Lifecycle::default();
        let Some(Value::Table(t)) = data.get("lifecycle") else {
            return Ok(lc);
        };
        lc.auto_start = matches!(t.get("auto_start"), Some(Value::Bool(true)));
        lc.stop_timeout_ns = dur(t.get("stop_timeout"), "stop_timeout", lc.stop_timeout_ns)?;
        lc.stable_threshold_ns = dur(
            t.get("stable_threshold"),
            "stable_threshold",
            lc.stable_threshold_ns,
        )?;
        lc.requires = strings(t.get("requires"));
        lc.requires.extend(strings(t.get("depends_on")));
        if let Some(Value::Table(r)) = t.get("restart") {
            let d = &mut lc.restart;
            d.initial_delay_ns = dur(
                r.get("initial_delay"),
                "restart.initial_delay",
                d.initial_delay_ns,
            )?;
            d.max_delay_ns = dur(r.get("max_delay"), "restart.max_delay", d.max_delay_ns)?;
            d.backoff_factor = num(r.get("backoff_factor"), d.backoff_factor).max(1.0);
            d.jitter = num(r.get("jitter"), d.jitter).clamp(0.0, 1.0);
            d.max_attempts = num(r.get("max_attempts"), 0.0).max(0.0) as u32;
        }
        Ok(lc)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Unknown,
    Starting,
    Running,
    Stopping,
    Stopped,
    Exited,
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Unknown => "unknown",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
        }
    }
}

#[derive(Debug)]
pub struct Service {
    pub id: String,
    pub process: String,
    pub host: String,
    pub input: Vec<Value>,
    pub lifecycle: Lifecycle,
    pub state: ServiceState,
    pub proc: Option<u64>,
    /// Failures since the service last ran for `stable_threshold`.
    pub attempts: u32,
    pub started_at_ns: u64,
    pub timer: Option<u64>,
    /// The PID number reserved for this service's supervisor.
    pub supervisor: Option<u64>,
    /// Dependency level it started in (0 = needs nothing); shutdown stops the highest first.
    pub level: usize,
}

/// What to do after a service's process ended.
#[derive(Debug, PartialEq)]
pub enum AfterExit {
    Done,
    RestartIn(u64),
}

impl Service {
    /// A `process.service` entry's settings; the error names the field to fix.
    pub fn from_entry(entry: &crate::entries::Entry) -> Result<Service, String> {
        let data = &entry.data;
        let process = data
            .get("process")
            .and_then(|v| v.as_str())
            .ok_or("process.service needs `process:` (a process.lua entry id)")?
            .to_string();
        let host = data
            .get("host")
            .and_then(|v| v.as_str())
            .ok_or("process.service needs `host:` (a process.host entry id)")?
            .to_string();
        if host == crate::node::CONTROL_HOST {
            return Err("host node:control is reserved for the runtime".into());
        }
        let input = match data.get("input") {
            None | Some(Value::Nil) => vec![],
            Some(Value::Table(t)) if t.map.is_empty() => t.array.clone(),
            Some(v) => vec![v.clone()],
        };
        let lifecycle = Lifecycle::from_data(data)?;
        Ok(Service {
            id: entry.id.clone(),
            process,
            host,
            input,
            lifecycle,
            state: ServiceState::Unknown,
            proc: None,
            attempts: 0,
            started_at_ns: 0,
            timer: None,
            supervisor: None,
            level: 0,
        })
    }

    /// Decides restart or not. `unit` is a draw in [0, 1) from the node's generator for jitter.
    pub fn on_exit(
        &mut self,
        now_ns: u64,
        failed: bool,
        retryable: Option<bool>,
        stopping: bool,
        unit: f64,
    ) -> AfterExit {
        self.proc = None;
        if stopping {
            self.state = ServiceState::Stopped;
            return AfterExit::Done;
        }
        if !failed {
            self.state = ServiceState::Exited;
            return AfterExit::Done;
        }
        self.state = ServiceState::Failed;
        if retryable == Some(false) {
            return AfterExit::Done;
        }
        if now_ns.saturating_sub(self.started_at_ns) >= self.lifecycle.stable_threshold_ns {
            self.attempts = 0;
        }
        self.attempts += 1;
        let r = &self.lifecycle.restart;
        if r.max_attempts > 0 && self.attempts > r.max_attempts {
            return AfterExit::Done;
        }
        AfterExit::RestartIn(backoff(r, self.attempts, unit))
    }
}

/// initial × factor^(attempt−1), capped at max, then ± jitter.
pub fn backoff(r: &Restart, attempt: u32, unit: f64) -> u64 {
    let base = r.initial_delay_ns as f64
        * r.backoff_factor
            .powi(attempt.saturating_sub(1).min(64) as i32);
    let capped = base.min(r.max_delay_ns as f64);
    let spread = capped * r.jitter * (2.0 * unit - 1.0);
    (capped + spread).max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart() -> Restart {
        Lifecycle::default().restart
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut r = restart();
        r.jitter = 0.0;
        assert_eq!(backoff(&r, 1, 0.5), SECOND_NS);
        assert_eq!(backoff(&r, 2, 0.5), 2 * SECOND_NS);
        assert_eq!(backoff(&r, 4, 0.5), 8 * SECOND_NS);
        assert_eq!(backoff(&r, 30, 0.5), 90 * SECOND_NS);
        r.jitter = 0.1;
        assert_eq!(backoff(&r, 1, 0.0), 900_000_000);
        assert_eq!(backoff(&r, 1, 1.0), 1_100_000_000);
    }

    fn service(max_attempts: u32) -> Service {
        let mut lifecycle = Lifecycle::default();
        lifecycle.restart.max_attempts = max_attempts;
        Service {
            id: "app:s".into(),
            process: "app:p".into(),
            host: "app:h".into(),
            input: vec![],
            lifecycle,
            state: ServiceState::Running,
            proc: Some(1),
            attempts: 0,
            started_at_ns: 0,
            timer: None,
            supervisor: None,
            level: 0,
        }
    }

    #[test]
    fn normal_exit_and_non_retryable_do_not_restart() {
        let mut s = service(0);
        assert_eq!(s.on_exit(0, false, None, false, 0.5), AfterExit::Done);
        assert_eq!(s.state, ServiceState::Exited);
        let mut s = service(0);
        assert_eq!(s.on_exit(0, true, Some(false), false, 0.5), AfterExit::Done);
        assert_eq!(s.state, ServiceState::Failed);
    }

    #[test]
    fn max_attempts_bounds_restarts() {
        let mut s = service(2);
        assert!(matches!(
            s.on_exit(0, true, None, false, 0.5),
            AfterExit::RestartIn(_)
        ));
        assert!(matches!(
            s.on_exit(0, true, None, false, 0.5),
            AfterExit::RestartIn(_)
        ));
        assert_eq!(s.on_exit(0, true, None, false, 0.5), AfterExit::Done);
    }

    #[test]
    fn lifecycle_reads_yaml_fields() {
        let restart = Table::default()
            .with("initial_delay", Value::from("250ms"))
            .with("max_attempts", Value::Int(3));
        let lc = Table::default()
            .with("auto_start", Value::Bool(true))
            .with("stop_timeout", Value::from("2s"))
            .with("restart", Value::table(restart));
        let data = Table::default().with("lifecycle", Value::table(lc));
        let l = Lifecycle::from_data(&data).unwrap();
        assert!(l.auto_start);
        assert_eq!(l.stop_timeout_ns, 2 * SECOND_NS);
        assert_eq!(l.restart.initial_delay_ns, 250_000_000);
        assert_eq!(l.restart.max_attempts, 3);
        let bad = Table::default().with(
            "lifecycle",
            Value::table(Table::default().with("stop_timeout", Value::from("soon"))),
        );
        assert!(Lifecycle::from_data(&bad)
            .unwrap_err()
            .contains("stop_timeout"));
    }
}
