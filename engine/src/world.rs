//! `WorldCommand`: the typed requests the node hands to a driver (`Output::Execute`) for work that
//! needs the world (SQL, stores, registry history, `.env` files, the terminal). It must not run
//! them: weft-world and the drivers do. Each variant keeps its command id (`id()`), so the command
//! registry and the tag path see the same ids as before.

use crate::command::{ids, CommandId};
use crate::value::{kind, ErrorValue, Value};

const NS_PER_SECOND: i64 = 1_000_000_000;
/// `store:list` without `limit`, and the most one call returns.
pub const LIST_LIMIT_DEFAULT: usize = 100;
pub const LIST_LIMIT_MAX: usize = 1000;

/// One command for the world. Store commands carry the node's clock (`now_ns`, Unix ns from the
/// driver's clock, virtual under the simulator) so TTLs follow node time; SQL commands carry the
/// process that owns them (`owner`) and the transaction they run in (`tx`, `None` outside one).
#[derive(Clone, Debug, PartialEq)]
pub enum WorldCommand {
    /// → value | NotFound.
    StoreGet {
        store: String,
        now_ns: i64,
        key: String,
    },
    /// → true.
    StoreSet {
        store: String,
        now_ns: i64,
        key: String,
        value: Value,
        ttl_ns: Option<i64>,
    },
    /// → bool.
    StoreHas {
        store: String,
        now_ns: i64,
        key: String,
    },
    /// → bool (deleted).
    StoreDelete {
        store: String,
        now_ns: i64,
        key: String,
    },
    /// → `{key, value, version}` | NotFound.
    StoreEntry {
        store: String,
        now_ns: i64,
        key: String,
    },
    /// → entry.
    StorePut {
        store: String,
        now_ns: i64,
        key: String,
        value: Value,
        options: PutOptions,
    },
    /// → `{items, cursor, has_more}`.
    StoreList {
        store: String,
        now_ns: i64,
        options: ListOptions,
    },
    /// → info table.
    StoreInfo { store: String },
    /// → array of rows.
    SqlQuery {
        db: String,
        owner: i64,
        tx: Option<i64>,
        sql: String,
        params: Vec<Value>,
    },
    /// → `{last_insert_id, rows_affected}`.
    SqlExecute {
        db: String,
        owner: i64,
        tx: Option<i64>,
        sql: String,
        params: Vec<Value>,
    },
    /// → true when the statement compiles.
    SqlPrepare {
        db: String,
        owner: i64,
        tx: Option<i64>,
        sql: String,
    },
    /// → transaction id.
    SqlBegin {
        db: String,
        owner: i64,
        isolation: Isolation,
        read_only: bool,
    },
    /// → true.
    SqlTx {
        db: String,
        owner: i64,
        tx: i64,
        op: TxOp,
    },
    /// Rolls back every transaction the (closing) process `owner` left open → how many.
    SqlReleaseOwner { owner: i64 },
    /// Stores one registry version; `ops` is the changeset as `registry::ops_to_value` gives it.
    RegistryCommit { version: u64, ops: Value },
    /// Persists which version is current after `apply_version` moved back or forth.
    RegistryHead { version: u64 },
    /// Persists one `KEY=value` in a `.env` file.
    EnvFileSet {
        path: String,
        key: String,
        value: String,
        auto_create: bool,
        file_mode: u32,
        dir_mode: u32,
    },
    /// → one line of the terminal's input.
    TerminalReadLine,
    /// → up to `max_bytes` bytes of the terminal's input.
    TerminalRead { max_bytes: usize },
    /// A custom module's command (256+) carried out by the driver; `arg` is its argument.
    Custom { id: CommandId, arg: Value },
}

impl WorldCommand {
    /// The command id this request is registered and traced under.
    pub fn id(&self) -> CommandId {
        use WorldCommand::*;
        match self {
            StoreGet { .. } => ids::STORE_GET,
            StoreSet { .. } => ids::STORE_SET,
            StoreHas { .. } => ids::STORE_HAS,
            StoreDelete { .. } => ids::STORE_DELETE,
            StoreEntry { .. } => ids::STORE_ENTRY,
            StorePut { .. } => ids::STORE_PUT,
            StoreList { .. } => ids::STORE_LIST,
            StoreInfo { .. } => ids::STORE_INFO,
            SqlQuery { .. } => ids::SQL_QUERY,
            SqlExecute { .. } => ids::SQL_EXECUTE,
            SqlPrepare { .. } => ids::SQL_PREPARE,
            SqlBegin { .. } => ids::SQL_BEGIN,
            SqlTx { .. } => ids::SQL_TX,
            SqlReleaseOwner { .. } => ids::SQL_RELEASE_OWNER,
            RegistryCommit { .. } => ids::REGISTRY_COMMIT,
            RegistryHead { .. } => ids::REGISTRY_HEAD,
            EnvFileSet { .. } => ids::ENV_FILE_SET,
            TerminalReadLine => ids::TERMINAL_READ_LINE,
            TerminalRead { .. } => ids::TERMINAL_READ,
            Custom { id, .. } => *id,
        }
    }

    /// A query (`exec` false: rows come back) or a statement run for its effect (`exec` true).
    pub fn sql(
        exec: bool,
        db: String,
        owner: i64,
        tx: Option<i64>,
        sql: String,
        params: Vec<Value>,
    ) -> WorldCommand {
        if exec {
            WorldCommand::SqlExecute {
                db,
                owner,
                tx,
                sql,
                params,
            }
        } else {
            WorldCommand::SqlQuery {
                db,
                owner,
                tx,
                sql,
                params,
            }
        }
    }

    /// Terminal reads are answered by the driver's stdin, not by weft-world.
    pub fn is_terminal_read(&self) -> bool {
        matches!(
            self,
            WorldCommand::TerminalReadLine | WorldCommand::TerminalRead { .. }
        )
    }
}

/// A transaction's isolation level as Wippy names it. SQLite runs every transaction
/// serializably; `Serializable` also takes the write lock at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    Default,
    ReadUncommitted,
    ReadCommitted,
    WriteCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    pub fn parse(s: &str) -> Result<Isolation, ErrorValue> {
        Ok(match s {
            "default" => Isolation::Default,
            "read_uncommitted" => Isolation::ReadUncommitted,
            "read_committed" => Isolation::ReadCommitted,
            "write_committed" => Isolation::WriteCommitted,
            "repeatable_read" => Isolation::RepeatableRead,
            "serializable" => Isolation::Serializable,
            _ => return Err(invalid(format!("unknown isolation level '{s}'"))),
        })
    }
}

/// What `SqlTx` does to the open transaction; savepoint operations name their savepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOp {
    Commit,
    Rollback,
    Savepoint(String),
    RollbackTo(String),
    Release(String),
}

impl TxOp {
    /// `op` as the Lua side names it; savepoint operations need `name`.
    pub fn parse(op: &str, name: Option<String>) -> Result<TxOp, ErrorValue> {
        let named = |f: fn(String) -> TxOp| {
            name.clone()
                .map(f)
                .ok_or_else(|| invalid("savepoint name required"))
        };
        match op {
            "commit" => Ok(TxOp::Commit),
            "rollback" => Ok(TxOp::Rollback),
            "savepoint" => named(TxOp::Savepoint),
            "rollback_to" => named(TxOp::RollbackTo),
            "release" => named(TxOp::Release),
            other => Err(invalid(format!("unknown transaction operation '{other}'"))),
        }
    }

    /// Whether the operation ends the transaction.
    pub fn ends(&self) -> bool {
        matches!(self, TxOp::Commit | TxOp::Rollback)
    }
}

/// `store:put` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub ttl_ns: Option<i64>,
    pub only_if_absent: bool,
    pub if_version: Option<i64>,
}

/// `store:list` options; `after` is the cursor a previous page returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            prefix: String::new(),
            after: None,
            limit: LIST_LIMIT_DEFAULT,
        }
    }
}

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

/// A TTL in seconds (integer or float); 0 or absent means no expiry.
pub fn ttl_ns(v: &Value) -> Result<Option<i64>, ErrorValue> {
    match v {
        Value::Nil | Value::Int(0) => Ok(None),
        Value::Int(n) if *n > 0 => Ok(Some(n.saturating_mul(NS_PER_SECOND))),
        Value::Float(f) if *f == 0.0 => Ok(None),
        Value::Float(f) if *f > 0.0 && f.is_finite() => {
            Ok(Some((*f * NS_PER_SECOND as f64) as i64))
        }
        _ => Err(invalid("ttl must be a non-negative number of seconds")),
    }
}

impl PutOptions {
    /// From the options table a Lua caller passed (or nil).
    pub fn from_value(v: &Value) -> Result<PutOptions, ErrorValue> {
        let t = match v {
            Value::Nil => return Ok(PutOptions::default()),
            Value::Table(t) => t,
            _ => return Err(invalid("put options must be a table")),
        };
        let if_version = match t.get("if_version") {
            None | Some(Value::Nil) => None,
            Some(Value::Int(n)) => Some(*n),
            Some(_) => return Err(invalid("if_version must be an integer")),
        };
        Ok(PutOptions {
            ttl_ns: ttl_ns(t.get("ttl").unwrap_or(&Value::Nil))?,
            only_if_absent: matches!(t.get("only_if_absent"), Some(Value::Bool(true))),
            if_version,
        })
    }
}

impl ListOptions {
    /// From the options table a Lua caller passed (or nil); `limit` is capped at
    /// `LIST_LIMIT_MAX`.
    pub fn from_value(v: &Value) -> Result<ListOptions, ErrorValue> {
        let mut o = ListOptions::default();
        let t = match v {
            Value::Nil => return Ok(o),
            Value::Table(t) => t,
            _ => return Err(invalid("list options must be a table")),
        };
        if let Some(p) = t.get("prefix").and_then(|v| v.as_str()) {
            o.prefix = p.to_string();
        }
        o.after = t
            .get("after")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from);
        match t.get("limit") {
            None | Some(Value::Nil) => {}
            Some(Value::Int(n)) if *n > 0 => o.limit = (*n as usize).min(LIST_LIMIT_MAX),
            Some(_) => return Err(invalid("limit must be a positive integer")),
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandRegistry;
    use crate::value::Table;

    #[test]
    fn every_command_maps_to_a_registered_id() {
        let r = CommandRegistry::with_builtins().expect("built-ins register");
        let s = || String::from("x");
        let all = [
            WorldCommand::StoreInfo { store: s() },
            WorldCommand::SqlReleaseOwner { owner: 1 },
            WorldCommand::RegistryHead { version: 1 },
            WorldCommand::TerminalReadLine,
            WorldCommand::TerminalRead { max_bytes: 1 },
            WorldCommand::SqlTx {
                db: s(),
                owner: 1,
                tx: 1,
                op: TxOp::Commit,
            },
        ];
        for c in &all {
            assert!(r.lookup(c.id()).is_some(), "{c:?} has no registered id");
        }
        assert_eq!(
            r.lookup(WorldCommand::StoreInfo { store: s() }.id()),
            Some(("store", "info"))
        );
        assert!(all[3].is_terminal_read() && all[4].is_terminal_read());
        assert!(!all[0].is_terminal_read());
    }

    #[test]
    fn bad_options_are_errors_not_defaults() {
        assert_eq!(ttl_ns(&Value::Int(2)).unwrap(), Some(2 * NS_PER_SECOND));
        assert_eq!(ttl_ns(&Value::Nil).unwrap(), None);
        assert!(ttl_ns(&Value::Int(-1)).is_err());
        assert!(ttl_ns(&Value::from("5")).is_err());
        assert!(ttl_ns(&Value::Float(f64::INFINITY)).is_err());
        let t = |t: Table| Value::table(t);
        let e = PutOptions::from_value(&t(Table::default().with("if_version", "1".into())));
        assert_eq!(e.unwrap_err().kind, kind::INVALID);
        let o = PutOptions::from_value(&t(Table::default()
            .with("only_if_absent", Value::Bool(true))
            .with("ttl", Value::Int(1))))
        .unwrap();
        assert!(o.only_if_absent && o.ttl_ns == Some(NS_PER_SECOND));
        assert!(ListOptions::from_value(&Value::Int(1)).is_err());
        assert!(
            ListOptions::from_value(&t(Table::default().with("limit", Value::Int(0)))).is_err()
        );
        let l =
            ListOptions::from_value(&t(Table::default().with("limit", Value::Int(5000)))).unwrap();
        assert_eq!(l.limit, LIST_LIMIT_MAX);
        assert_eq!(
            ListOptions::from_value(&Value::Nil).unwrap(),
            ListOptions::default()
        );
    }

    #[test]
    fn transaction_ops_and_isolation_parse_or_fail_clearly() {
        assert_eq!(TxOp::parse("commit", None).unwrap(), TxOp::Commit);
        assert!(TxOp::parse("commit", None).unwrap().ends());
        assert_eq!(
            TxOp::parse("savepoint", Some("a".into())).unwrap(),
            TxOp::Savepoint("a".into())
        );
        assert_eq!(
            TxOp::parse("release", None).unwrap_err().message,
            "savepoint name required"
        );
        assert!(TxOp::parse("explode", None)
            .unwrap_err()
            .message
            .contains("explode"));
        assert_eq!(
            Isolation::parse("serializable").unwrap(),
            Isolation::Serializable
        );
        assert!(Isolation::parse("chaos").is_err());
    }
}
