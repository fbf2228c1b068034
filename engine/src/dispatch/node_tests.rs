//! Dispatch wired into cluster nodes: two or three `Node`s on the in-memory network of the
//! cluster tests, each serving its own `function.lua` entries; requests come in as the
//! driver's `Input::Dispatch` or as `funcs.call` from Lua.

use super::*;
use crate::cluster::tests::{Net, MS};
use crate::dispatch::payload::{decode_input, encode_result};
use crate::dispatch::types::{DispatchRequest, ServiceRef};
use crate::entries::Entry;
use crate::value::Table;
use crate::Input;

const MODS: &[&str] = &["io", "time", "funcs", "registry"];

fn entry(id: &str, kind: &str, src: &str, method: &str) -> Entry {
    let (namespace, name) = crate::entries::parse_id(id);
    let mods = Table {
        array: MODS.iter().map(|m| Value::from(*m)).collect(),
        map: vec![],
    };
    let data = Table::default()
        .with("source", Value::from(src))
        .with("method", Value::from(method))
        .with("modules", Value::table(mods));
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: kind.into(),
        data,
        file: "<test>".into(),
        ..Default::default()
    }
}

fn func(id: &str, src: &str) -> Entry {
    entry(id, "function.lua", src, "handler")
}

fn main(src: &str) -> Entry {
    entry("t:main", "process.lua", src, "main")
}

const DOUBLE: &str = "return { handler = function(x) return {v = x.v * 2} end }";
const RAISE: &str = r#"return { handler = function() error("boom from the handler") end }"#;
/// How many arguments it got, and their sum (nils count as 0).
const SUM: &str = r##"return { handler = function(...)
    local s = 0
    for i = 1, select("#", ...) do s = s + (select(i, ...) or 0) end
    return { n = select("#", ...), s = s }
end }"##;

/// Sleeps `d`, then logs "<tag> done" (so a test sees whether the run was stopped) and
/// answers which node ran it.
fn nap(id: &str, node: &str, d: &str) -> Entry {
    func(
        id,
        &format!(
            r#"local io, time = require("io"), require("time")
            return {{ handler = function(tag)
                time.sleep("{d}")
                print(tostring(tag) .. " done")
                return "{node}"
            end }}"#
        ),
    )
}

/// A function that answers with `name` (which node ran it).
fn who(id: &str, name: &str) -> Entry {
    func(
        id,
        &format!("return {{ handler = function() return \"{name}\" end }}"),
    )
}

fn request(ns: &str, method: &str, arg: &Value, target: &str) -> Request {
    Request::Dispatch(DispatchRequest {
        namespace: ns.into(),
        service: ServiceRef::named(ns),
        method_name: method.into(),
        input: Some(encode_result(arg).expect("encodable")),
        target_collector_id: target.into(),
        routing_hints: BTreeMap::new(),
    })
}

fn ask(net: &mut Net, i: usize, req: u64, r: Request) {
    net.inbox[i].push_back(Input::Dispatch {
        req,
        deadline: None,
        request: r,
    });
}

/// Runs until node `i` answered `req`; the answer and when it came.
fn answer(net: &mut Net, i: usize, req: u64, within: u64) -> (DispatchResponse, u64) {
    let got = |n: &Net| n.m[i].responses.iter().any(|(r, _)| *r == req);
    assert!(
        net.run_until(within, got),
        "request {req} unanswered; logs:\n{}",
        net.m[i].logs.join("\n")
    );
    let (_, resp) = net.m[i]
        .responses
        .iter()
        .find(|(r, _)| *r == req)
        .expect("checked");
    match resp {
        Response::Dispatch(d) => (d.clone(), net.now),
        other => panic!("not a dispatch response: {other:?}"),
    }
}

fn code_of(d: &DispatchResponse) -> i32 {
    d.status.as_ref().map_or(0, |s| s.code)
}

fn output(d: &DispatchResponse) -> String {
    decode_input(d.output.as_ref())
        .expect("decodable")
        .to_display()
}

/// Every node holds every other up and knows the namespaces it serves.
fn routed(net: &mut Net, ns: &[(usize, &str)]) {
    let ok = net.run_until(20_000 * MS, |n| {
        ns.iter().all(|(i, ns)| {
            n.m[*i]
                .node
                .with_collector(|c| c.peer_namespace(ns))
                .unwrap_or(false)
        })
    });
    assert!(ok, "namespaces not routed: {ns:?}");
}

/// The `v` field of a table output.
fn field_v(d: &DispatchResponse) -> Option<i64> {
    match decode_input(d.output.as_ref()).ok()? {
        Value::Table(t) => match t.get("v")? {
            Value::Int(n) => Some(*n),
            Value::Float(f) => Some(*f as i64),
            _ => None,
        },
        _ => None,
    }
}

fn v(n: i64) -> Value {
    Value::table(Table::default().with("v", Value::Int(n)))
}

#[test]
fn a_dispatch_for_a_namespace_only_b_serves_is_handled_by_b() {
    let mut net = Net::of(vec![
        ("A", vec![func("a:double", DOUBLE)]),
        ("B", vec![func("b:double", DOUBLE), func("b:raise", RAISE)]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b"), (1, "a")]);
    ask(&mut net, 0, 1, request("b", "double", &v(21), ""));
    let (r, _) = answer(&mut net, 0, 1, 5_000 * MS);
    assert_eq!(code_of(&r), 200, "{r:?}");
    assert_eq!(r.handled_by_collector_id, "B");
    assert_eq!(field_v(&r), Some(42));

    // Local first: A's own namespace is handled by A.
    ask(&mut net, 0, 2, request("a", "double", &v(1), ""));
    let (r, _) = answer(&mut net, 0, 2, 5_000 * MS);
    assert_eq!(
        (code_of(&r), r.handled_by_collector_id.as_str()),
        (200, "A")
    );

    // A Lua error on B is a 500 carrying its message, and B is still fine after it.
    ask(&mut net, 0, 3, request("b", "raise", &Value::Nil, ""));
    let (r, _) = answer(&mut net, 0, 3, 5_000 * MS);
    let s = r.status.clone().expect("status");
    assert_eq!(s.code, 500, "{s:?}");
    assert!(s.message.contains("boom from the handler"), "{s:?}");
    // A method B does not have: B's 404, nothing ran.
    ask(&mut net, 0, 4, request("b", "nope", &Value::Nil, ""));
    let (r, _) = answer(&mut net, 0, 4, 5_000 * MS);
    assert_eq!(code_of(&r), 404, "{r:?}");
    ask(&mut net, 0, 5, request("b", "double", &v(2), ""));
    let (r, _) = answer(&mut net, 0, 5, 5_000 * MS);
    assert_eq!((code_of(&r), field_v(&r)), (200, Some(4)));
    assert!(
        net.m[0]
            .logs
            .iter()
            .any(|l| l.contains("dispatch handled") && l.contains("\"B\"")),
        "handled_by is logged: {:?}",
        net.m[0].logs
    );
}

#[test]
fn target_collector_id_picks_the_node_among_those_serving_the_namespace() {
    let mut net = Net::of(vec![
        ("A", vec![]),
        ("B", vec![who("s:who", "B")]),
        ("C", vec![who("s:who", "C")]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "s")]);
    for (req, target) in [(1, "C"), (2, "B"), (3, "C")] {
        ask(&mut net, 0, req, request("s", "who", &Value::Nil, target));
        let (r, _) = answer(&mut net, 0, req, 5_000 * MS);
        assert_eq!(code_of(&r), 200, "{r:?}");
        assert_eq!(r.handled_by_collector_id, target);
        assert_eq!(output(&r), target);
    }
    ask(&mut net, 0, 4, request("s", "who", &Value::Nil, "Z"));
    let (r, _) = answer(&mut net, 0, 4, 5_000 * MS);
    assert_eq!(code_of(&r), 404, "{r:?}");
}

#[test]
fn funcs_call_reaches_a_function_of_another_node_also_from_a_function() {
    let relay = r#"local funcs = require("funcs")
        return { handler = function(x)
            local r, err = funcs.call("b:double", x)
            if err then error(err) end
            return {v = r.v + 1, via = "relay"}
        end }"#;
    let app = r#"local io, funcs = require("io"), require("funcs")
        return { main = function()
            local r, err = funcs.call("b:double", {v = 21})
            io.print("remote", r and r.v, err)
            local r2, err2 = funcs.call("a:relay", {v = 5})
            io.print("relay", r2 and r2.v, r2 and r2.via, err2)
            local _, e3 = funcs.call("b:raise")
            io.print("raise", e3:kind(), e3:message())
            local _, e4 = funcs.call("b:missing")
            io.print("missing", e4:kind())
            local _, e5 = funcs.call("zz:none")
            io.print("none", e5:kind(), e5:message())
            local sum, e6 = funcs.call("b:sum", 1, 2, nil)
            io.print("three", sum and sum.n, sum and sum.s, e6)
            local f = funcs.async("b:double", {v = 50})
            local got = f:response():receive()
            io.print("async", got:data().v)
            return 0
        end }"#;
    let mut net = Net::of(vec![
        ("A", vec![main(app), func("a:relay", relay)]),
        (
            "B",
            vec![
                func("b:double", DOUBLE),
                func("b:raise", RAISE),
                func("b:sum", SUM),
            ],
        ),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b")]);
    net.main(0, "t:main");
    let out = net.finish(0, 20_000 * MS);
    assert!(out.contains("remote\t42\tnil"), "{out}");
    assert!(out.contains("relay\t11\trelay\tnil"), "{out}");
    assert!(out.contains("raise\tInternal\t"), "{out}");
    assert!(out.contains("boom from the handler"), "{out}");
    assert!(out.contains("missing\tNotFound"), "{out}");
    assert!(
        out.contains("none\tNotFound\tfunction not found: zz:none"),
        "{out}"
    );
    assert!(
        out.contains("three\t3\t3\tnil"),
        "all arguments, the trailing nil too: {out}"
    );
    assert!(out.contains("async\t100"), "{out}");
    assert_eq!(net.m[0].exit, Some(0), "{out}");
}

#[test]
fn b_down_a_fails_bs_namespace_within_the_attempt_timeout_and_serves_its_own() {
    let mut net = Net::of(vec![
        ("A", vec![func("a:double", DOUBLE)]),
        ("B", vec![func("b:double", DOUBLE)]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b")]);
    net.crash(1);
    let t0 = net.now;
    ask(&mut net, 0, 1, request("b", "double", &v(1), ""));
    let (r, at) = answer(&mut net, 0, 1, 10_000 * MS);
    assert!(
        matches!(code_of(&r), 500 | 404),
        "an error for B's namespace: {r:?}"
    );
    let attempt = crate::dispatch::Config::new("x", "y", 0).attempt_timeout_ns;
    assert!(
        at - t0 <= attempt + 100 * MS,
        "answered after {} ms",
        (at - t0) / MS
    );
    ask(&mut net, 0, 2, request("a", "double", &v(4), ""));
    let (r, _) = answer(&mut net, 0, 2, 5_000 * MS);
    assert_eq!(
        (code_of(&r), r.handled_by_collector_id.as_str()),
        (200, "A")
    );
    // Once the membership holds B down, B's namespace fails at once, still an answer.
    assert!(net.run_until(30_000 * MS, |n| n.m[0].peer_down.contains(&"B".to_string())));
    let t1 = net.now;
    ask(&mut net, 0, 3, request("b", "double", &v(1), ""));
    let (r, at) = answer(&mut net, 0, 3, 5_000 * MS);
    assert_eq!(code_of(&r), 404, "{r:?}");
    assert!(at - t1 < 100 * MS, "answered after {} ms", (at - t1) / MS);
}

#[test]
fn a_registry_change_updates_the_routing_of_peers() {
    let app = r#"local io, registry = require("io"), require("registry")
        return { main = function()
            local v, err = registry.snapshot():changes():create({id = "late:hello", kind = "function.lua",
                data = {source = "return { handler = function() return 'hi' end }", method = "handler"}}):apply()
            io.print("created", err)
            process.inbox():receive()
            local _, derr = registry.snapshot():changes():delete("late:hello"):apply()
            io.print("deleted", derr)
            process.inbox():receive()
        end }"#;
    let mut net = Net::of(vec![("A", vec![]), ("B", vec![main(app)])]);
    {
        // Preloaded entries as boot would leave them: registry version 1.
        let mut c = net.m[1].node.core.borrow_mut();
        let loaded = c.entries.clone();
        c.registry.init(&loaded);
    }
    net.converge();
    ask(&mut net, 0, 1, request("late", "hello", &Value::Nil, ""));
    let (r, _) = answer(&mut net, 0, 1, 5_000 * MS);
    assert_eq!(code_of(&r), 404, "not served yet: {r:?}");
    let pid = net.main(1, "t:main");
    let created = net.run_until(5_000 * MS, |n| n.m[1].out.contains("created"));
    assert!(
        created,
        "{}\n{:?} {:?}\n{:?}",
        net.m[1].out,
        net.m[1].logs,
        net.m[1].exit,
        net.m[1]
            .trace
            .borrow()
            .iter()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
    );
    routed(&mut net, &[(0, "late")]);
    ask(&mut net, 0, 2, request("late", "hello", &Value::Nil, ""));
    let (r, _) = answer(&mut net, 0, 2, 5_000 * MS);
    assert_eq!(code_of(&r), 200, "{r:?}");
    assert_eq!(
        (r.handled_by_collector_id.as_str(), output(&r)),
        ("B", "hi".into())
    );

    net.m[1].node.sim_control().noise(pid, "go");
    assert!(net.run_until(5_000 * MS, |n| n.m[1].out.contains("deleted")));
    assert!(net.run_until(5_000 * MS, |n| {
        !n.m[0]
            .node
            .with_collector(|c| c.peer_namespace("late"))
            .unwrap()
    }));
    ask(&mut net, 0, 3, request("late", "hello", &Value::Nil, ""));
    let (r, _) = answer(&mut net, 0, 3, 5_000 * MS);
    assert_eq!(code_of(&r), 404, "removed again: {r:?}");
}

#[test]
fn two_thousand_interleaved_calls_are_all_answered_exactly_once() {
    let mut net = Net::of(vec![
        ("A", vec![func("a:double", DOUBLE)]),
        ("B", vec![func("b:double", DOUBLE)]),
        ("C", vec![func("c:double", DOUBLE)]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b"), (0, "c"), (1, "a"), (2, "b")]);
    const N: u64 = 2_000;
    for req in 1..=N {
        let (i, ns) = match req % 3 {
            0 => (0, "b"),
            1 => (1, "c"),
            _ => (2, "a"),
        };
        ask(&mut net, i, req, request(ns, "double", &v(req as i64), ""));
    }
    let done = |n: &Net| n.m.iter().map(|m| m.responses.len() as u64).sum::<u64>() >= N;
    assert!(net.run_until(120_000 * MS, done), "not all answered");
    net.run_until(100 * MS, |_| false);
    let mut seen = BTreeMap::new();
    for m in &net.m {
        for (req, r) in &m.responses {
            let Response::Dispatch(d) = r else {
                panic!("{r:?}")
            };
            assert_eq!(code_of(d), 200, "{d:?}");
            assert_eq!(field_v(d), Some(*req as i64 * 2), "request {req}");
            *seen.entry(*req).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len() as u64, N);
    assert!(seen.values().all(|n| *n == 1), "answered twice");
}

#[test]
fn a_repeated_dispatch_frame_runs_once() {
    let mut net = Net::of(vec![("A", vec![]), ("B", vec![func("b:double", DOUBLE)])]);
    net.converge();
    routed(&mut net, &[(0, "b")]);
    net.duplicate = true;
    for req in 1..=20 {
        ask(&mut net, 0, req, request("b", "double", &v(req as i64), ""));
    }
    assert!(net.run_until(5_000 * MS, |n| n.m[0].responses.len() >= 20));
    net.run_until(200 * MS, |_| false);
    assert_eq!(net.m[0].responses.len(), 20);
    let ran = net.trace(1, "dispatch invoked").len();
    assert_eq!(ran, 20, "each call ran once on B");
    assert!(net.m[1].node.stats().frames_duplicate >= 20);
}

#[test]
fn with_options_timeout_bounds_a_remote_call_and_stops_its_run() {
    let app = r#"local io, funcs = require("io"), require("funcs")
        return { main = function()
            local quick = funcs.new():with_options({timeout = 500})
            local r, err = quick:call("b:nap", "short")
            io.print("short", r, err and err:kind())
            -- A budget over the node's 2 s attempt timeout: the one attempt may use all of it.
            local patient = funcs.new():with_options({timeout = "5s"})
            local r2, err2 = patient:call("b:nap", "long")
            io.print("long", r2, err2)
            local bad, berr = funcs.new():with_options({timeout = -1})
            io.print("bad", bad, berr and berr:kind())
            local _, ierr = funcs.new():with_options({idempotent = "yes"})
            io.print("bad idempotent", ierr and ierr:kind())
            return 0
        end }"#;
    let mut net = Net::of(vec![
        ("A", vec![main(app)]),
        ("B", vec![nap("b:nap", "B", "3s")]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b")]);
    let t0 = net.now;
    net.main(0, "t:main");
    assert!(net.run_until(10_000 * MS, |n| n.m[0].out.contains("short")));
    let took = net.now - t0;
    assert!(
        (500 * MS..1_000 * MS).contains(&took),
        "failed after {} ms",
        took / MS
    );
    let out = net.finish(0, 20_000 * MS);
    assert!(out.contains("short\tnil\tTimeout"), "{out}");
    assert!(out.contains("long\tB\tnil"), "{out}");
    assert!(out.contains("bad\tnil\tInvalid"), "{out}");
    assert!(out.contains("bad idempotent\tInvalid"), "{out}");
    // The short call's run on B ended at its deadline: it never got to print.
    net.run_until(4_000 * MS, |_| false);
    let b = net.m[1].logs.join("\n");
    assert!(b.contains("long done"), "{b}");
    assert!(
        !b.contains("short done"),
        "the timed-out run was stopped: {b}"
    );
    assert_eq!(net.trace(1, "dispatch invoked").len(), 2);
}

/// Runs of each call (by its `weft-call` identity) on the serving nodes `servers`.
fn runs_by_call(net: &Net, servers: &[usize]) -> BTreeMap<String, usize> {
    let mut runs = BTreeMap::new();
    for i in servers {
        for t in net.trace(*i, "dispatch invoked") {
            let call = t.rsplit(' ').next().unwrap_or_default().to_string();
            *runs.entry(call).or_insert(0) += 1;
        }
    }
    runs
}

#[test]
fn a_lost_reply_is_retried_only_when_the_call_is_marked_idempotent() {
    // B answers after the attempt timeout (its reply is as good as lost), C at once.
    let app = |opts: &str| {
        format!(
            r#"local io, funcs = require("io"), require("funcs")
            return {{ main = function()
                local ex = funcs.new():with_options({opts})
                for i = 1, 6 do
                    local r, err = ex:call("s:work", i)
                    io.print("call", i, r, err and err:kind())
                end
                return 0
            end }}"#
        )
    };
    for (opts, idempotent) in [("{}", false), ("{idempotent = true}", true)] {
        let mut net = Net::of(vec![
            ("A", vec![main(&app(opts))]),
            ("B", vec![nap("s:work", "B", "3s")]),
            ("C", vec![nap("s:work", "C", "0s")]),
        ]);
        net.converge();
        routed(&mut net, &[(0, "s")]);
        net.main(0, "t:main");
        let out = net.finish(0, 60_000 * MS);
        let runs = runs_by_call(&net, &[1, 2]);
        let twice = runs.values().filter(|n| **n > 1).count();
        let timeouts = out.matches("\tTimeout").count();
        if idempotent {
            assert_eq!(
                out.matches("\tC\tnil").count(),
                6,
                "all answered by C: {out}"
            );
            assert!(
                twice >= 1,
                "a call whose reply was lost ran again on C: {runs:?}"
            );
        } else {
            assert_eq!(twice, 0, "never run twice: {runs:?}");
            assert!(timeouts >= 1, "some call went to B and timed out: {out}");
            assert_eq!(out.matches("\tC\tnil").count() + timeouts, 6, "{out}");
        }
        assert!(
            net.m[0]
                .logs
                .iter()
                .any(|l| l.contains("dispatch late reply dropped")),
            "B's late reply is dropped and logged: {:?}",
            net.m[0].logs
        );
    }
}

#[test]
fn canceling_an_async_remote_call_or_its_caller_dying_stops_the_remote_run() {
    let child = r#"local funcs = require("funcs")
        return { main = function()
            funcs.async("b:nap", "orphan")
            error("the caller dies")
        end }"#;
    let app = r#"local io, funcs, time = require("io"), require("funcs"), require("time")
        return { main = function()
            local f = funcs.new():async("b:nap", "canceled")
            time.sleep("300ms")
            io.print("cancel", f:cancel())
            local _, err = f:result()
            io.print("result", err and err:kind(), f:is_canceled())
            process.spawn("t:child", "t:host")
            time.sleep("300ms")
            local g = funcs.async("b:nap", "kept")
            g:response():receive()
            io.print("kept", g:result():data())
            return 0
        end }"#;
    let mut net = Net::of(vec![
        (
            "A",
            vec![main(app), entry("t:child", "process.lua", child, "main")],
        ),
        ("B", vec![nap("b:nap", "B", "1s")]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b")]);
    net.main(0, "t:main");
    let out = net.finish(0, 20_000 * MS);
    assert!(out.contains("cancel\ttrue"), "{out}");
    assert!(out.contains("result\tCanceled\ttrue"), "{out}");
    assert!(out.contains("kept\tB"), "{out}");
    net.run_until(2_000 * MS, |_| false);
    let b = net.m[1].logs.join("\n");
    assert_eq!(
        net.trace(1, "dispatch invoked").len(),
        3,
        "all three runs started on B"
    );
    assert!(b.contains("kept done"), "{b}");
    assert!(
        !b.contains("canceled done"),
        "a canceled call's run was stopped: {b}"
    );
    assert!(
        !b.contains("orphan done"),
        "a dead caller's run was stopped: {b}"
    );
}

/// The driver's caller of a request went away (`Input::DispatchCancel`): the run it started
/// stops, here on this node and on the node it was routed to, and its answer says why.
#[test]
fn a_gone_grpc_caller_stops_the_runs_of_its_requests() {
    let mut net = Net::of(vec![
        ("A", vec![nap("a:nap", "A", "1s")]),
        ("B", vec![nap("b:nap", "B", "1s")]),
    ]);
    net.converge();
    routed(&mut net, &[(0, "b"), (1, "a")]);
    ask(
        &mut net,
        0,
        1,
        request("a", "nap", &Value::from("here"), ""),
    );
    ask(
        &mut net,
        0,
        2,
        request("b", "nap", &Value::from("there"), ""),
    );
    ask(
        &mut net,
        0,
        3,
        request("b", "nap", &Value::from("kept"), ""),
    );
    net.run_until(300 * MS, |_| false);
    assert_eq!(net.trace(0, "dispatch invoked").len(), 1, "a:nap started");
    assert_eq!(
        net.trace(1, "dispatch invoked").len(),
        2,
        "b:nap started twice"
    );
    for req in [1, 2, 9] {
        net.inbox[0].push_back(Input::DispatchCancel { req });
    }
    for req in [1, 2] {
        let (d, _) = answer(&mut net, 0, req, 1_000 * MS);
        assert_eq!(code_of(&d), 500);
        let msg = d
            .status
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        assert!(msg.contains("canceled"), "{msg}");
    }
    let (kept, _) = answer(&mut net, 0, 3, 5_000 * MS);
    assert_eq!(output(&kept), "B");
    net.run_until(2_000 * MS, |_| false);
    let (a, b) = (net.m[0].logs.join("\n"), net.m[1].logs.join("\n"));
    assert!(!a.contains("here done"), "the local run was stopped: {a}");
    assert!(!b.contains("there done"), "the remote run was stopped: {b}");
    assert!(b.contains("kept done"), "{b}");
}
