use super::*;
use proptest::prelude::*;

fn e(id: &str, kind: &str, meta: Table) -> Entry {
    let (namespace, name) = crate::entries::parse_id(id);
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: kind.into(),
        meta,
        ..Default::default()
    }
}

fn data_entry(id: &str, n: i64) -> Entry {
    let mut x = e(id, "registry.entry", Table::default());
    x.data = Table::default().with("n", Value::Int(n));
    x
}

fn lua(id: &str, src: &str) -> Entry {
    let mut x = e(id, "process.lua", Table::default());
    x.data = Table::default().with("source", Value::from(src));
    x
}

fn service(id: &str, process: &str) -> Entry {
    let mut x = e(id, "process.service", Table::default());
    x.data = Table::default()
        .with("process", Value::from(process))
        .with("host", Value::from("app:host"));
    x
}

fn state(es: Vec<Entry>) -> State {
    es.into_iter().map(|e| (e.id.clone(), Rc::new(e))).collect()
}

#[test]
fn changesets_are_checked_before_they_change_anything() {
    let base = state(vec![
        data_entry("app:a", 1),
        e("app:host", "process.host", Table::default()),
        lua("app:p", "return { main = function() end }"),
        service("app:svc", "app:p"),
    ]);
    let mut r = Registry::default();
    r.init(&base);
    let k = |ops: Vec<Op>| r.prepare(&ops).unwrap_err().kind;
    assert_eq!(k(vec![]), kind::INVALID);
    assert_eq!(
        k(vec![Op::Create(data_entry("app:a", 2))]),
        kind::ALREADY_EXISTS
    );
    assert_eq!(
        k(vec![Op::Update(data_entry("app:zz", 2))]),
        kind::NOT_FOUND
    );
    assert_eq!(k(vec![Op::Delete("app:zz".into())]), kind::NOT_FOUND);
    assert_eq!(k(vec![Op::Create(data_entry("nocolon", 2))]), kind::INVALID);
    assert_eq!(k(vec![Op::Create(data_entry(":x", 2))]), kind::INVALID);
    let mut nokind = data_entry("app:k", 1);
    nokind.kind = Default::default();
    assert_eq!(k(vec![Op::Create(nokind)]), kind::INVALID);
    // Breaking changes: a service losing its process, a service naming nothing, bad Lua.
    let e1 = r.prepare(&[Op::Delete("app:p".into())]).unwrap_err();
    assert!(e1.message.contains("app:svc"), "{}", e1.message);
    let e2 = r
        .prepare(&[Op::Create(service("app:s2", "app:none"))])
        .unwrap_err();
    assert!(e2.message.contains("app:none"), "{}", e2.message);
    let e3 = r
        .prepare(&[Op::Create(lua("app:bad", "local function ("))])
        .unwrap_err();
    assert_eq!(e3.kind, kind::INVALID);
    assert!(e3.message.contains("app:bad"), "{}", e3.message);
    // A later op can repair what an earlier one broke within the same changeset.
    r.prepare(&[Op::Delete("app:svc".into()), Op::Delete("app:p".into())])
        .unwrap();
    assert_eq!(r.current_id(), 1);
    assert_eq!(*r.current().unwrap().state, base, "nothing changed");
}

#[test]
fn find_follows_wippy_filter_rules() {
    let tags = Table {
        array: vec![Value::from("a"), Value::from("b")],
        map: vec![],
    };
    let meta = Table::default()
        .with("type", Value::from("tool"))
        .with("tags", Value::table(tags))
        .with("n", Value::Int(3))
        .with("title", Value::from("Calculator tool"));
    let es = [
        e("app.tools:calc", "registry.entry", meta),
        e("app:other", "function.lua", Table::default()),
    ];
    let find = |pairs: Vec<(&str, Value)>| -> Vec<String> {
        let pairs: Vec<(String, Value)> =
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let (c, _) = parse_filter(&pairs).unwrap();
        es.iter()
            .filter(|x| matches(x, &c))
            .map(|x| x.id.clone())
            .collect()
    };
    let s = |x: &str| Value::from(x);
    assert_eq!(
        find(vec![(".kind", s("registry.entry"))]),
        ["app.tools:calc"]
    );
    assert_eq!(find(vec![(".kind", s("*.lua"))]), ["app:other"]);
    assert_eq!(find(vec![(".ns", s("app.*"))]), ["app.tools:calc"]);
    assert_eq!(find(vec![(".name", s("c*c"))]), ["app.tools:calc"]);
    assert_eq!(find(vec![(".id", s("app:other"))]), ["app:other"]);
    assert_eq!(find(vec![("meta.type", s("tool"))]), ["app.tools:calc"]);
    assert_eq!(
        find(vec![("meta.n", Value::Float(3.0))]),
        ["app.tools:calc"]
    );
    let want = |xs: &[&str]| {
        Value::table(Table {
            array: xs.iter().map(|x| Value::from(*x)).collect(),
            map: vec![],
        })
    };
    assert_eq!(find(vec![("meta.tags", want(&["b"]))]), ["app.tools:calc"]);
    assert!(find(vec![("meta.tags", want(&["a", "c"]))]).is_empty());
    assert_eq!(
        find(vec![("~meta.title", s("^Calc.*tool$"))]),
        ["app.tools:calc"]
    );
    assert_eq!(find(vec![("*meta.title", s("lator"))]), ["app.tools:calc"]);
    assert_eq!(find(vec![("*meta.tags", s("b"))]), ["app.tools:calc"]);
    assert_eq!(find(vec![("^meta.title", s("Calc"))]), ["app.tools:calc"]);
    assert_eq!(find(vec![("$meta.title", s("tool"))]), ["app.tools:calc"]);
    assert!(find(vec![("$meta.title", s("Calc"))]).is_empty());
    // The quirk: keys without `.` or `meta.` are ignored, so they match everything.
    assert_eq!(find(vec![("kind", s("nothing"))]).len(), 2);
    assert_eq!(find(vec![("type", s("nothing"))]).len(), 2);
    let (_, ignored) = parse_filter(&[("kind".into(), s("x"))]).unwrap();
    assert_eq!(ignored, ["kind"]);
    // AND of criteria.
    assert!(find(vec![(".kind", s("registry.entry")), ("meta.type", s("x"))]).is_empty());
    assert!(parse_filter(&[("~meta.title".into(), s("("))]).is_err());
}

#[test]
fn codec_round_trips_ops_exactly() {
    let mut x = data_entry("app:a", 7);
    x.meta = Table::default().with("f", Value::Float(1.5));
    x.line = Some(4);
    x.source_file = Some("src/a.lua".into());
    let ops = vec![
        Op::Create(x.clone()),
        Op::Update(x),
        Op::Delete("app:b".into()),
    ];
    let mut b = Vec::new();
    encode(&ops_to_value(&ops), &mut b);
    let back = ops_from_value(&decode(&b).unwrap()).unwrap();
    assert_eq!(back, ops);
    assert!(decode(&b[..b.len() - 1]).is_err());
}

fn numbers(s: &State) -> BTreeMap<String, i64> {
    s.iter()
        .map(|(k, e)| {
            let n = match e.data.get("n") {
                Some(Value::Int(n)) => *n,
                _ => i64::MIN,
            };
            (k.clone(), n)
        })
        .collect()
}

/// A history of `n` versions: version 1 creates `app:e0`; each later one creates `app:e<v>`
/// and updates `app:e0`, so the state grows with the history (the worst case for copies).
fn growing_history(n: u64) -> Vec<(u64, Vec<Op>)> {
    (1..=n)
        .map(|v| {
            let mut ops = vec![Op::Create(data_entry(&format!("app:e{v}"), v as i64))];
            if v == 1 {
                ops = vec![Op::Create(data_entry("app:e0", 0))];
            } else {
                ops.push(Op::Update(data_entry("app:e0", v as i64)));
            }
            (v, ops)
        })
        .collect()
}

#[test]
fn a_long_history_holds_few_states_and_rebuilds_any_version() {
    let n = 10_000;
    let r = replay(growing_history(n), None, SNAPSHOT_EVERY);
    assert_eq!(r.last_id(), n);
    assert_eq!(r.current().unwrap().state.len(), n as usize);
    // Version 1, the slots and the newest: not one state per version.
    let held = r.materialised();
    assert!(
        held <= (n / SNAPSHOT_EVERY) as usize + 2,
        "{held} states held for {n} versions"
    );
    for id in [1, 2, 255, 256, 257, 5_000, 9_999, 10_000] {
        let s = r.version(id).unwrap().state;
        assert_eq!(s.len(), (id as usize).max(1), "version {id}");
        let e0 = s.get("app:e0").unwrap();
        let want = if id == 1 { 0 } else { id as i64 };
        assert_eq!(e0.data.get("n"), Some(&Value::Int(want)), "version {id}");
    }
    // Rebuilding does not add states beyond the slots.
    assert!(r.materialised() <= (n / SNAPSHOT_EVERY) as usize + 2);
    // From a snapshot: the versions before it are not replayed, so a damaged one is not seen.
    let mut stored = growing_history(600);
    let snap = replay(stored.clone(), None, SNAPSHOT_EVERY)
        .version(512)
        .unwrap();
    stored[10].1 = vec![Op::Delete("app:none".into())];
    let r = replay(
        stored.clone(),
        Some((512, (*snap.state).clone())),
        SNAPSHOT_EVERY,
    );
    assert_eq!(r.last_id(), 600);
    assert_eq!(r.current().unwrap().state.len(), 600);
    // Without it the damaged version cuts the history, as before.
    assert_eq!(replay(stored.clone(), None, SNAPSHOT_EVERY).last_id(), 10);
    // A snapshot beyond a gap is ignored; the history is cut at the gap.
    stored.remove(20);
    let r = replay(stored, Some((512, (*snap.state).clone())), SNAPSHOT_EVERY);
    assert_eq!(r.last_id(), 10);
}

#[test]
fn moving_the_head_into_old_history_and_back() {
    let mut r = replay(growing_history(1_000), None, 100);
    assert!(r.set_head(350));
    assert_eq!(r.current_id(), 350);
    assert_eq!(r.current().unwrap().state.len(), 350);
    assert_eq!(r.version(1_000).unwrap().state.len(), 1_000);
    // A new version from an older head stores the change from the newest version.
    let next = r.prepare(&[Op::Create(data_entry("app:new", 1))]).unwrap();
    let id = r.push(vec![Op::Create(data_entry("app:new", 1))], next);
    assert_eq!(id, 1_001);
    assert_eq!(r.current().unwrap().state.len(), 351);
    let mut s = (*r.version(1_000).unwrap().state).clone();
    apply_ops_mut(&mut s, &r.versions()[1_000].ops).unwrap();
    assert_eq!(s, *r.current().unwrap().state);
    assert!(r.set_head(1_001) && r.current_id() == 1_001);
    assert!(!r.set_head(1_002) && !r.has_version(0));
}

#[test]
fn in_place_apply_matches_copying_apply() {
    let base = state(vec![data_entry("app:a", 1), data_entry("app:b", 2)]);
    let cases: Vec<Vec<Op>> = vec![
        vec![],
        vec![
            Op::Delete("app:a".into()),
            Op::Create(data_entry("app:a", 5)),
        ],
        vec![
            Op::Delete("app:a".into()),
            Op::Update(data_entry("app:a", 5)),
        ],
        vec![
            Op::Create(data_entry("app:c", 1)),
            Op::Create(data_entry("app:c", 2)),
        ],
        vec![
            Op::Update(data_entry("app:b", 9)),
            Op::Delete("app:zz".into()),
        ],
        vec![Op::Create(data_entry("bad", 1))],
    ];
    for ops in cases {
        let copied = apply_ops(&base, &ops);
        let mut s = base.clone();
        let in_place = apply_ops_mut(&mut s, &ops);
        match (copied, in_place) {
            (Ok(a), Ok(())) => assert_eq!(a, s, "{ops:?}"),
            (Err(a), Err(b)) => {
                assert_eq!((a.kind, a.message), (b.kind, b.message), "{ops:?}");
                assert_eq!(s, base, "an error leaves the state unchanged: {ops:?}");
            }
            other => panic!("{ops:?}: {other:?}"),
        }
    }
}

#[derive(Clone, Debug)]
enum MOp {
    Create(u8, i64),
    Update(u8, i64),
    Delete(u8),
    /// A changeset with a deliberately failing last op.
    Broken(u8, i64),
    Rollback(u8),
}

fn mop() -> impl Strategy<Value = MOp> {
    prop_oneof![
        3 => (0u8..8, any::<i64>()).prop_map(|(a, b)| MOp::Create(a, b)),
        2 => (0u8..8, any::<i64>()).prop_map(|(a, b)| MOp::Update(a, b)),
        2 => (0u8..8).prop_map(MOp::Delete),
        1 => (0u8..8, any::<i64>()).prop_map(|(a, b)| MOp::Broken(a, b)),
        1 => any::<u8>().prop_map(MOp::Rollback),
    ]
}

proptest! {
    /// Random changesets against a plain map: valid ones commit exactly the model's change,
    /// invalid ones change nothing, every version replays to its state, rollback restores it.
    #[test]
    fn registry_matches_map_model(ops in proptest::collection::vec(prop::collection::vec(mop(), 1..4), 1..40)) {
        // Snapshot slots every 3 versions, so most versions are rebuilt from deltas.
        let mut r = Registry::with_snapshot_every(3);
        r.init(&State::new());
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        let mut history: Vec<BTreeMap<String, i64>> = vec![model.clone()];
        for cs in ops {
            if let [MOp::Rollback(v)] = cs.as_slice() {
                let target = (*v as u64 % r.current_id()) + 1;
                let want = history[target as usize - 1].clone();
                let d = delta(&r.current().unwrap().state, &r.version(target).unwrap().state);
                if !d.is_empty() {
                    let next = r.prepare(&d).unwrap();
                    r.push(d, next);
                    model = want;
                    history.push(model.clone());
                }
            } else {
                let mut m = model.clone();
                let mut ok = true;
                let mut changes = Vec::new();
                for o in &cs {
                    let id = |k: u8| format!("app:e{k}");
                    match o {
                        MOp::Create(k, n) => { ok &= m.insert(id(*k), *n).is_none(); changes.push(Op::Create(data_entry(&id(*k), *n))); }
                        MOp::Update(k, n) => { ok &= m.insert(id(*k), *n).is_some(); changes.push(Op::Update(data_entry(&id(*k), *n))); }
                        MOp::Delete(k) => { ok &= m.remove(&id(*k)).is_some(); changes.push(Op::Delete(id(*k))); }
                        MOp::Broken(k, n) => { ok = false; changes.push(Op::Create(data_entry(&format!("bad{k}"), *n))); }
                        MOp::Rollback(_) => { ok = false; changes.push(Op::Delete("app:nope-never".into())); }
                    }
                }
                let before = r.current_id();
                match r.prepare(&changes) {
                    Ok(next) => {
                        prop_assert!(ok, "accepted a changeset the model rejects: {:?}", cs);
                        r.push(changes, next);
                        model = m;
                        history.push(model.clone());
                    }
                    Err(_) => {
                        prop_assert!(!ok, "rejected a valid changeset: {:?}", cs);
                        prop_assert_eq!(r.current_id(), before);
                    }
                }
            }
            let live: BTreeMap<String, i64> = r.current().unwrap().state.iter()
                .map(|(k, e)| (k.clone(), match e.data.get("n") { Some(Value::Int(n)) => *n, _ => i64::MIN }))
                .collect();
            prop_assert_eq!(&live, &model);
        }
        // Replaying every stored changeset from nothing reaches each version's state, and
        // each version, asked for in a scrambled order, rebuilds to the model's state.
        let mut s = State::new();
        for (i, v) in r.versions().iter().enumerate().skip(1) {
            s = apply_ops(&s, &v.ops).unwrap();
            prop_assert_eq!(&s, &*r.version(v.id).unwrap().state, "version {} does not replay", i + 1);
        }
        prop_assert_eq!(r.versions().len(), history.len());
        let n = history.len() as u64;
        for k in 0..n {
            let id = (k * 7919) % n + 1;
            prop_assert_eq!(&numbers(&r.version(id).unwrap().state), &history[id as usize - 1], "version {}", id);
        }
        // A history replayed from storage, with or without a snapshot, is the same history.
        // (Version 1 is empty here, which restore treats as no history: give it one entry
        // outside the model.)
        let base = data_entry("zz:base", 0);
        let mut stored: Vec<(u64, Vec<Op>)> = r.versions().iter().map(|v| (v.id, (*v.ops).clone())).collect();
        stored[0].1 = vec![Op::Create(base.clone())];
        let mid = (n / 2).max(1);
        let snap = (mid > 1).then(|| {
            let mut s = (*r.version(mid).unwrap().state).clone();
            s.insert(base.id.clone(), Rc::new(base.clone()));
            (mid, s)
        });
        for back in [replay(stored.clone(), None, 3), replay(stored, snap, 4)] {
            prop_assert_eq!(back.last_id(), n);
            for id in 1..=n {
                let mut got = numbers(&back.version(id).unwrap().state);
                prop_assert_eq!(got.remove("zz:base"), Some(0));
                prop_assert_eq!(&got, &history[id as usize - 1]);
            }
        }
    }
}

#[test]
fn module_dependencies_are_refused_without_a_hub() {
    let mut dep = e("app:dep", "ns.dependency", Table::default());
    dep.data = Table::default()
        .with("component", Value::from("wippy/terminal"))
        .with("version", Value::from(">=9999.0.0"));
    let next = state(vec![dep]);
    let err = check_state(&next, &["app:dep"]).unwrap_err();
    assert_eq!(err.kind, kind::CONFLICT);
    assert!(
        err.message.contains("dependency resolution failed"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("wippy/terminal >=9999.0.0"),
        "{}",
        err.message
    );
}

// ---- commit cost: only the changed entries and their dependents are checked -----------------

fn lua_kind(id: &str, kind: &str, import: Option<&str>) -> Entry {
    let mut x = e(id, kind, Table::default());
    x.data = Table::default().with("source", Value::from("return {}"));
    if let Some(t) = import {
        x.data = x.data.with(
            "imports",
            Value::table(Table::default().with("m", Value::from(t))),
        );
    }
    x
}

fn service_on(id: &str, process: &str, host: &str) -> Entry {
    let mut x = e(id, "process.service", Table::default());
    x.data = Table::default()
        .with("process", Value::from(process))
        .with("host", Value::from(host));
    x
}

/// `f`'s result and how many entries `check_state` looked at while it ran.
fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    VISITED.with(|v| v.set(0));
    let out = f();
    (out, VISITED.with(|v| v.get()))
}

#[test]
fn a_commit_on_a_large_state_checks_only_what_it_changed_and_its_dependents() {
    let mut es: Vec<Entry> = (0..10_000)
        .map(|i| data_entry(&format!("app:d{i:05}"), i))
        .collect();
    es.push(lua_kind("app:lib", "library.lua", None));
    es.push(lua_kind("app:p0", "process.lua", Some("app:lib")));
    es.push(lua_kind("app:p1", "process.lua", Some("lib")));
    es.push(e("app:host", "process.host", Table::default()));
    es.push(service_on("app:svc", "app:p0", "app:host"));
    let mut r = Registry::default();
    r.init(&state(es));

    // 1,000 commits in a row, each one entry: one entry looked at per commit.
    let (_, seen) = counting(|| {
        for i in 0..1_000 {
            let ops = vec![Op::Update(data_entry(&format!("app:d{:05}", i * 7), -i))];
            let next = r.prepare(&ops).expect("valid update");
            r.push(ops, next);
        }
    });
    assert_eq!(seen, 1_000, "a one-entry commit looked at other entries");
    assert_eq!(r.current().unwrap().state.len(), 10_005);

    // Deleting the library: its two importers (and nothing else) are checked, and refuse.
    let (res, seen) = counting(|| r.prepare(&[Op::Delete("app:lib".into())]));
    let msg = res.unwrap_err().message;
    assert!(
        msg.contains("entry 'app:p0': imports: m: 'app:lib' is not a library.lua entry"),
        "{msg}"
    );
    assert!(seen <= 2, "looked at {seen} entries");
    // Turning the host into another kind: the service that runs on it refuses.
    let (res, seen) = counting(|| {
        r.prepare(&[Op::Update(e(
            "app:host",
            "registry.entry",
            Table::default(),
        ))])
    });
    let msg = res.unwrap_err().message;
    assert!(
        msg.contains("host: 'app:host' is not a process.host entry"),
        "{msg}"
    );
    assert_eq!(seen, 2);
    // Replacing the library by another library keeps both importers valid (3 looked at).
    let (res, seen) =
        counting(|| r.prepare(&[Op::Update(lua_kind("app:lib", "library.lua", None))]));
    assert!(res.is_ok(), "{res:?}");
    assert_eq!(seen, 3);
}

#[derive(Clone, Debug)]
enum ROp {
    /// (slot, kind, referenced slot, second referenced slot)
    Put(u8, u8, u8, u8),
    Delete(u8),
}

fn rop() -> impl Strategy<Value = ROp> {
    prop_oneof![
        4 => (0u8..10, 0u8..6, 0u8..10, 0u8..10).prop_map(|(a, b, c, d)| ROp::Put(a, b, c, d)),
        2 => (0u8..10).prop_map(ROp::Delete),
    ]
}

/// Entry `slot` of kind `kind` referencing slots `to` / `to2`.
fn slot_entry(slot: u8, kind: u8, to: u8, to2: u8) -> Entry {
    let id = format!("app:x{slot}");
    let target = format!("app:x{to}");
    match kind {
        0 => lua_kind(&id, "library.lua", None),
        1 => lua_kind(&id, "library.lua", Some(&target)),
        2 => lua_kind(&id, "process.lua", Some(&format!("x{to}"))),
        3 => e(&id, "process.host", Table::default()),
        4 => service_on(&id, &target, &format!("app:x{to2}")),
        _ => data_entry(&id, i64::from(to)),
    }
}

proptest! {
    /// The incremental check (changed entries and their referrers) accepts exactly the
    /// changesets a check of every entry's references accepts, and the reverse index stays
    /// equal to one rebuilt from the entries.
    #[test]
    fn incremental_check_agrees_with_a_whole_state_check(
        sets in proptest::collection::vec(proptest::collection::vec(rop(), 1..4), 1..60)
    ) {
        let mut r = Registry::with_snapshot_every(4);
        r.init(&State::new());
        for set in sets {
            let cur = r.current().unwrap().state;
            let ops: Vec<Op> = set
                .iter()
                .map(|o| match *o {
                    ROp::Put(s, k, t, t2) => {
                        let x = slot_entry(s, k, t, t2);
                        // Create when absent so far in the changeset's view, else update.
                        let exists = cur.contains_key(&x.id);
                        if exists { Op::Update(x) } else { Op::Create(x) }
                    }
                    ROp::Delete(s) => Op::Delete(format!("app:x{s}")),
                })
                .collect();
            let naive = apply_ops(&cur, &ops).and_then(|next| {
                let all: Vec<&str> = next.keys().map(String::as_str).collect();
                check_state(&next, &all)?;
                Ok(next)
            });
            match (r.prepare(&ops), naive) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(&a, &b);
                    prop_assert!(a.index_is_consistent());
                    r.push(ops, a);
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?}: incremental {:?}, whole state {:?}", ops, a.map(|_| ()), b.map(|_| ())),
            }
        }
        let last = r.current().unwrap().state;
        prop_assert!(last.index_is_consistent());
        // Every version rebuilt from deltas has a consistent index too.
        for v in 1..=r.last_id() {
            prop_assert!(r.version(v).unwrap().state.index_is_consistent());
        }
    }
}
