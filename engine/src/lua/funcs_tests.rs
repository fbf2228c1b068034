//! Lua-level tests for `funcs`, Futures, `ctx`, Spawner context and `events`.

use crate::entries::Entry;
use crate::node::NodeConfig;
use crate::value::{Table, Value};
use crate::Node;

const MODS: &[&str] = &["io", "time", "funcs", "ctx", "events"];

fn entry(id: &str, kind: &str, src: &str, method: Option<&str>) -> Entry {
    let (ns, name) = crate::entries::parse_id(id);
    let mut data = Table::default().with("source", Value::from(src));
    if let Some(m) = method {
        data = data.with("method", Value::from(m));
    }
    let mods = Table {
        array: MODS.iter().map(|m| Value::from(*m)).collect(),
        map: vec![],
    };
    data = data.with("modules", Value::table(mods));
    Entry {
        id: id.into(),
        namespace: ns,
        name,
        kind: kind.into(),
        data,
        file: "<test>".into(),
        ..Default::default()
    }
}

/// Runs `t:main` (process.lua, method main) on a terminal host beside `others`
/// (id, kind, source, method); returns (exit code, output).
fn run(main: &str, others: &[(&str, &str, &str, Option<&str>)]) -> (i32, String) {
    run_with(main, others, &mut |_, _| {})
}

/// As `run`, calling `probe(node, now)` after every round.
fn run_with(
    main: &str,
    others: &[(&str, &str, &str, Option<&str>)],
    probe: &mut dyn FnMut(&Node, u64),
) -> (i32, String) {
    let cfg = NodeConfig {
        seed: 7,
        step_budget: 1000,
        ..Default::default()
    };
    let mut entries = vec![entry("t:main", "process.lua", main, Some("main"))];
    for (id, kind, src, method) in others {
        entries.push(entry(id, kind, src, *method));
    }
    let mut node = super::tests_support::launch(cfg, &entries);
    super::tests_support::drive(&mut node, &mut super::tests_support::no_world, probe)
}

const FNS: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "t:add",
        "function.lua",
        "local a, b = ...\nreturn a + b",
        None,
    ),
    (
        "t:fail",
        "function.lua",
        r#"return nil, errors.new({message = "bad input", kind = errors.NOT_FOUND, retryable = false})"#,
        None,
    ),
    ("t:raise", "function.lua", r#"error("boom")"#, None),
    ("t:nothing", "function.lua", "local x = 1", None),
    (
        "t:double",
        "function.lua",
        "return { handler = function(x) return {v = x.v * 2, same = x} end }",
        Some("handler"),
    ),
    (
        "t:slow",
        "function.lua",
        r#"local time = require("time")
           local v, d = ...
           time.sleep(d or "10ms")
           return v"#,
        None,
    ),
    (
        "t:ctxf",
        "function.lua",
        r#"local u = ctx.get("user")
           local nested = funcs.call("t:ctxall")
           return {user = u, nested = nested}"#,
        None,
    ),
    ("t:ctxall", "function.lua", "return (ctx.all())", None),
];

#[test]
fn funcs_call_returns_values_and_propagates_errors() {
    let main = r#"
        local io = require("io")
        local funcs = require("funcs")
        return { main = function()
            io.print("add", funcs.call("t:add", 2, 3))
            local r = funcs.call("t:double", {v = 21})
            io.print("double", r.v, r.same.v)
            local v, err = funcs.call("t:fail")
            io.print("fail", v, err:kind(), err:message(), err:retryable())
            local v2, err2 = funcs.call("t:raise")
            io.print("raise", v2, tostring(err2):find("boom") ~= nil)
            local n, e3 = funcs.call("t:nothing")
            io.print("nothing", n, e3)
            local _, bad = funcs.call("nonamespace")
            io.print("invalid", bad:kind())
            local _, bad2 = funcs.call("")
            io.print("empty", bad2:kind())
            local _, nf = funcs.call("t:missing")
            io.print("missing", nf:kind())
            local _, notfn = funcs.call("t:main")
            io.print("not a function", notfn:kind())
            -- calls from spawned coroutines park only that coroutine
            local ch = channel.new(2)
            coroutine.spawn(function() ch:send(funcs.call("t:slow", "a", "20ms")) end)
            coroutine.spawn(function() ch:send(funcs.call("t:add", 1, 1)) end)
            io.print("order", ch:receive(), (ch:receive()))
            return 0
        end }"#;
    let (code, out) = run(main, FNS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("add\t5\n"), "{out}");
    assert!(out.contains("double\t42\t21\n"), "{out}");
    assert!(
        out.contains("fail\tnil\tNotFound\tbad input\tfalse\n"),
        "{out}"
    );
    assert!(out.contains("raise\tnil\ttrue\n"), "{out}");
    assert!(out.contains("nothing\tnil\tnil\n"), "{out}");
    assert!(out.contains("invalid\tInvalid\n"), "{out}");
    assert!(out.contains("empty\tInvalid\n"), "{out}");
    assert!(out.contains("missing\tNotFound\n"), "{out}");
    assert!(out.contains("not a function\tNotFound\n"), "{out}");
    assert!(out.contains("order\t2\ta\n"), "{out}");
}

#[test]
fn async_future_result_channel_and_cancel() {
    let main = r#"
        local io = require("io")
        local time = require("time")
        local funcs = require("funcs")
        return { main = function()
            local f = funcs.async("t:slow", 5)
            local r, e = f:result()
            io.print("pending", r, e, f:is_complete())
            local ch = f:channel()
            io.print("same channel", ch == f:response(), ch == f:channel())
            local p = ch:receive()
            io.print("got", p:data(), f:is_complete(), f:result():data(), f:is_canceled())
            io.print("no error", f:error())

            local g = funcs.async("t:fail")
            local ge = g:response():receive()
            local _, gerr = g:result()
            local eo, has = g:error()
            io.print("failed", ge:kind(), gerr:kind(), gerr:retryable(), eo:message(), has)

            local c = funcs.async("t:slow", 1, "1s")
            c:cancel()
            local _, cerr = c:result()
            io.print("canceled", c:is_canceled(), c:is_complete(), cerr:kind())
            local ce = c:channel():receive()
            io.print("canceled channel", ce:kind())
            time.sleep("2s")
            local _, still = c:result()
            io.print("still", still:kind())

            local d = funcs.async("t:add", 1, 2)
            time.sleep("10ms")
            d:cancel()
            io.print("late cancel", d:is_canceled(), d:result():data())

            local _, bad = funcs.async("bad")
            io.print("async invalid", bad:kind())
            return 0
        end }"#;
    let (code, out) = run(main, FNS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pending\tnil\tnil\tfalse\n"), "{out}");
    assert!(out.contains("same channel\ttrue\ttrue\n"), "{out}");
    assert!(out.contains("got\t5\ttrue\t5\tfalse\n"), "{out}");
    assert!(out.contains("no error\tnil\tfalse\n"), "{out}");
    assert!(
        out.contains("failed\tNotFound\tNotFound\tfalse\tbad input\ttrue\n"),
        "{out}"
    );
    assert!(out.contains("canceled\ttrue\ttrue\tCanceled\n"), "{out}");
    assert!(out.contains("canceled channel\tCanceled\n"), "{out}");
    assert!(out.contains("still\tCanceled\n"), "{out}");
    // data() may return a trailing nil (spec §0.1: not part of the contract).
    assert!(out.contains("late cancel\ttrue\t3"), "{out}");
    assert!(out.contains("async invalid\tInvalid\n"), "{out}");
}

#[test]
fn ctx_is_inherited_through_calls_and_spawns() {
    let child = r#"
        local funcs = require("funcs")
        return { main = function(parent)
            local t = ctx.get("tenant")
            local viafn = funcs.call("t:ctxall")
            process.send(parent, "ctx", {tenant = t, viafn = viafn.tenant, user = viafn.user})
        end }"#;
    let main = r#"
        local io = require("io")
        local funcs = require("funcs")
        return { main = function()
            local all = ctx.all()
            io.print("root empty", next(all) == nil)
            local _, nf = ctx.get("user")
            local _, inv = ctx.get("")
            io.print("errors", nf:kind(), inv:kind())
            local ex = funcs.new():with_context({user = "bob"})
            local base = funcs.new()
            local r = ex:call("t:ctxf")
            io.print("call", r.user, r.nested.user)
            local r2 = ex:with_context({user = "eve", extra = 1}):call("t:ctxall")
            io.print("merged", r2.user, r2.extra)
            local r3 = base:call("t:ctxall")
            io.print("immutable", r3.user)
            local f = ex:async("t:ctxall")
            io.print("async", f:channel():receive():data().user)
            local _, bad = funcs.new():with_context("nope")
            io.print("bad ctx", bad:kind())

            local inbox = process.inbox()
            local sp = process.with_context({tenant = "acme"})
            local sp2 = sp:with_context({user = "ann"})
            local pid = sp2:spawn("t:child", "t:host", process.pid())
            local m = inbox:receive():payload():data()
            io.print("spawn", m.tenant, m.viafn, m.user)
            process.with_context({tenant = "named"}):with_name("kid"):spawn("t:child", "t:host", process.pid())
            local m2 = inbox:receive():payload():data()
            io.print("named", m2.tenant, m2.user)
            return 0
        end }"#;
    let mut others: Vec<(&str, &str, &str, Option<&str>)> = FNS.to_vec();
    others.push(("t:child", "process.lua", child, Some("main")));
    let (code, out) = run(main, &others);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("root empty\ttrue\n"), "{out}");
    assert!(out.contains("errors\tNotFound\tInvalid\n"), "{out}");
    assert!(out.contains("call\tbob\tbob\n"), "{out}");
    assert!(out.contains("merged\teve\t1\n"), "{out}");
    assert!(out.contains("immutable\tnil\n"), "{out}");
    assert!(out.contains("async\tbob\n"), "{out}");
    assert!(out.contains("bad ctx\tInvalid\n"), "{out}");
    assert!(out.contains("spawn\tacme\tacme\tann\n"), "{out}");
    assert!(out.contains("named\tnamed\tnil\n"), "{out}");
}

#[test]
fn events_subscribe_send_close() {
    let main = r#"
        local io = require("io")
        local events = require("events")
        return { main = function()
            local sub = events.subscribe("app.*")
            local only = events.subscribe("app.(orders|users)", "created")
            io.print("same channel", sub:channel() == sub:channel())
            io.print("send", (events.send("app.orders", "created", "/o/1", {n = 1})))
            events.send("app.orders", "deleted", "/o/1")
            events.send("app", "created", "/x")
            events.send("other.orders", "created", "/y")
            local e = sub:channel():receive()
            io.print("first", e.system, e.kind, e.path, e.data.n)
            local e2 = sub:channel():receive()
            io.print("second", e2.kind, e2.data)
            local o = only:channel():receive()
            io.print("filtered", o.kind, o.path)
            local _, err = events.send("", "k", "p")
            local _, err2 = events.send("s", "", "p")
            local _, err3 = events.send("s", "k", "")
            local _, err4 = events.subscribe("")
            io.print("invalid", err:kind(), err2:kind(), err3:kind(), err4:kind())
            io.print("close", sub:close(), sub:close())
            local v, ok = sub:channel():receive()
            io.print("closed", v, ok)
            events.send("app.orders", "created", "/o/2")
            local o2 = only:channel():receive()
            io.print("still open", o2.path)
            return 0
        end }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("same channel\ttrue\n"), "{out}");
    assert!(out.contains("send\ttrue\n"), "{out}");
    assert!(
        out.contains("first\tapp.orders\tcreated\t/o/1\t1\n"),
        "{out}"
    );
    assert!(out.contains("second\tdeleted\tnil\n"), "{out}");
    assert!(out.contains("filtered\tcreated\t/o/1\n"), "{out}");
    assert!(
        out.contains("invalid\tInvalid\tInvalid\tInvalid\tInvalid\n"),
        "{out}"
    );
    assert!(out.contains("close\ttrue\ttrue\n"), "{out}");
    assert!(out.contains("closed\tnil\tfalse\n"), "{out}");
    assert!(out.contains("still open\t/o/2\n"), "{out}");
}

#[test]
fn process_lifecycle_topics_and_slow_subscriber() {
    let child = r#"return { main = function(fail)
        if fail then return nil, "child failed" end
        return 0
    end }"#;
    let main = r#"
        local io = require("io")
        local time = require("time")
        local events = require("events")
        return { main = function()
            local sub = events.subscribe("process")
            local slow = events.subscribe("flood")
            local pid = process.spawn("t:child", "t:host", false)
            local s = sub:channel():receive()
            io.print("started", s.system, s.kind, s.path == pid, s.data.id, s.data.parent == process.pid())
            local x = sub:channel():receive()
            io.print("stopped", x.kind, x.path == pid, x.data.ok)
            local pid2 = process.spawn("t:child", "t:host", true)
            sub:channel():receive()
            local y = sub:channel():receive()
            io.print("failed", y.kind, y.data.ok, tostring(y.data.error))
            for i = 1, 200 do events.send("flood", "k", "p", i) end
            time.sleep("1ms")
            local n, first, last = 0, nil, nil
            while true do
                local r = channel.select({slow:channel():case_receive()}, true)
                if r == true or r.ok == false or r.value == nil then break end
                n = n + 1
                first = first or r.value.data
                last = r.value.data
            end
            io.print("flood", n, first, last)
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:child", "process.lua", child, Some("main"))]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("started\tprocess\tstarted\ttrue\tt:child\ttrue\n"),
        "{out}"
    );
    assert!(out.contains("stopped\tstopped\ttrue\ttrue\n"), "{out}");
    assert!(
        out.contains("failed\tstopped\tfalse\tchild failed\n"),
        "{out}"
    );
    // 64 buffered in the bus + 64 in the channel would be the most; all sends happen within one
    // step here, so the bus keeps the first 64 and drops the rest.
    assert!(out.contains("flood\t64\t1\t64\n"), "{out}");
}

#[test]
fn subscriptions_end_with_their_process_and_callees_with_their_caller() {
    let sub = r#"
        local events = require("events")
        local funcs = require("funcs")
        return { main = function()
            events.subscribe("x")
            funcs.async("t:slow", 1, "1h")
            local time = require("time")
            time.sleep("5ms")
            error("subscriber dies")
        end }"#;
    let main = r#"
        local time = require("time")
        return { main = function()
            process.spawn("t:sub", "t:host")
            time.sleep("1s")
            return 0
        end }"#;
    let mut others: Vec<(&str, &str, &str, Option<&str>)> = FNS.to_vec();
    others.push(("t:sub", "process.lua", sub, Some("main")));
    let mut seen_sub = false;
    let mut checked = false;
    let (code, out) = run_with(main, &others, &mut |node, now| {
        let c = node.core.borrow();
        if c.bus.len() == 1 && c.process_count() == 3 {
            seen_sub = true; // main, subscriber, callee
        } else if seen_sub && now < 1_000_000_000 {
            // The subscriber failed: its subscription and its pending call went with it.
            assert_eq!(c.bus.len(), 0, "subscription outlived its process");
            assert_eq!(c.process_count(), 1, "callee outlived its caller");
            checked = true;
        }
    });
    assert_eq!(code, 0, "{out}");
    assert!(seen_sub && checked, "probe did not observe both phases");
}

#[test]
fn with_options_timeout_stops_a_local_call_that_runs_too_long() {
    let main = r#"
        local io = require("io")
        local funcs = require("funcs")
        return { main = function()
            local quick = funcs.new():with_options({timeout = 50})
            local v, err = quick:call("t:slow", "late", "200ms")
            io.print("late", v, err and err:kind(), err and tostring(err):find("timed out") ~= nil)
            local v2, err2 = quick:call("t:slow", "soon", "10ms")
            io.print("soon", v2, err2)
            local patient = funcs.new():with_options({timeout = "1s"})
            io.print("patient", patient:call("t:slow", "ok", "100ms"))
            -- a timer left from a call that ended in time stops nothing later
            local again = funcs.new():with_options({timeout = 30})
            io.print("again", again:call("t:slow", "fast", "1ms"))
            io.print("after", funcs.call("t:slow", "long", "60ms"))
            return 0
        end }"#;
    let (code, out) = run(main, FNS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("late\tnil\tTimeout\ttrue\n"), "{out}");
    assert!(out.contains("soon\tsoon\tnil\n"), "{out}");
    assert!(out.contains("patient\tok\n"), "{out}");
    assert!(out.contains("again\tfast\n"), "{out}");
    assert!(out.contains("after\tlong\n"), "{out}");
}
