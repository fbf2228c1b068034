//! Handler tests for SQL and stores over in-memory SQLite (Storage::Memory).

use super::*;
use weft_engine::value::Table;
use weft_engine::world::{Isolation, ListOptions, PutOptions, TxOp};

fn entry(id: &str, kind_: &str, fields: &[(&str, Value)]) -> Entry {
    let (namespace, name) = weft_engine::entries::parse_id(id);
    let mut data = Table::default();
    for (k, v) in fields {
        data = data.with(k, v.clone());
    }
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: kind_.into(),
        data,
        file: "app.yaml".into(),
        line: Some(3),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn world() -> World {
    let mut w = World::new(Storage::Memory);
    w.configure(&[
        entry("app:db", "db.sql.sqlite", &[("file", s("./data/app.db"))]),
        entry("app:mem", "store.memory", &[("max_size", Value::Int(2))]),
        entry(
            "app:kv",
            "store.sql",
            &[("database", s("db")), ("table_name", s("kv"))],
        ),
    ])
    .expect("configure");
    w
}

/// A statement (`exec`) or query on app:db; `tx` 0 runs outside a transaction.
fn sql(
    w: &mut World,
    exec: bool,
    tx: i64,
    owner: i64,
    q: &str,
    p: Vec<Value>,
) -> Result<Value, ErrorValue> {
    let tx = (tx != 0).then_some(tx);
    w.handle(WorldCommand::sql(
        exec,
        "app:db".into(),
        owner,
        tx,
        q.into(),
        p,
    ))
}

fn exec(w: &mut World, tx: i64, owner: i64, q: &str, p: Vec<Value>) -> Result<Value, ErrorValue> {
    sql(w, true, tx, owner, q, p)
}

fn query(w: &mut World, tx: i64, owner: i64, q: &str, p: Vec<Value>) -> Result<Value, ErrorValue> {
    sql(w, false, tx, owner, q, p)
}

fn rows(v: Value) -> Vec<Table> {
    match v {
        Value::Table(t) => t
            .array
            .into_iter()
            .map(|r| match r {
                Value::Table(r) => *r,
                other => panic!("row {other:?}"),
            })
            .collect(),
        other => panic!("rows {other:?}"),
    }
}

#[test]
fn execute_and_query_map_sqlite_types() {
    let mut w = world();
    exec(
        &mut w,
        0,
        1,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT, data BLOB)",
        vec![],
    )
    .unwrap();
    let blob = Value::table(Table::default().with(sql::BLOB_KEY, Value::Str(vec![0, 255])));
    let r = exec(
        &mut w,
        0,
        1,
        "INSERT INTO t (name, score, note, data) VALUES (?, ?, ?, ?)",
        vec![s("ann"), Value::Float(1.5), Value::Nil, blob],
    )
    .unwrap();
    let Value::Table(r) = r else { panic!() };
    assert_eq!(r.get("last_insert_id"), Some(&Value::Int(1)));
    assert_eq!(r.get("rows_affected"), Some(&Value::Int(1)));
    let got = rows(
        query(
            &mut w,
            0,
            1,
            "SELECT * FROM t WHERE name = ?",
            vec![s("ann")],
        )
        .unwrap(),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("id"), Some(&Value::Int(1)));
    assert_eq!(got[0].get("score"), Some(&Value::Float(1.5)));
    assert_eq!(got[0].get("note"), None, "NULL leaves the key out");
    assert_eq!(got[0].get("data"), Some(&Value::Str(vec![0, 255])));
}

#[test]
fn bad_sql_and_bad_params_are_error_values() {
    let mut w = world();
    let e = query(&mut w, 0, 1, "SELEC nonsense", vec![]).unwrap_err();
    assert_eq!(e.kind, kind::INVALID, "{e:?}");
    let not_a_blob = Value::table(Table::default().with("x", Value::Int(1)));
    let e = query(&mut w, 0, 1, "SELECT ?", vec![not_a_blob]).unwrap_err();
    assert_eq!(e.kind, kind::INVALID);
    assert!(e.message.contains("cannot be a SQL parameter"), "{e:?}");
    let e = query(&mut w, 0, 1, "SELECT ?, ?", vec![Value::Int(1)]).unwrap_err();
    assert_eq!(e.kind, kind::INVALID, "{e:?}");
    let e = w
        .handle(WorldCommand::SqlPrepare {
            db: "app:nope".into(),
            owner: 1,
            tx: None,
            sql: "SELECT 1".into(),
        })
        .unwrap_err();
    assert_eq!(e.kind, kind::NOT_FOUND);
    let e = w.handle(WorldCommand::StoreInfo {
        store: "app:db".into(),
    });
    assert_eq!(
        e.unwrap_err().kind,
        kind::NOT_FOUND,
        "a database is not a store"
    );
}

#[test]
fn transactions_commit_rollback_and_owner_release() {
    let mut w = world();
    exec(&mut w, 0, 1, "CREATE TABLE t (v INTEGER)", vec![]).unwrap();
    let begin = |w: &mut World, owner: i64| {
        w.handle(WorldCommand::SqlBegin {
            db: "app:db".into(),
            owner,
            isolation: Isolation::Default,
            read_only: false,
        })
    };
    let tx_op = |w: &mut World, owner: i64, tx: i64, op: &str, name: &str| {
        w.handle(WorldCommand::SqlTx {
            db: "app:db".into(),
            owner,
            tx,
            op: TxOp::parse(op, Some(name.into())).unwrap(),
        })
    };
    let count = |w: &mut World| {
        let r = rows(query(w, 0, 9, "SELECT count(*) AS n FROM t", vec![]).unwrap());
        r[0].get("n").cloned()
    };

    let Value::Int(tx) = begin(&mut w, 1).unwrap() else {
        panic!()
    };
    exec(&mut w, tx, 1, "INSERT INTO t VALUES (1)", vec![]).unwrap();
    // Others are refused (retryable) while the transaction holds the connection.
    let e = query(&mut w, 0, 2, "SELECT 1", vec![]).unwrap_err();
    assert_eq!(e.kind, kind::UNAVAILABLE);
    assert_eq!(e.retryable, Some(true));
    assert_eq!(begin(&mut w, 2).unwrap_err().kind, kind::UNAVAILABLE);
    tx_op(&mut w, 1, tx, "savepoint", "sp1").unwrap();
    exec(&mut w, tx, 1, "INSERT INTO t VALUES (2)", vec![]).unwrap();
    tx_op(&mut w, 1, tx, "rollback_to", "sp1").unwrap();
    assert_eq!(
        tx_op(&mut w, 1, tx, "savepoint", "bad name;")
            .unwrap_err()
            .kind,
        kind::INVALID
    );
    tx_op(&mut w, 1, tx, "commit", "").unwrap();
    assert_eq!(count(&mut w), Some(Value::Int(1)));
    // A finished transaction cannot be used again.
    assert_eq!(
        exec(&mut w, tx, 1, "INSERT INTO t VALUES (3)", vec![])
            .unwrap_err()
            .kind,
        kind::INVALID
    );

    let Value::Int(tx) = begin(&mut w, 1).unwrap() else {
        panic!()
    };
    exec(&mut w, tx, 1, "INSERT INTO t VALUES (4)", vec![]).unwrap();
    tx_op(&mut w, 1, tx, "rollback", "").unwrap();
    assert_eq!(count(&mut w), Some(Value::Int(1)));

    // A process dies with its transaction open: its close releases it.
    let Value::Int(tx) = begin(&mut w, 5).unwrap() else {
        panic!()
    };
    exec(&mut w, tx, 5, "INSERT INTO t VALUES (5)", vec![]).unwrap();
    assert_eq!(
        w.handle(WorldCommand::SqlReleaseOwner { owner: 5 })
            .unwrap(),
        Value::Int(1)
    );
    assert_eq!(count(&mut w), Some(Value::Int(1)));
    assert!(begin(&mut w, 6).is_ok(), "the database is free again");
    assert_eq!(
        tx_op(&mut w, 7, 99, "commit", "").unwrap_err().kind,
        kind::INVALID,
        "another process's or a stale transaction id is refused"
    );
}

/// A store command in the shape the Lua side builds it: `op` is the method name, `rest` its
/// arguments after the key (value and ttl / options), or the options for `list`.
fn st(
    w: &mut World,
    op: &str,
    id: &str,
    now_ns: i64,
    rest: Vec<Value>,
) -> Result<Value, ErrorValue> {
    let store = id.to_string();
    let mut rest = rest.into_iter();
    let mut next = || rest.next().unwrap_or(Value::Nil);
    let cmd = match op {
        "list" => WorldCommand::StoreList {
            store,
            now_ns,
            options: ListOptions::from_value(&next())?,
        },
        _ => {
            let key = next().as_str().expect("key").to_string();
            match op {
                "get" => WorldCommand::StoreGet { store, now_ns, key },
                "has" => WorldCommand::StoreHas { store, now_ns, key },
                "delete" => WorldCommand::StoreDelete { store, now_ns, key },
                "set" => WorldCommand::StoreSet {
                    store,
                    now_ns,
                    key,
                    value: next(),
                    ttl_ns: weft_engine::world::ttl_ns(&next())?,
                },
                "put" => WorldCommand::StorePut {
                    store,
                    now_ns,
                    key,
                    value: next(),
                    options: PutOptions::from_value(&next())?,
                },
                other => panic!("no store op {other}"),
            }
        }
    };
    w.handle(cmd)
}

const SEC: i64 = 1_000_000_000;

#[test]
fn memory_store_ttl_versions_conditional_put_and_size() {
    let mut w = world();
    let m = "app:mem";
    assert_eq!(
        st(&mut w, "get", m, 0, vec![s("a")]).unwrap_err().kind,
        kind::NOT_FOUND
    );
    st(
        &mut w,
        "set",
        m,
        0,
        vec![s("a"), Value::Int(1), Value::Int(10)],
    )
    .unwrap();
    assert_eq!(
        st(&mut w, "get", m, 9 * SEC, vec![s("a")]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        st(&mut w, "get", m, 10 * SEC, vec![s("a")])
            .unwrap_err()
            .kind,
        kind::NOT_FOUND
    );
    assert_eq!(
        st(&mut w, "has", m, 10 * SEC, vec![s("a")]).unwrap(),
        Value::Bool(false)
    );

    let put = |w: &mut World, v: i64, opts: Table| {
        st(
            w,
            "put",
            m,
            0,
            vec![s("k"), Value::Int(v), Value::table(opts)],
        )
    };
    let Value::Table(e) = put(
        &mut w,
        1,
        Table::default().with("only_if_absent", Value::Bool(true)),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(e.get("version"), Some(&Value::Int(1)));
    let e = put(
        &mut w,
        2,
        Table::default().with("only_if_absent", Value::Bool(true)),
    )
    .unwrap_err();
    assert_eq!(e.kind, kind::ALREADY_EXISTS);
    let e = put(
        &mut w,
        2,
        Table::default().with("if_version", Value::Int(7)),
    )
    .unwrap_err();
    assert_eq!(e.kind, kind::CONFLICT);
    let Value::Table(e) = put(
        &mut w,
        2,
        Table::default().with("if_version", Value::Int(1)),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(e.get("version"), Some(&Value::Int(2)));

    // max_size 2: "a" expired, so "b" fits; a third live key does not.
    st(&mut w, "set", m, 20 * SEC, vec![s("b"), s("x")]).unwrap();
    assert!(st(&mut w, "set", m, 20 * SEC, vec![s("c"), s("x")]).is_err());
    assert_eq!(
        st(&mut w, "delete", m, 20 * SEC, vec![s("b")]).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        st(&mut w, "delete", m, 20 * SEC, vec![s("b")]).unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        st(&mut w, "set", m, 0, vec![s("n"), Value::Nil])
            .unwrap_err()
            .kind,
        kind::INVALID
    );
}

fn list_keys(v: Value) -> (Vec<String>, bool) {
    let Value::Table(t) = v else { panic!() };
    let Some(Value::Table(items)) = t.get("items") else {
        panic!()
    };
    let keys = items
        .array
        .iter()
        .map(|e| match e {
            Value::Table(e) => e.get("key").and_then(|k| k.as_str()).unwrap().to_string(),
            _ => panic!(),
        })
        .collect();
    (keys, t.get("has_more") == Some(&Value::Bool(true)))
}

#[test]
fn sql_store_round_trips_values_and_lists_by_prefix() {
    let mut w = world();
    exec(
        &mut w,
        0,
        1,
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER)",
        vec![],
    )
    .unwrap();
    let k = "app:kv";
    let val = Value::table(Table::default().with("n", Value::Int(3)).with("s", s("hi")));
    for key in ["u:1", "u:2", "u:3", "v:1"] {
        st(&mut w, "set", k, 0, vec![s(key), val.clone()]).unwrap();
    }
    assert_eq!(st(&mut w, "get", k, 0, vec![s("u:2")]).unwrap(), val);
    let (keys, more) = list_keys(
        st(
            &mut w,
            "list",
            k,
            0,
            vec![Value::table(
                Table::default()
                    .with("prefix", s("u:"))
                    .with("limit", Value::Int(2)),
            )],
        )
        .unwrap(),
    );
    assert_eq!(keys, ["u:1", "u:2"]);
    assert!(more);
    let (keys, more) = list_keys(
        st(
            &mut w,
            "list",
            k,
            0,
            vec![Value::table(
                Table::default()
                    .with("prefix", s("u:"))
                    .with("after", s("u:2")),
            )],
        )
        .unwrap(),
    );
    assert_eq!(keys, ["u:3"]);
    assert!(!more);
    st(
        &mut w,
        "set",
        k,
        0,
        vec![s("t"), Value::Int(1), Value::Int(2)],
    )
    .unwrap();
    assert!(st(&mut w, "has", k, SEC, vec![s("t")]).unwrap() == Value::Bool(true));
    assert!(st(&mut w, "has", k, 2 * SEC, vec![s("t")]).unwrap() == Value::Bool(false));
    let e = st(
        &mut w,
        "put",
        k,
        0,
        vec![
            s("u:1"),
            Value::Int(1),
            Value::table(Table::default().with("only_if_absent", Value::Bool(true))),
        ],
    )
    .unwrap_err();
    assert_eq!(e.kind, kind::ALREADY_EXISTS);
    let e = st(
        &mut w,
        "put",
        k,
        0,
        vec![
            s("u:1"),
            Value::Int(1),
            Value::table(Table::default().with("if_version", Value::Int(1))),
        ],
    )
    .unwrap_err();
    assert_eq!(e.kind, kind::INVALID);
    let Value::Table(info) = w
        .handle(WorldCommand::StoreInfo { store: k.into() })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(info.get("backend"), Some(&s("sql")));
}

#[test]
fn configure_errors_name_file_line_and_entry() {
    let mut w = World::new(Storage::Memory);
    let e = w
        .configure(&[entry(
            "app:kv",
            "store.sql",
            &[("database", s("nope")), ("table_name", s("kv"))],
        )])
        .unwrap_err();
    assert!(e.starts_with("app.yaml:3: entry 'app:kv':"), "{e}");
    let e = w
        .configure(&[entry("app:db", "db.sql.sqlite", &[])])
        .unwrap_err();
    assert!(e.contains("file"), "{e}");
}

#[test]
fn disk_databases_persist_across_worlds() {
    let dir = std::env::temp_dir().join(format!("weft-world-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let entries = [entry(
        "app:db",
        "db.sql.sqlite",
        &[("file", s("./data/app.db"))],
    )];
    {
        let mut w = World::new(Storage::Disk { root: dir.clone() });
        w.configure(&entries).unwrap();
        exec(
            &mut w,
            0,
            1,
            "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept')",
            vec![],
        )
        .unwrap();
    }
    assert!(dir.join("data/app.db").exists());
    let mut w = World::new(Storage::Disk { root: dir.clone() });
    w.configure(&entries).unwrap();
    let r = rows(query(&mut w, 0, 1, "SELECT v FROM t", vec![]).unwrap());
    assert_eq!(r[0].get("v"), Some(&s("kept")));
    let mode = rows(query(&mut w, 0, 1, "PRAGMA journal_mode", vec![]).unwrap());
    assert_eq!(mode[0].get("journal_mode"), Some(&s("wal")));
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
