use super::*;
use crate::dispatch::types::Status;

fn entry(id: &str, kind: EntryKind, meta: &[(&str, &str)]) -> Entry {
    let (ns, name) = id.split_once(':').unwrap();
    let mut t = Table::default();
    for (k, v) in meta {
        t = t.with(k, Value::from(*v));
    }
    Entry {
        id: id.into(),
        namespace: ns.into(),
        name: name.into(),
        kind,
        meta: t,
        ..Default::default()
    }
}

#[test]
fn function_entries_become_methods_with_meta_overrides() {
    let es = vec![
        entry("orders:create_order", EntryKind::FunctionLua, &[]),
        entry(
            "orders:get",
            EntryKind::FunctionLua,
            &[("service", "OrderService"), ("method", "Get")],
        ),
        entry("orders:half", EntryKind::FunctionLua, &[("method", "Half")]),
        entry("orders:worker", EntryKind::ProcessLua, &[]),
    ];
    let f = Functions::from_entries(&es);
    let keys: Vec<_> = f.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            MethodKey::new("orders", "OrderService", "Get"),
            MethodKey::new("orders", "orders", "Half"),
            MethodKey::new("orders", "orders", "create_order"),
        ]
    );
    assert_eq!(
        f.entry(&MethodKey::new("orders", "OrderService", "Get")),
        Some("orders:get")
    );
    assert_eq!(
        f.entry(&MethodKey::new("orders", "orders", "worker")),
        None,
        "processes are not methods"
    );
}

#[test]
fn a_key_claimed_twice_goes_to_the_first_entry_id_whatever_the_order() {
    let a = entry("ns:a", EntryKind::FunctionLua, &[("method", "M")]);
    let b = entry("ns:b", EntryKind::FunctionLua, &[("method", "M")]);
    let k = MethodKey::new("ns", "ns", "M");
    assert_eq!(Functions::from_entries([&a, &b]).entry(&k), Some("ns:a"));
    assert_eq!(Functions::from_entries([&b, &a]).entry(&k), Some("ns:a"));
}

#[test]
fn funcs_call_becomes_a_dispatch_and_its_answer_a_value_or_error() {
    let plain = CallOptions::default();
    let r = call_request("orders:create_order", &[Value::from("x")], &plain).unwrap();
    assert_eq!(r.namespace, "orders");
    assert_eq!(r.service.as_ref().unwrap().service_name, "orders");
    assert_eq!(r.method_name, "create_order");
    assert!(r.routing_hints.is_empty());
    assert_eq!(handler_input(r.input.as_ref()), Ok(Value::from("x")));
    let opts = CallOptions {
        idempotent: true,
        timeout_ns: Some(750_000_000),
    };
    let r = call_request("orders:create_order", &[Value::Nil], &opts).unwrap();
    assert_eq!(
        r.routing_hints.get("idempotent").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        r.routing_hints.get(hint::ATTEMPT).map(String::as_str),
        Some("750000000"),
        "the caller's timeout bounds the attempt"
    );
    for bad in ["nocolon", ":x", "x:"] {
        assert_eq!(
            call_request(bad, &[], &plain).unwrap_err().kind,
            kind::INVALID
        );
    }
    assert_eq!(
        call_request("a:b", &[Value::Int(1), Value::Str(vec![0xff])], &plain)
            .unwrap_err()
            .kind,
        kind::INVALID
    );

    let ok = DispatchResponse {
        status: Some(Status::ok()),
        output: Some(encode_result(&Value::Int(7)).unwrap()),
        handled_by_collector_id: "B".into(),
    };
    assert_eq!(call_result(&ok), Ok(Value::Int(7)));
    for (c, k) in [
        (400, kind::INVALID),
        (404, kind::NOT_FOUND),
        (500, kind::INTERNAL),
        (13, kind::UNKNOWN),
    ] {
        let resp = DispatchResponse {
            status: Some(Status::new(c, "why").with("last_peer", "C")),
            ..Default::default()
        };
        let e = call_result(&resp).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (k, "why"));
        let Some(Value::Table(d)) = e.details else {
            panic!()
        };
        assert_eq!(d.get("code"), Some(&Value::Int(c as i64)));
        assert_eq!(d.get("last_peer"), Some(&Value::from("C")));
    }
    assert_eq!(
        call_result(&DispatchResponse::default()).unwrap_err().kind,
        kind::INTERNAL
    );
    // A deadline or a cancellation says so in the details: kinds Timeout and Canceled.
    for (detail, k) in [
        (hint::TIMEOUT, kind::TIMEOUT),
        (hint::CANCELED, kind::CANCELED),
    ] {
        let resp = DispatchResponse {
            status: Some(Status::new(500, "x").with(detail, "true")),
            ..Default::default()
        };
        assert_eq!(call_result(&resp).unwrap_err().kind, k);
    }
}

#[test]
fn several_arguments_travel_as_a_counted_list_and_one_as_itself() {
    let plain = CallOptions::default();
    let ctx = |r: &DispatchRequest| r.routing_hints.clone();
    // One argument, even a list: the input is that value, no count (a foreign callee's contract).
    let list = Value::table(Table {
        array: vec![Value::Int(1), Value::Int(2)],
        map: vec![],
    });
    let r = call_request("a:b", std::slice::from_ref(&list), &plain).unwrap();
    assert!(!r.routing_hints.contains_key(hint::ARGS));
    assert_eq!(handler_args(r.input.as_ref(), &ctx(&r)), Ok(vec![list]));
    // None: a nil input, as before.
    let r = call_request("a:b", &[], &plain).unwrap();
    assert_eq!(
        handler_args(r.input.as_ref(), &ctx(&r)),
        Ok(vec![Value::Nil])
    );
    // Several, with nils inside and at the end: spread back exactly.
    let args = vec![Value::from("x"), Value::Nil, Value::Int(3), Value::Nil];
    let r = call_request("a:b", &args, &plain).unwrap();
    assert_eq!(
        r.routing_hints.get(hint::ARGS).map(String::as_str),
        Some("4")
    );
    assert_eq!(handler_args(r.input.as_ref(), &ctx(&r)), Ok(args.clone()));
    // Hostile counts and shapes are handler errors, never a panic or a huge allocation.
    let one = encode_result(&Value::Int(1)).unwrap();
    for n in ["x", "-1", "99999999999", "257"] {
        let c = BTreeMap::from([(hint::ARGS.to_string(), n.to_string())]);
        assert!(handler_args(Some(&one), &c).is_err(), "{n}");
    }
    let c = BTreeMap::from([(hint::ARGS.to_string(), "2".to_string())]);
    assert!(handler_args(Some(&one), &c).is_err(), "not a list");
    let three = call_request("a:b", &args[..3], &plain).unwrap();
    assert!(
        handler_args(three.input.as_ref(), &c).is_err(),
        "more items than the count"
    );
}

#[test]
fn handler_outcomes_map_to_handled_results() {
    assert_eq!(
        handler_result(Ok(Value::Bool(true))),
        Ok(Some(encode_result(&Value::Bool(true)).unwrap()))
    );
    let e = handler_result(Err(ErrorValue::new(kind::INTERNAL, "boom"))).unwrap_err();
    assert_eq!(e, "boom");
    let e = handler_result(Ok(Value::Str(vec![0xff]))).unwrap_err();
    assert!(e.starts_with("result cannot be encoded: "), "{e}");
    let bad = Any {
        type_url: crate::dispatch::payload::VALUE_URL.into(),
        value: vec![0x0a],
    };
    assert!(handler_input(Some(&bad))
        .unwrap_err()
        .starts_with("invalid input: "));
}
