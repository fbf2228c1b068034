//! Lua-level tests of the Tier-2 modules: errors, payload, env, uuid, hash, base64, yaml, json
//! schema validation. Each app boots through `boot::boot` on a node with a virtual clock.

use crate::entries::Entry;
use crate::node::NodeConfig;
use crate::value::{Table, Value};
use crate::Node;

const MODS: &[&str] = &[
    "io", "time", "json", "env", "uuid", "hash", "base64", "yaml",
];

fn entry(id: &str, kind: &str, data: Table) -> Entry {
    let (ns, name) = crate::entries::parse_id(id);
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

fn main_entry(src: &str) -> Entry {
    let mods = Table {
        array: MODS.iter().map(|m| Value::from(*m)).collect(),
        map: vec![],
    };
    entry(
        "t:main",
        "process.lua",
        Table::default()
            .with("source", Value::from(src))
            .with("method", Value::from("main"))
            .with("modules", Value::table(mods)),
    )
}

/// Boots `extra` plus `t:main` (running `src`) and returns (exit code, stdout).
fn run_with(src: &str, extra: Vec<Entry>, seed: u64, os: Vec<(String, String)>) -> (i32, String) {
    let cfg = NodeConfig {
        seed,
        wall_epoch_ns: 1_700_000_000_000_000_000,
        env_os: os,
        ..Default::default()
    };
    let mut entries = extra;
    entries.push(entry("t:term", "terminal.host", Table::default()));
    entries.push(main_entry(src));
    let (mut node, _) = super::tests_support::boot(cfg, entries);
    // Stands in for the world: every command succeeds.
    super::tests_support::drive(
        &mut node,
        &mut |_| Some(Ok(Value::Bool(true))),
        &mut |_, _| {},
    )
}

fn run(src: &str) -> String {
    let (code, out) = run_with(src, vec![], 7, vec![]);
    assert_eq!(code, 0, "{out}");
    out
}

fn wrap(body: &str) -> String {
    format!(
        "local io = require('io')\nlocal function p(...) io.print(...) end\n\
         return {{ main = function()\n{body}\nreturn 0 end }}"
    )
}

#[test]
fn errors_new_wrap_is_and_tostring() {
    let out = run(&wrap(
        r#"
        local e = errors.new({message = "gone", kind = errors.NOT_FOUND, retryable = false,
                              details = {id = 4}})
        local w = errors.wrap(e, "loading user")
        p("kind", w:kind(), "msg", w:message(), "retry", tostring(w:retryable()),
          "detail", w:details().id)
        p("str", tostring(w))
        p("concat", "x: " .. w)
        p("is", errors.is(w, errors.NOT_FOUND), errors.is(w, errors.INVALID), errors.is("s", ""))
        local plain = errors.new("plain")
        p("plain", plain:kind() == "", tostring(plain:retryable()), tostring(plain:details()))
        p("empty details", tostring(errors.new({message = "m", details = {}}):details()))
        p("wrap string", errors.wrap("low", "high"):message(), tostring(errors.wrap("low", "high")))
        p("wrap nil", tostring(errors.wrap(nil, "ctx")))
        p("stack", tostring(errors.call_stack(e)))
        local ok, got = pcall(error, e)
        p("raised", ok, errors.is(got, errors.NOT_FOUND))
        local c = errors.new({message = "m", kind = "QuotaExceeded"})
        local nf = errors.new({message = "m", kind = "NotFound"})
        p("custom", c:kind(), errors.is(c, "QuotaExceeded"), errors.is(c, errors.INTERNAL),
          errors.is(nf, errors.NOT_FOUND), errors.NOT_FOUND, errors.UNKNOWN == "")
    "#,
    ));
    assert!(
        out.contains("kind\tNotFound\tmsg\tgone\tretry\tfalse\tdetail\t4"),
        "{out}"
    );
    assert!(out.contains("str\tloading user: gone"), "{out}");
    assert!(out.contains("concat\tx: loading user: gone"), "{out}");
    assert!(out.contains("is\ttrue\tfalse\tfalse"), "{out}");
    assert!(out.contains("plain\ttrue\tnil\tnil"), "{out}");
    assert!(out.contains("empty details\tnil"), "{out}");
    assert!(out.contains("wrap string\tlow\thigh: low"), "{out}");
    assert!(out.contains("wrap nil\tnil"), "{out}");
    assert!(out.contains("raised\tfalse\ttrue"), "{out}");
    assert!(
        out.contains("custom\tQuotaExceeded\ttrue\tfalse\ttrue\tNotFound\ttrue"),
        "{out}"
    );
}

#[test]
fn payload_formats_and_transcoding() {
    let out = run(&wrap(
        r#"
        local pl = payload.new({name = "ann", n = 3})
        p("fmt", pl:get_format(), payload.format.JSON, payload.format.LUA)
        local j, err = pl:transcode(payload.format.JSON)
        p("json", j:get_format(), err == nil, j:data().name, j:unmarshal().n)
        local y = j:transcode(payload.format.YAML)
        p("yaml", y:get_format(), y:data().name)
        local back = y:transcode(payload.format.LUA)
        p("lua", back:data().n)
        local s = payload.new(42):transcode(payload.format.STRING)
        p("string", s:data(), type(s:data()))
        local bad = payload.new("x"):transcode("application/x-nope")
        local _, terr = payload.new("x"):transcode("application/x-nope")
        p("bad", tostring(bad), terr:kind())
        local broken = payload.new("{oops"):transcode(payload.format.STRING)
        p("err fmt", payload.new(errors.new("e")):get_format())
    "#,
    ));
    assert!(out.contains("fmt\tlua/any\tjson/plain\tlua/any"), "{out}");
    assert!(out.contains("json\tjson/plain\ttrue\tann\t3"), "{out}");
    assert!(out.contains("yaml\tyaml/plain\tann"), "{out}");
    assert!(out.contains("lua\t3"), "{out}");
    assert!(out.contains("string\t42\tstring"), "{out}");
    assert!(out.contains("bad\tnil\tInternal"), "{out}");
    assert!(out.contains("err fmt\tgolang/error"), "{out}");
}

#[test]
fn hash_digests_hmac_fnv_and_errors() {
    let out = run(&wrap(
        r#"
        local hash = require("hash")
        p("md5", hash.md5("abc"))
        p("sha1", hash.sha1("abc"))
        p("sha256", hash.sha256("abc"))
        p("sha512len", #hash.sha512("abc"), #hash.sha256("abc", true))
        p("hmac", hash.hmac_sha256("The quick brown fox jumps over the lazy dog", "key"))
        p("fnv32", string.format("%08x", hash.fnv32("a")))
        local v, err = hash.md5(12)
        p("bad", tostring(v), err:kind())
        local v2, err2 = hash.hmac_sha1("x", nil)
        p("badkey", tostring(v2), err2:kind())
    "#,
    ));
    assert!(
        out.contains("md5\t900150983cd24fb0d6963f7d28e17f72"),
        "{out}"
    );
    assert!(
        out.contains("sha1\ta9993e364706816aba3e25717850c26c9cd0d89d"),
        "{out}"
    );
    assert!(
        out.contains("sha256\tba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        "{out}"
    );
    assert!(out.contains("sha512len\t128\t32"), "{out}");
    assert!(
        out.contains("hmac\tf7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"),
        "{out}"
    );
    assert!(out.contains("fnv32\te40c292c"), "{out}");
    assert!(out.contains("bad\tnil\tInvalid"), "{out}");
    assert!(out.contains("badkey\tnil\tInvalid"), "{out}");
}

#[test]
fn base64_and_yaml() {
    let out = run(&wrap(
        r#"
        local base64, yaml = require("base64"), require("yaml")
        p("b64", base64.encode("hello?"), base64.decode("aGVsbG8/"), base64.encode("") == "")
        local _, e1 = base64.decode("***")
        local _, e2 = base64.encode({})
        p("b64err", e1:kind(), e2:kind())
        local text = yaml.encode({name = "x", id = 1, tags = {"a", "b"}, sub = {z = true, a = 1.5}},
                                 {field_order = {"id", "name"}})
        io.write(text)
        local back = yaml.decode(text)
        p("round", back.id, back.name, back.tags[2], back.sub.z, back.sub.a)
        local _, e3 = yaml.encode("str")
        local _, e4 = yaml.decode("")
        local _, e5 = yaml.decode("a: [1, 2")
        local _, e6 = yaml.decode(5)
        p("yamlerr", e3:kind(), e4:kind(), e5:kind(), e6:kind())
    "#,
    ));
    assert!(out.contains("b64\taGVsbG8/\thello?\ttrue"), "{out}");
    assert!(out.contains("b64err\tInvalid\tInvalid"), "{out}");
    assert!(
        out.contains("id: 1\nname: x\nsub:\n  a: 1.5\n  z: true\ntags:\n- a\n- b\n"),
        "{out}"
    );
    assert!(out.contains("round\t1\tx\tb\ttrue\t1.5"), "{out}");
    assert!(
        out.contains("yamlerr\tInvalid\tInvalid\tInternal\tInvalid"),
        "{out}"
    );
}

#[test]
fn json_schema_validation() {
    let out = run(&wrap(
        r#"
        local json = require("json")
        local schema = {type = "object", required = {"name"},
          properties = {name = {type = "string", minLength = 2, pattern = "^[a-z]+$"},
                        age = {type = "integer", minimum = 0, maximum = 150},
                        tags = {type = "array", items = {type = "string", enum = {"a", "b"}}}}}
        p("ok", json.validate(schema, {name = "ann", age = 30, tags = {"a"}}))
        local function why(...) local ok, e = ... ; return tostring(ok), e and e:kind(), e and e:message() end
        p("missing", why(json.validate(schema, {age = 3})))
        p("range", why(json.validate(schema, {name = "ann", age = 200})))
        p("pattern", why(json.validate(schema, {name = "Ann"})))
        p("enum", why(json.validate(schema, {name = "ann", tags = {"c"}})))
        p("str ok", json.validate_string('{"type":"array","maxItems":2}', "[1,2]"))
        p("str bad", why(json.validate_string('{"type":"array","maxItems":2}', "[1,2,3]")))
        p("bad json", why(json.validate_string(schema, "{")))
    "#,
    ));
    assert!(out.contains("ok\ttrue"), "{out}");
    assert!(
        out.contains("missing\tfalse\tInvalid\t/: missing required property 'name'"),
        "{out}"
    );
    assert!(out.contains("range\tfalse\tInvalid\t/age:"), "{out}");
    assert!(
        out.contains("pattern\tfalse\tInvalid\t/name: string does not match"),
        "{out}"
    );
    assert!(out.contains("enum\tfalse\tInvalid\t/tags/0:"), "{out}");
    assert!(out.contains("str ok\ttrue"), "{out}");
    assert!(out.contains("str bad\tfalse\tInvalid"), "{out}");
    assert!(out.contains("bad json\tfalse\tInvalid"), "{out}");
}

const UUID_SRC: &str = r#"
    local uuid = require("uuid")
    local a = uuid.v4()
    local b = uuid.v4()
    p("v4", a, b)
    p("ver", uuid.version(a), uuid.variant(a), uuid.validate(a), uuid.validate(5), uuid.validate("no"))
    local v7 = uuid.v7()
    p("v7", uuid.version(v7), math.floor(uuid.parse(v7).timestamp))
    local v1 = uuid.v1()
    local info = uuid.parse(v1)
    p("v1", uuid.version(v1), math.floor(info.timestamp), #info.node)
    p("v5", uuid.v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"))
    p("v3", uuid.v3("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"))
    p("fmt", uuid.format(a, "simple") == a:gsub("-", ""), uuid.format(a, "urn") == "urn:uuid:" .. a)
    local _, e1 = uuid.version("zzz")
    local _, e2 = uuid.v5("bad-ns", "x")
    local _, e3 = uuid.format(a, "weird")
    p("errs", e1:kind(), e2:kind(), e3:kind())
"#;

#[test]
fn uuid_versions_parse_and_errors() {
    let out = run(&wrap(UUID_SRC));
    assert!(out.contains("ver\t4\tRFC4122\ttrue\tfalse\tfalse"), "{out}");
    assert!(out.contains("v7\t7\t1700000000"), "{out}");
    assert!(out.contains("v1\t1\t1700000000\t17"), "{out}");
    assert!(
        out.contains("v5\t886313e1-3b8a-5372-9b90-0c9aee199e5d"),
        "{out}"
    );
    assert!(
        out.contains("v3\t6fa459ea-ee8a-3ca4-894e-db77e160355e"),
        "{out}"
    );
    assert!(out.contains("fmt\ttrue\ttrue"), "{out}");
    assert!(out.contains("errs\tInvalid\tInvalid\tInvalid"), "{out}");
}

#[test]
fn uuid_v4_is_seeded_by_the_node() {
    let v4 = |seed| {
        let (_, out) = run_with(&wrap(UUID_SRC), vec![], seed, vec![]);
        out.lines()
            .find(|l| l.starts_with("v4"))
            .unwrap()
            .to_string()
    };
    let a = v4(11);
    assert_eq!(a, v4(11), "same seed, same uuids");
    assert_ne!(a, v4(12), "another seed, other uuids");
    let parts: Vec<&str> = a.split('\t').collect();
    assert_ne!(parts[1], parts[2], "two draws in one process differ");
}

fn env_entries() -> Vec<Entry> {
    let strs = |xs: &[&str]| Table {
        array: xs.iter().map(|s| Value::from(*s)).collect(),
        map: vec![],
    };
    let var = |id: &str, name: &str, storage: &str, extra: Table| {
        let mut d = extra
            .with("variable", Value::from(name))
            .with("storage", Value::from(storage));
        d.map.sort_by_key(|a| a.0.to_display());
        entry(id, "env.variable", d)
    };
    vec![
        entry("t:os", "env.storage.os", Table::default()),
        entry("t:mem", "env.storage.memory", Table::default()),
        entry(
            "t:static",
            "env.storage.static",
            Table::default().with(
                "values",
                Value::table(Table::default().with("GREETING", Value::from("hi"))),
            ),
        ),
        entry(
            "t:router",
            "env.storage.router",
            Table::default().with("storages", Value::table(strs(&["t:mem", "t:os"]))),
        ),
        var("t:home", "HOME_DIR", "t:os", Table::default()),
        var("t:greet", "GREETING", "t:static", Table::default()),
        var(
            "t:port",
            "PORT",
            "t:router",
            Table::default().with("default", Value::from("8080")),
        ),
        var(
            "t:locked",
            "LOCKED",
            "t:mem",
            Table::default().with("readonly", Value::Bool(true)),
        ),
        entry(
            "t:cfg",
            "registry.entry",
            Table::default().with("url", Value::from("http://${env:GREETING}:${env:PORT}/")),
        ),
    ]
}

#[test]
fn env_storages_variables_and_interpolation() {
    let src = wrap(
        r#"
        local env = require("env")
        p("os", env.get("HOME_DIR"))
        p("static", env.get("GREETING"), env.get("t:greet"))
        p("default", env.get("PORT"))
        p("set", env.set("PORT", "9000"), env.get("PORT"))
        local _, e1 = env.get("NOPE")
        local _, e2 = env.get("")
        local _, e3 = env.set("GREETING", "x")
        local _, e4 = env.set("LOCKED", "x")
        local _, e5 = env.get(5)
        p("errs", e1:kind(), e2:kind(), e3:kind(), e4:kind(), e5:kind())
        local all = env.get_all()
        p("all", all.GREETING, all.PORT, all.HOME_DIR)
    "#,
    );
    let os = vec![("HOME_DIR".to_string(), "/home/x".to_string())];
    let (code, out) = run_with(&src, env_entries(), 7, os);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("os\t/home/x"), "{out}");
    assert!(out.contains("static\thi\thi"), "{out}");
    assert!(out.contains("default\t8080"), "{out}");
    assert!(out.contains("set\ttrue\t9000"), "{out}");
    assert!(
        out.contains("errs\tNotFound\tInvalid\tPermissionDenied\tPermissionDenied\tInvalid"),
        "{out}"
    );
    assert!(out.contains("all\thi\t9000\t/home/x"), "{out}");
}

#[test]
fn env_interpolation_at_boot() {
    let mut es = env_entries();
    es.push(entry(
        "t:other",
        "registry.entry",
        Table::default().with("x", Value::from("${env:MISSING}!")),
    ));
    let built = Node::builder(NodeConfig::default())
        .entries(es)
        .build(None)
        .unwrap();
    let (report, c) = (built.report, built.node.core.borrow().entries.clone());
    assert_eq!(
        c["t:cfg"].data.get("url").and_then(Value::as_str),
        Some("http://hi:8080/")
    );
    assert_eq!(
        c["t:other"].data.get("x").and_then(Value::as_str),
        Some("!")
    );
    assert!(
        report.warnings.iter().any(|w| w.contains("MISSING")),
        "{:?}",
        report.warnings
    );
}
