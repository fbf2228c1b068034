//! Lua-level tests of the `registry` module on a booted node whose world answers registry writes
//! (success, or an injected failure).

use crate::entries::Entry;
use crate::node::NodeConfig;
use crate::value::{ErrorValue, Table, Value};
use crate::world::WorldCommand;

fn entry(id: &str, kind: &str, data: Table, meta: Table) -> Entry {
    let (namespace, name) = crate::entries::parse_id(id);
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: kind.into(),
        data,
        meta,
        file: "<test>".into(),
        ..Default::default()
    }
}

fn auto() -> Value {
    Value::table(Table::default().with("auto_start", Value::Bool(true)))
}

fn mods(ms: &[&str]) -> Value {
    Value::table(Table {
        array: ms.iter().map(|m| Value::from(*m)).collect(),
        map: vec![],
    })
}

/// Boots an app with `t:main` (given source) on a terminal host plus `extra` entries; runs it.
/// `fail_writes`: the world refuses every registry write. Returns (exit code, stdout, writes).
fn run_app(main: &str, extra: Vec<Entry>, fail_writes: bool) -> (i32, String, Vec<i64>) {
    let cfg = NodeConfig {
        seed: 3,
        step_budget: 1000,
        ..Default::default()
    };
    let mut entries = vec![
        entry(
            "t:term",
            "terminal.host",
            Table::default(),
            Table::default(),
        ),
        entry(
            "t:host",
            "process.host",
            Table::default().with("lifecycle", auto()),
            Table::default(),
        ),
        entry(
            "t:main",
            "process.lua",
            Table::default()
                .with("source", Value::from(main))
                .with("method", Value::from("main"))
                .with("modules", mods(&["io", "registry", "time", "events"])),
            Table::default(),
        ),
    ];
    entries.extend(extra);
    let (mut node, _) = super::tests_support::boot(cfg, entries);
    let mut writes = Vec::new();
    let mut world = |cmd: WorldCommand| {
        let v = match cmd {
            WorldCommand::RegistryHead { version } => return Some(Ok(Value::Int(version as i64))),
            WorldCommand::RegistryCommit { version, .. } => version as i64,
            _ => return None,
        };
        Some(if fail_writes {
            Err(ErrorValue::new("Internal", "disk full"))
        } else {
            writes.push(v);
            Ok(Value::Int(v))
        })
    };
    let (code, out) = super::tests_support::drive(&mut node, &mut world, &mut |_, _| {});
    (code, out, writes)
}

fn tool(id: &str, ty: &str) -> Entry {
    entry(
        id,
        "registry.entry",
        Table::default().with("x", Value::Int(1)),
        Table::default().with("type", Value::from(ty)),
    )
}

#[test]
fn get_find_parse_id_and_versions() {
    let main = r#"
        local io, registry = require("io"), require("registry")
        return { main = function()
            local e, err = registry.get("app:calc")
            io.print("get", e.id, e.kind, e.meta.type, e.data.x)
            local _, nf = registry.get("app:none")
            io.print("missing", nf:kind())
            io.print("find meta", #registry.find({["meta.type"] = "tool"}))
            io.print("find kind", #registry.find({[".kind"] = "registry.entry"}))
            io.print("quirk", #registry.find({kind = "nothing"}))
            local p = registry.parse_id("a.b:c:d")
            local q = registry.parse_id("bare")
            io.print("parse", p.ns, p.name, q.ns == "", q.name)
            local v = registry.current_version()
            io.print("version", v:id(), v:string(), tostring(v), v:previous(), v:next())
            local snap = registry.snapshot()
            io.print("snap", tostring(snap):find("Snapshot") ~= nil, #snap:entries(), #snap:namespace("app"), snap:version():id())
            local _, bad = registry.snapshot_at(99)
            io.print("snapshot_at missing", bad:kind())
            return 0
        end }"#;
    let (code, out, _) = run_app(
        main,
        vec![tool("app:calc", "tool"), tool("app:other", "data")],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("get\tapp:calc\tregistry.entry\ttool\t1"),
        "{out}"
    );
    assert!(out.contains("missing\tNotFound"), "{out}");
    assert!(out.contains("find meta\t1"), "{out}");
    assert!(out.contains("find kind\t2"), "{out}");
    assert!(
        out.contains("quirk\t5"),
        "every entry matches an ignored key: {out}"
    );
    assert!(out.contains("parse\ta.b\tc:d\ttrue\tbare"), "{out}");
    assert!(out.contains("version\t1\t1\tVersion(1)\tnil\tnil"), "{out}");
    assert!(out.contains("snap\ttrue\t5\t2\t1"), "{out}");
    assert!(out.contains("snapshot_at missing\tNotFound"), "{out}");
}

#[test]
fn changes_apply_history_and_rollback() {
    let main = r#"
        local io, registry = require("io"), require("registry")
        return { main = function()
            local snap = registry.snapshot()
            local ch = snap:changes()
            local same = ch:create({id = "app:new", kind = "registry.entry", meta = {type = "tool"}, data = {v = 1}})
            io.print("chain", same == ch)
            ch:update({id = {ns = "app", name = "calc"}, kind = "registry.entry", data = {x = 2}})
            ch:delete("app:other")
            local ops = ch:ops()
            io.print("ops", #ops, ops[1].kind, ops[2].kind, ops[3].kind, ops[3].entry.id)
            local _, malformed = snap:changes():create({kind = "x"})
            io.print("malformed", malformed:kind())
            local _, empty = snap:changes():apply()
            io.print("empty", empty:kind())
            local v, err = ch:apply()
            io.print("applied", v:id(), err)
            io.print("live", registry.get("app:new").data.v, registry.get("app:calc").data.x, registry.get("app:other"))
            io.print("prev", v:previous():id(), registry.current_version():id())
            local _, dup = registry.snapshot():changes():create({id = "app:new", kind = "registry.entry"}):apply()
            io.print("dup", dup:kind(), registry.current_version():id())
            local old = registry.snapshot_at(1)
            io.print("old", old:get("app:other").id, #old:find({["meta.type"] = "tool"}))
            local h = registry.history()
            io.print("history", #h:versions(), h:get_version(2):id(), #h:snapshot_at(2):entries())
            local ok, rerr = registry.apply_version(1)
            io.print("rollback", ok, rerr, registry.current_version():id(), registry.get("app:other").id, registry.get("app:new"))
            io.print("v3 == v1", #registry.snapshot():entries() == #old:entries(), registry.get("app:calc").data.x)
            local v3 = registry.snapshot():changes():create({id = "app:after", kind = "registry.entry"}):apply()
            io.print("after rollback", v3:id(), registry.get("app:new"), registry.get("app:after").id, registry.get("app:other").id)
            local bad, berr = registry.apply_version(42)
            io.print("rollback missing", bad, berr:kind())
            local d = registry.build_delta(old:entries(), registry.snapshot_at(2):entries())
            local kinds = {}
            for _, op in ipairs(d) do kinds[#kinds + 1] = op.kind .. ":" .. op.entry.id end
            table.sort(kinds)
            io.print("delta", table.concat(kinds, " "))
            return 0
        end }"#;
    let (code, out, writes) = run_app(
        main,
        vec![tool("app:calc", "tool"), tool("app:other", "data")],
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("chain\ttrue"), "{out}");
    assert!(
        out.contains("ops\t3\tentry.create\tentry.update\tentry.delete\tapp:other"),
        "{out}"
    );
    assert!(out.contains("malformed\tInvalid"), "{out}");
    assert!(out.contains("empty\tInvalid"), "{out}");
    assert!(out.contains("applied\t2\tnil"), "{out}");
    assert!(out.contains("live\t1\t2\tnil"), "{out}");
    assert!(out.contains("prev\t1\t2"), "{out}");
    assert!(out.contains("dup\tAlreadyExists\t2"), "{out}");
    assert!(out.contains("old\tapp:other\t1"), "{out}");
    assert!(out.contains("history\t2\t2\t5"), "{out}");
    // apply_version moves the current version back (Wippy): no new version is made.
    assert!(
        out.contains("rollback\ttrue\tnil\t1\tapp:other\tnil"),
        "{out}"
    );
    // The next change is numbered after the newest and built on the current (rolled-back) state.
    assert!(
        out.contains("after rollback\t3\tnil\tapp:after\tapp:other"),
        "{out}"
    );
    assert!(out.contains("v3 == v1\ttrue\t1"), "{out}");
    assert!(out.contains("rollback missing\tfalse\tNotFound"), "{out}");
    assert!(
        out.contains("delta\tentry.create:app:new entry.delete:app:other entry.update:app:calc"),
        "{out}"
    );
    assert_eq!(
        writes,
        vec![2, 3],
        "each committed version was written once"
    );
}

#[test]
fn failed_world_write_changes_nothing() {
    let main = r#"
        local io, registry = require("io"), require("registry")
        return { main = function()
            local v, err = registry.snapshot():changes():create({id = "app:new", kind = "registry.entry"}):apply()
            io.print("apply", v, err:kind(), err:message())
            io.print("after", registry.current_version():id(), registry.get("app:new"))
            return 0
        end }"#;
    let (code, out, _) = run_app(main, vec![], true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("apply\tnil\tInternal\tdisk full"), "{out}");
    assert!(out.contains("after\t1\tnil"), "{out}");
}

#[test]
fn live_changes_start_stop_and_compile() {
    let worker = r#"
        local time = require("time")
        return { main = function(tag)
            process.registry.register("worker")
            while true do
                local m = process.inbox():receive()
                process.send(m:payload():data(), "pong", "pong from " .. tag)
            end
        end }"#;
    let main = r#"
        local io, registry, time = require("io"), require("registry"), require("time")
        local WORKER = ...
        return { main = function()
            local function ping()
                local ok = process.send("worker", "ping", process.pid())
                if not ok then return "no worker" end
                local ch = process.inbox()
                local r = channel.select({ch:case_receive(), time.after("100ms"):case_receive()})
                if r.channel == ch then return r.value:payload():data() end
                return "timeout"
            end
            local _, cerr = registry.snapshot():changes():create({id = "app:broken", kind = "process.lua",
                data = {source = "local function (", method = "main"}}):apply()
            io.print("compile error", cerr:kind(), registry.get("app:broken"), registry.current_version():id())
            local v, err = registry.snapshot():changes()
                :create({id = "app:worker", kind = "process.lua", data = {source = WORKER_SRC, method = "main", modules = {"time"}}})
                :create({id = "app:svc", kind = "process.service",
                    data = {process = "app:worker", host = "t:host", input = {"v1"}, lifecycle = {auto_start = true}}})
                :apply()
            io.print("created", v and v:id(), err)
            time.sleep("10ms")
            io.print("ping1", ping())
            local v2, err2 = registry.snapshot():changes():delete("app:svc"):apply()
            io.print("deleted", v2 and v2:id(), err2)
            time.sleep("10ms")
            io.print("ping2", ping())
            registry.apply_version(v:id())
            time.sleep("10ms")
            io.print("ping3", ping())
            return 0
        end }"#;
    // Rust's Debug form of the source is a valid Lua string literal.
    let main = main.replace("WORKER_SRC", &format!("{worker:?}"));
    let (code, out, _) = run_app(&main, vec![], false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("compile error\tInvalid\tnil\t1"), "{out}");
    assert!(out.contains("created\t2\tnil"), "{out}");
    assert!(out.contains("ping1\tpong from v1"), "{out}");
    assert!(out.contains("deleted\t3\tnil"), "{out}");
    assert!(out.contains("ping2\tno worker"), "{out}");
    assert!(
        out.contains("ping3\tpong from v1"),
        "rollback restarts the service: {out}"
    );
}

#[test]
fn registry_changes_are_published_on_the_event_bus() {
    let main = r#"
        local io, registry, events = require("io"), require("registry"), require("events")
        return { main = function()
            local sub = events.subscribe("registry")
            local ch = sub:channel()
            registry.snapshot():changes():create({id = "app:note", kind = "registry.entry", data = {text = "a"}}):apply()
            registry.snapshot():changes():update({id = "app:note", kind = "registry.entry", data = {text = "b"}}):apply()
            registry.snapshot():changes():delete("app:note"):apply()
            for _ = 1, 3 do
                local ev = ch:receive()
                io.print(ev.system, ev.kind, ev.path, ev.data.kind)
            end
            return 0
        end }"#;
    let (code, out, _) = run_app(main, vec![], false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("registry\tentry.create\tapp:note\tregistry.entry\nregistry\tentry.update\tapp:note\tregistry.entry\nregistry\tentry.delete\tapp:note\tregistry.entry"),
        "{out}"
    );
}
