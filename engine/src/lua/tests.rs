//! Runtime tests with real Lua processes on a node driven by a virtual clock.

use super::LuaRuntime;
use crate::entries::Entry;
use crate::node::NodeConfig;
use crate::value::{Table, Value};
use crate::Node;

fn entry(id: &str, kind: &str, source: Option<&str>, modules: &[&str]) -> Entry {
    let (ns, name) = crate::entries::parse_id(id);
    let mut data = Table::default();
    if let Some(s) = source {
        data = data
            .with("source", Value::from(s))
            .with("method", Value::from("main"));
    }
    let mods = Table {
        array: modules.iter().map(|m| Value::from(*m)).collect(),
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

/// Runs `t:main` on a terminal host with the given extra process entries; returns (exit, stdout).
fn run(main: &str, others: &[(&str, &str)]) -> (i32, String) {
    run_limited(crate::node::Limits::default(), main, others)
}

fn run_limited(limits: crate::node::Limits, main: &str, others: &[(&str, &str)]) -> (i32, String) {
    let cfg = NodeConfig {
        seed: 7,
        step_budget: 1000,
        limits,
        ..Default::default()
    };
    let mut entries = vec![entry("t:main", "process.lua", Some(main), &["io", "time"])];
    for (id, src) in others {
        entries.push(entry(id, "process.lua", Some(src), &["io", "time"]));
    }
    let mut node = super::tests_support::launch(cfg, &entries);
    super::tests_support::drive(
        &mut node,
        &mut super::tests_support::no_world,
        &mut |_, _| {},
    )
}

#[test]
fn runaway_loop_is_preempted() {
    let spinner = "return { main = function() while true do end end }";
    let main = r#"
        local io = require("io")
        local time = require("time")
        return { main = function()
            process.spawn("t:spin", "t:host")
            time.sleep("10ms")
            io.print("still scheduled")
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:spin", spinner)]);
    assert_eq!(code, 0);
    assert!(out.contains("still scheduled"), "{out}");
}

/// A tiny step budget preempts a process at nearly every call and back-edge, also between the
/// moment a blocking call registers its wait and the moment it yields to park. A wait completed
/// in that gap must still wake the call with its own result (it once resumed the preempted
/// coroutine instead, and the call then waited forever). Each budget from 2 to 12 ticks puts
/// the preemption points elsewhere.
#[test]
fn a_process_preempted_at_every_call_still_gets_each_wait_answered() {
    let sender = r#"return { main = function(parent)
        for i = 1, 50 do process.send(parent, "n", i) end
    end }"#;
    let main = r#"
        local io = require("io")
        local time = require("time")
        return { main = function()
            local inbox = process.inbox()
            process.spawn("t:sender", "t:host", process.pid())
            local sum, last = 0, 0
            for _ = 1, 50 do
                local n = inbox:receive():payload():data()
                if n ~= last + 1 then error("out of order: " .. tostring(n)) end
                last = n
                sum = sum + n
                time.sleep("1ms")
            end
            io.print("sum", sum)
            return 0
        end }"#;
    for budget in 2..=12 {
        let cfg = NodeConfig {
            seed: 7,
            step_budget: budget,
            ..Default::default()
        };
        let entries = vec![
            entry("t:main", "process.lua", Some(main), &["io", "time"]),
            entry("t:sender", "process.lua", Some(sender), &["io", "time"]),
        ];
        let mut node = super::tests_support::launch(cfg, &entries);
        let (code, out) = super::tests_support::drive(
            &mut node,
            &mut super::tests_support::no_world,
            &mut |_, _| {},
        );
        assert_eq!(code, 0, "budget {budget}: {out}");
        assert!(out.contains("sum\t1275"), "budget {budget}: {out}");
    }
}

#[test]
fn globals_are_per_process_and_builtins_frozen() {
    let writer = r#"return { main = function(parent)
        shared_global = "mine"
        local ok = pcall(function() string.upper = nil end)
        local ok2 = pcall(function() rawset(math, "pi", 3) end)
        process.send(parent, "done", {ok, ok2})
    end }"#;
    let main = r#"
        local io = require("io")
        return { main = function()
            local inbox = process.inbox()
            process.spawn("t:writer", "t:host", process.pid())
            local m = inbox:receive()
            local r = m:payload():data()
            io.print("writer modified string:", r[1], "math:", r[2])
            io.print("global seen here:", tostring(shared_global))
            io.print("upper works:", string.upper("x"))
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:writer", writer)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("writer modified string:\tfalse\tmath:\tfalse"),
        "{out}"
    );
    assert!(out.contains("global seen here:\tnil"), "{out}");
    assert!(out.contains("upper works:\tX"), "{out}");
}

#[test]
fn typed_lua_and_time_compression() {
    let main = r#"
        local io = require("io")
        local time = require("time")
        type Point = {x: number, y: number}
        local function norm1(p: Point): number
            return math.abs(p.x) + math.abs(p.y)
        end
        local function main(): integer
            local t0 = time.now()
            time.sleep("2h")
            local slept = t0:sub(time.now())
            io.print("norm", norm1({x = 3, y = -4}), "slept", tostring(-slept:hours()))
            return 3
        end
        return { main = main }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 3);
    assert!(out.contains("norm\t7\tslept\t2"), "{out}");
}

#[test]
fn coroutine_error_fails_the_process() {
    let main = r#"
        local time = require("time")
        return { main = function()
            coroutine.spawn(function() error("inner boom") end)
            time.sleep("1s")
            return 0
        end }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("inner boom"), "{out}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let node = Node::bare(NodeConfig::default());
    let mut lua = LuaRuntime::new(node.port()).unwrap();
    let mut e = entry(
        "t:bad",
        "process.lua",
        Some("local x = 1\nlocal function (\n"),
        &[],
    );
    e.source_file = Some("src/bad.lua".into());
    let err = lua.prepare(&e).unwrap_err();
    assert!(err.message.starts_with("src/bad.lua:2:"), "{}", err.message);
}

#[test]
fn wippy_string_compat_and_runtime_error_values() {
    let main = r#"
        local io = require("io")
        return { main = function()
            local _, err = require("time").parse_duration("soon")
            io.print(string(5), string.find(err, "invalid") ~= nil, err:retryable(), err:kind())
            local ok, e = pcall(require, "sql")
            io.print(ok, tostring(e))
            return 0
        end }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5\ttrue\tfalse\tInvalid"), "{out}");
    assert!(
        out.contains("false\t") && out.contains("module 'sql' not found"),
        "{out}"
    );
}

#[test]
fn process_exec_returns_the_child_result_or_its_error() {
    let child = r#"return { main = function(a, b)
        if a == "fail" then return nil, "child said no" end
        return { sum = a + b }
    end }"#;
    let main = r#"
        local io = require("io")
        return { main = function()
            local r, err = process.exec("t:child", "t:host", 2, 3)
            io.print("sum", r and r.sum, err)
            local r2, err2 = process.exec("t:child", "t:host", "fail")
            io.print("failed", r2, tostring(err2))
            local r3, err3 = process.exec("t:nope", "t:host")
            io.print("missing", r3, err3:kind())
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:child", child)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sum\t5\tnil"), "{out}");
    assert!(out.contains("failed\tnil\tchild said no"), "{out}");
    assert!(out.contains("missing\tnil\tNotFound"), "{out}");
}

#[test]
fn payload_data_forwards_as_one_payload() {
    let relay = r#"return { main = function(to)
        local m = process.inbox():receive()
        process.send(to, "fwd", m:payload():data())
    end }"#;
    let main = r#"
        local io = require("io")
        return { main = function()
            local r = process.spawn("t:relay", "t:host", process.pid())
            process.send(r, "x", {n = 1})
            local m = process.inbox():receive()
            io.print("payloads", type(m:payload()), m:payload():data().n)
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:relay", relay)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("payloads\tuserdata\t1"), "{out}");
}

#[test]
fn errors_remember_where_they_were_made() {
    let main = r#"
        local io = require("io")
        local function inner() return errors.new("deep") end
        local function outer() return inner() end
        return { main = function()
            local e = outer()
            local cs = errors.call_stack(e)
            io.print("stack", #e:stack() > 0, cs.frames[1].line, cs.frames[1].name)
            io.print("plain", errors.call_stack("x"))
            return 0
        end }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stack\ttrue\t3\tinner"), "{out}");
    assert!(out.contains("plain\tnil"), "{out}");
}

#[test]
fn waiting_inside_a_plain_coroutine_is_a_clear_error_and_timers_keep_their_time() {
    let main = r#"
        local io = require("io")
        local time = require("time")
        return { main = function()
            local ok, err = pcall(coroutine.wrap(function() time.sleep("1s") end))
            io.print("sleep", ok, string.find(tostring(err), "coroutine.spawn", 1, true) ~= nil)
            local co = coroutine.create(function()
                local inbox = process.inbox()
                return inbox:receive()
            end)
            local ok2, err2 = coroutine.resume(co)
            io.print("receive", ok2, string.find(tostring(err2), "cannot wait", 1, true) ~= nil)
            -- A select that need not wait still works there.
            local ch = channel.new(1)
            ch:send(5)
            local got = coroutine.wrap(function() return ch:receive() end)()
            io.print("ready", got)
            local t0 = time.now()
            time.sleep("1s")
            io.print("slept", time.now():sub(t0):seconds() >= 1)
            return 0
        end }"#;
    let (code, out) = run(main, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sleep\tfalse\ttrue"), "{out}");
    assert!(out.contains("receive\tfalse\ttrue"), "{out}");
    assert!(out.contains("ready\t5"), "{out}");
    assert!(out.contains("slept\ttrue"), "{out}");
}

#[test]
fn an_endless_loop_inside_a_users_coroutine_is_preempted() {
    let spinner = r#"return { main = function()
        coroutine.wrap(function() while true do end end)()
    end }"#;
    let counter = r#"return { main = function()
        local co = coroutine.create(function()
            local n = 0
            while true do n = n + 1; if n % 1000 == 0 then coroutine.yield(n) end end
        end)
        while true do
            local ok, n = coroutine.resume(co)
            assert(ok and type(n) == "number", "a user's own yields still come back: " .. tostring(n))
        end
    end }"#;
    let main = r#"
        local io = require("io")
        local time = require("time")
        return { main = function()
            process.spawn("t:spin", "t:host")
            process.spawn("t:count", "t:host")
            local t0 = time.now()
            time.sleep("5ms")
            io.print("slept", time.now():sub(t0):seconds() >= 0.005)
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:spin", spinner), ("t:count", counter)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("slept\ttrue"), "{out}");
}

/// `t:main` spawns `t:bad` monitored and prints the error its EXIT carries, then a line that
/// shows it still runs.
const MONITOR: &str = r#"
    local io = require("io")
    local time = require("time")
    return { main = function()
        process.spawn_monitored("t:bad", "t:host")
        local ev = process.events():receive()
        io.print("exit", tostring(ev.result and ev.result.error))
        time.sleep("10ms")
        io.print("still here")
        return 0
    end }"#;

#[test]
fn a_loop_where_luau_cannot_yield_is_killed_and_pcall_cannot_keep_it() {
    let limits = crate::node::Limits {
        step_ceiling: 5_000,
        ..Default::default()
    };
    for bad in [
        "table.sort({3, 1, 2}, function() while true do end end)",
        "string.gsub('abc', '%w', function() while true do end end)",
        "tostring(setmetatable({}, {__tostring = function() while true do end end}))",
        "string.find(string.rep('a', 5000), '.-.-.-.-.-b')",
        "while true do pcall(table.sort, {3, 1, 2}, function() while true do end end) end",
    ] {
        let src = format!("return {{ main = function() {bad} return 0 end }}");
        let (code, out) = run_limited(limits, MONITOR, &[("t:bad", &src)]);
        assert_eq!(code, 0, "{bad}: {out}");
        assert!(
            out.contains("exit\tprocess killed: it ran 5000 instructions without a point where it could be preempted"),
            "{bad}: {out}"
        );
        assert!(out.contains("still here"), "{bad}: {out}");
    }
}

#[test]
fn a_process_over_its_memory_limit_dies_alone() {
    let limits = crate::node::Limits {
        process_memory: 2 << 20,
        ..Default::default()
    };
    let hog = r#"return { main = function()
        local t = {}
        for i = 1, 1e7 do t[i] = string.rep("x", 100) .. i end
        return 0
    end }"#;
    let (code, out) = run_limited(limits, MONITOR, &[("t:bad", hog)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("exit\tprocess killed: out of memory (it holds more than its limit of 2 MiB"),
        "{out}"
    );
    assert!(out.contains("still here"), "{out}");
}

#[test]
fn sends_past_the_mailbox_bound_fail_with_an_error_value() {
    let limits = crate::node::Limits {
        mailbox: 10,
        ..Default::default()
    };
    let sink = r#"return { main = function() require("time").sleep("1h") end }"#;
    let main = r#"
        local io = require("io")
        return { main = function()
            local pid = process.spawn("t:sink", "t:host")
            local ok, refused, last = 0, 0, nil
            for i = 1, 25 do
                local r, err = process.send(pid, "m", i)
                if r then ok = ok + 1 else refused = refused + 1; last = err end
            end
            io.print("sent", ok, refused, last:kind(), string.find(last:message(), "mailbox full", 1, true) ~= nil)
            return 0
        end }"#;
    let (code, out) = run_limited(limits, main, &[("t:sink", sink)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sent\t10\t15\tRateLimited\ttrue"), "{out}");
}

/// `process.send` takes a PID (parsed where it is called), a name, or text that is neither, and
/// says which arguments it could not use.
#[test]
fn send_reaches_a_pid_or_a_name_and_names_what_it_cannot_use() {
    let echo = r#"return { main = function()
        local inbox = process.inbox()
        while true do
            local m = inbox:receive()
            process.send(m:payload():data(), "back", m:topic())
        end
    end }"#;
    let main = r#"
        local io = require("io")
        return { main = function()
            local inbox = process.inbox()
            local pid = process.spawn("t:echo", "t:host")
            process.registry.register("echo", pid)
            io.print("pid", process.send(pid, "by pid", process.pid()))
            io.print("got", inbox:receive():payload():data())
            io.print("name", process.send("echo", "by name", process.pid()))
            io.print("got", inbox:receive():payload():data())
            local _, e1 = process.send("{t:host|0xzz}", "x")
            io.print("bad pid", e1:kind())
            local _, e2 = process.send("nobody", "x")
            io.print("no name", e2:kind())
            local _, e3 = process.send(pid, 42)
            io.print("bad topic", e3:message())
            local _, e4 = process.send(pid)
            io.print("no topic", e4:message())
            return 0
        end }"#;
    let (code, out) = run(main, &[("t:echo", echo)]);
    assert_eq!(code, 0, "{out}");
    for want in [
        "pid\ttrue\tnil\ngot\tby pid",
        "name\ttrue\tnil\ngot\tby name",
        "bad pid\tInvalid",
        "no name\tNotFound",
        "bad topic\tsend: destination and topic must be strings",
        "no topic\tsend needs a destination and a topic",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
}

/// A slice charges a short step one and a step that ran its whole budget 1 +
/// `busy_step_cost`: many short steps share one slice, only a few long ones do.
#[test]
fn a_slice_runs_many_short_steps_and_few_long_ones() {
    fn steps_in_one_slice(worker: &str, busy_step_cost: u32) -> u64 {
        let cfg = NodeConfig {
            seed: 7,
            step_budget: 1000,
            busy_step_cost,
            ..Default::default()
        };
        let main = r#"
            return { main = function()
                for _ = 1, 40 do process.spawn("t:w", "t:host", process.pid()) end
                require("time").sleep("1h")
            end }"#;
        let entries = vec![
            entry("t:main", "process.lua", Some(main), &["time"]),
            entry("t:w", "process.lua", Some(worker), &[]),
        ];
        let mut node = super::tests_support::launch(cfg, &entries);
        node.run(0, 1); // t:main's step: the workers are spawned
        let before = node.stats().messages_sent;
        node.run(0, 16);
        // Each worker sends one message in its first step.
        node.stats().messages_sent - before
    }
    let short = r#"return { main = function(parent)
        process.send(parent, "w"); process.inbox():receive() end }"#;
    let long = r#"return { main = function(parent)
        process.send(parent, "w"); while true do end end }"#;
    // A worker sends in its second step (the first starts it): 16 short steps, 8 messages,
    // whatever a long step costs.
    assert_eq!(steps_in_one_slice(short, 8), 8);
    assert_eq!(steps_in_one_slice(short, 1), 8);
    // A worker whose second step runs its whole budget: two fit when that costs 1 + 8.
    assert_eq!(steps_in_one_slice(long, 8), 2);
    assert!(steps_in_one_slice(long, 1) > 2);
}

/// Userdata are made without a protected call while the node is well under its memory limit
/// (a patch of the vendored mlua). Near the limit the protected call stays: making them fails
/// with a memory error now and then, never with an abort, and Lua's own allocations still fail.
#[test]
fn userdata_made_near_the_memory_limit_fail_cleanly() {
    struct Small(#[allow(dead_code)] [u64; 4]);
    impl mlua::UserData for Small {}
    let lua = mlua::Lua::new();
    let limit = lua.used_memory() + (512 << 10);
    lua.set_memory_limit(limit).unwrap();
    for i in 0..1000u64 {
        drop(
            lua.create_userdata(Small([i; 4]))
                .expect("well under the limit"),
        );
    }
    let err = lua
        .load("t = {} for i = 1, 1e9 do t[i] = string.rep('x', 200) .. i end")
        .exec()
        .unwrap_err();
    assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
    let mut failed = 0;
    for i in 0..5_000u64 {
        match lua.create_userdata(Small([i; 4])) {
            Ok(ud) => drop(ud),
            Err(mlua::Error::MemoryError(_)) => failed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failed > 0, "at the limit, some userdata fail");
    let err = lua
        .load("t[#t + 1] = string.rep('y', 4096)")
        .exec()
        .unwrap_err();
    assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
}
