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
        let mut r = Registry::default();
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
        // Replaying every stored changeset from nothing reaches each version's state.
        let mut s = State::new();
        for (i, v) in r.versions().iter().enumerate().skip(1) {
            s = apply_ops(&s, &v.ops).unwrap();
            prop_assert_eq!(&s, &*v.state, "version {} does not replay", i + 1);
        }
        prop_assert_eq!(r.versions().len(), history.len());
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
