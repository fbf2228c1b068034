//! Owns turning Wippy definition files (`_index.yaml`, `*.yml`, `*.json`) into registry entries, with errors naming file, line and entry.
//! Must not read files or the environment: the caller passes texts in and resolves `file://` paths through a callback.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::value::{Table, Value};

/// One registry entry as declared in a definition file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Entry {
    /// `namespace:name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub kind: EntryKind,
    /// File-level `meta` merged with the entry's own (entry keys win).
    pub meta: Table,
    /// Explicit `data:` map, or every key other than `name`, `kind`, `meta`, `data`.
    pub data: Table,
    /// The definition file, as the caller named it.
    pub file: String,
    /// 1-based line where the entry starts, when the format gives one (YAML does, JSON does not).
    pub line: Option<usize>,
    /// Resolved path of a `source: file://...` field, so script errors can point at the real file.
    pub source_file: Option<String>,
}

/// Declares `EntryKind`'s named variants with their Wippy kind strings, once.
macro_rules! entry_kinds {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// An entry's `kind:`. Kinds Weft knows by name have a variant; any other kind (a Wippy
        /// kind of a later tier, or a typo) is kept as `Other` with its text, so it still prints
        /// exactly as written and boot can warn about it or refuse it naming the entry.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EntryKind {
            $($(#[$doc])* $variant,)*
            Other(String),
        }

        impl EntryKind {
            /// The kind as written in a definition file.
            pub fn as_str(&self) -> &str {
                match self {
                    $(EntryKind::$variant => $text,)*
                    EntryKind::Other(s) => s,
                }
            }

            fn named(text: &str) -> Option<EntryKind> {
                match text {
                    $($text => Some(EntryKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

entry_kinds! {
    ProcessLua = "process.lua",
    FunctionLua = "function.lua",
    LibraryLua = "library.lua",
    ProcessHost = "process.host",
    ProcessService = "process.service",
    TerminalHost = "terminal.host",
    RegistryEntry = "registry.entry",
    EnvStorageOs = "env.storage.os",
    EnvStorageFile = "env.storage.file",
    EnvStorageMemory = "env.storage.memory",
    EnvStorageStatic = "env.storage.static",
    EnvStorageRouter = "env.storage.router",
    EnvVariable = "env.variable",
    DbSqlSqlite = "db.sql.sqlite",
    StoreMemory = "store.memory",
    StoreSql = "store.sql",
    /// Rust test processes (never from a definition file: boot refuses it).
    Native = "native",
    /// Wippy's namespace dependency (a later tier; the registry reads its requirements).
    NsDependency = "ns.dependency",
}

impl EntryKind {
    /// Whether boot runs entries of this kind (the rest warn or fail, see `boot`).
    pub fn is_supported(&self) -> bool {
        !matches!(
            self,
            EntryKind::Other(_) | EntryKind::Native | EntryKind::NsDependency
        )
    }

    /// `process.*`, whatever the runtime (`process.lua`, `process.host`, later `process.wasm`).
    pub fn is_process(&self) -> bool {
        self.as_str().starts_with("process.")
    }

    /// Entries whose `source:` the Lua runtime compiles.
    pub fn is_lua(&self) -> bool {
        matches!(
            self,
            EntryKind::ProcessLua | EntryKind::FunctionLua | EntryKind::LibraryLua
        )
    }

    /// Hosts processes run on.
    pub fn is_host(&self) -> bool {
        matches!(self, EntryKind::ProcessHost | EntryKind::TerminalHost)
    }

    /// Key-value stores (`store.memory`, `store.sql`).
    pub fn is_store(&self) -> bool {
        matches!(self, EntryKind::StoreMemory | EntryKind::StoreSql)
    }

    /// `env.storage.*` and `env.variable`.
    pub fn is_env(&self) -> bool {
        matches!(
            self,
            EntryKind::EnvStorageOs
                | EntryKind::EnvStorageFile
                | EntryKind::EnvStorageMemory
                | EntryKind::EnvStorageStatic
                | EntryKind::EnvStorageRouter
                | EntryKind::EnvVariable
        )
    }
}

impl Default for EntryKind {
    /// The empty kind (an entry not filled in yet); prints as "".
    fn default() -> Self {
        EntryKind::Other(String::new())
    }
}

impl From<&str> for EntryKind {
    fn from(text: &str) -> Self {
        EntryKind::named(text).unwrap_or_else(|| EntryKind::Other(text.to_string()))
    }
}

impl From<String> for EntryKind {
    fn from(text: String) -> Self {
        EntryKind::named(&text).unwrap_or(EntryKind::Other(text))
    }
}

impl std::str::FromStr for EntryKind {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(EntryKind::from(text))
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with a definition file (`problem`), located as precisely as the input allows.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The entry id (`ns:name`) when the problem belongs to one entry whose name is known.
    pub entry: Option<String>,
    pub problem: EntryProblem,
}

/// What is wrong with a definition file; `EntryError` says where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryProblem {
    /// Not valid YAML or JSON (`format`): the parser's message without its position.
    Syntax {
        format: &'static str,
        detail: String,
    },
    /// `what` must be `want` (e.g. "a string"), but is `found`.
    WrongType {
        what: String,
        want: &'static str,
        found: &'static str,
    },
    /// A `namespace` that is not dot-separated non-empty parts without ':'.
    InvalidNamespace(String),
    MissingField(String),
    EmptyField(String),
    /// The id was declared before, at `first` (file:line).
    DuplicateId {
        first: String,
    },
    /// A `file://` reference that cannot name a file (empty, or escaping the project root).
    BadFileRef(String),
    /// A `file://` reference the caller could not read.
    Unreadable {
        reference: String,
        resolved: String,
        reason: String,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::Syntax { format, detail } => write!(f, "invalid {format}: {detail}"),
            EntryProblem::WrongType { what, want, found } => {
                write!(f, "{what} must be {want}, found {found}")
            }
            EntryProblem::InvalidNamespace(ns) => write!(
                f,
                "invalid namespace '{ns}': expected dot-separated non-empty parts without ':'"
            ),
            EntryProblem::MissingField(key) => write!(f, "missing required field '{key}'"),
            EntryProblem::EmptyField(key) => write!(f, "'{key}' must not be empty"),
            EntryProblem::DuplicateId { first } => {
                write!(f, "duplicate entry id, first defined at {first}")
            }
            EntryProblem::BadFileRef(m) => f.write_str(m),
            EntryProblem::Unreadable {
                reference,
                resolved,
                reason,
            } => write!(f, "cannot read {reference} ({resolved}): {reason}"),
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prefix = self.file.clone();
        if let Some(line) = self.line {
            prefix.push_str(&format!(":{line}"));
            if let Some(col) = self.column {
                prefix.push_str(&format!(":{col}"));
            }
        }
        if !prefix.is_empty() {
            write!(f, "{prefix}: ")?;
        }
        if let Some(entry) = &self.entry {
            write!(f, "entry '{entry}': ")?;
        }
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for EntryError {}

/// Splits an id on its first `:`; an id without one is a bare name in the empty namespace.
pub fn parse_id(s: &str) -> (String, String) {
    match s.split_once(':') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), s.to_string()),
    }
}

/// Parses one definition file into its entries.
///
/// `path` is the file's path as the caller names it ('/'-separated); `root` is the project
/// root that `file://` references may not escape. A file without a non-empty top-level
/// `namespace` is not a definition file and yields no entries. `resolve` receives the
/// normalised path of each `file://` reference and returns its contents.
pub fn parse_file(
    path: &str,
    text: &str,
    root: &str,
    resolve: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Vec<Entry>, EntryError> {
    let doc = parse_document(path, text)?;
    let Some(doc) = doc else {
        // An index file exists to declare entries: an empty one is a mistake worth naming.
        let name = path.rsplit('/').next().unwrap_or(path);
        if matches!(name, "_index.yaml" | "_index.yml") {
            return Err(EntryError {
                file: path.to_string(),
                line: Some(1),
                column: None,
                entry: None,
                problem: EntryProblem::MissingField("namespace".into()),
            });
        }
        return Ok(Vec::new());
    };
    let mut cx = FileCx {
        path,
        root,
        resolve,
    };
    cx.entries(doc)
}

/// Fails on the first id declared twice, naming both places it was declared.
pub fn check_unique(entries: &[Entry]) -> Result<(), EntryError> {
    let mut seen: std::collections::BTreeMap<&str, &Entry> = std::collections::BTreeMap::new();
    for e in entries {
        if let Some(first) = seen.get(e.id.as_str()) {
            return Err(EntryError {
                file: e.file.clone(),
                line: e.line,
                column: None,
                entry: Some(e.id.clone()),
                problem: EntryProblem::DuplicateId {
                    first: place(&first.file, first.line),
                },
            });
        }
        seen.insert(&e.id, e);
    }
    Ok(())
}

fn place(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Document tree with line numbers.
//
// `Value` has no room for positions, so the file is first read into this tree; positions are
// needed both for entry lines and for pointing at the exact offending field.

#[derive(Clone, Debug)]
struct Node {
    kind: NodeKind,
    /// 1-based; 0 when the format carries no positions.
    line: usize,
}

#[derive(Clone, Debug)]
enum NodeKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(pairs) => pairs
                .iter()
                .rev() // later duplicates win, as when JSON objects repeat a key
                .find(|(k, _)| matches!(&k.kind, NodeKind::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Nil => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Str(_) => "a string",
            NodeKind::Bytes(_) => "binary data",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A node read from YAML: every child goes through `Spanned` so it keeps its line.
struct YamlNode(Node);
/// A node read from JSON, which has no positions to offer.
struct JsonNode(Node);

impl From<YamlNode> for Node {
    fn from(n: YamlNode) -> Node {
        n.0
    }
}
impl From<JsonNode> for Node {
    fn from(n: JsonNode) -> Node {
        n.0
    }
}

/// The node's contents without position; children are read as `C` so they get positions
/// the same way their parent did.
struct Bare<C>(NodeKind, std::marker::PhantomData<C>);

impl<'de, C> Deserialize<'de> for Bare<C>
where
    C: Deserialize<'de> + Into<Node>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor::<C>(std::marker::PhantomData))
            .map(|k| Bare(k, std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Bare<YamlNode>>::deserialize(d)?;
        let line = usize::try_from(s.referenced.line()).unwrap_or(0);
        Ok(YamlNode(Node {
            kind: s.value.0,
            line,
        }))
    }
}

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = Bare::<JsonNode>::deserialize(d)?;
        Ok(JsonNode(Node { kind: b.0, line: 0 }))
    }
}

struct KindVisitor<C>(std::marker::PhantomData<C>);

impl<'de, C> Visitor<'de> for KindVisitor<C>
where
    C: Deserialize<'de> + Into<Node>,
{
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
        // Integers past i64 degrade to floats, as Lua would hold them.
        Ok(i64::try_from(v).map_or(NodeKind::Float(v as f64), NodeKind::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeKind, E> {
        Ok(i64::try_from(v).map_or(NodeKind::Float(v as f64), NodeKind::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        Ok(i64::try_from(v).map_or(NodeKind::Float(v as f64), NodeKind::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeKind, E> {
        Ok(NodeKind::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<NodeKind, E> {
        Ok(NodeKind::Bytes(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Nil)
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<C>()? {
            items.push(item.into());
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<C, C>()? {
            pairs.push((k.into(), v.into()));
        }
        Ok(NodeKind::Map(pairs))
    }
}

/// Reads the whole text into a tree; `None` when it is empty or not a mapping, since such a
/// file cannot be a definition file.
/// Deepest nesting of collections a definition file may use.
const MAX_DEPTH: usize = 24;

fn parse_document(path: &str, text: &str) -> Result<Option<Node>, EntryError> {
    let is_json = path.to_ascii_lowercase().ends_with(".json");
    // Editors on Windows leave a byte-order mark that serde_json would reject.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = if is_json {
        if text.trim().is_empty() {
            return Ok(None);
        }
        match serde_json::from_str::<JsonNode>(text) {
            Ok(n) => n.0,
            Err(e) => {
                let line = (e.line() > 0).then_some(e.line());
                let column = line.and((e.column() > 0).then_some(e.column()));
                return Err(EntryError {
                    file: path.to_string(),
                    line,
                    column,
                    entry: None,
                    problem: EntryProblem::Syntax {
                        format: "JSON",
                        detail: strip_json_location(&e.to_string()),
                    },
                });
            }
        }
    } else {
        let mut opts = serde_saphyr::Options::default();
        // Go's YAML (which Wippy uses) reads `on`/`yes`/`no` as strings, not booleans.
        opts.strict_booleans = true;
        opts.with_snippet = false;
        // `.inf` and `.nan` are floats to Go's YAML too; Lua holds them fine.
        opts.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
        if let Some(b) = opts.budget.as_mut() {
            // Each level of nesting costs tens of kilobytes of stack in the deserializer (in
            // debug builds); definition data is shallow, and this keeps a 2 MiB thread safe.
            b.max_depth = MAX_DEPTH;
        }
        // Only the first document counts, as with Go's yaml.Unmarshal.
        match serde_saphyr::from_str_multiple_with_options::<YamlNode, Vec<YamlNode>>(text, opts) {
            Ok(mut docs) => {
                if docs.is_empty() {
                    return Ok(None);
                }
                docs.swap_remove(0).0
            }
            Err(e) => {
                let loc = e.location();
                let line = loc
                    .map(|l| usize::try_from(l.line()).unwrap_or(0))
                    .filter(|&l| l > 0);
                let column = loc
                    .map(|l| usize::try_from(l.column()).unwrap_or(0))
                    .filter(|&c| c > 0 && line.is_some());
                return Err(EntryError {
                    file: path.to_string(),
                    line,
                    column,
                    entry: None,
                    problem: EntryProblem::Syntax {
                        format: "YAML",
                        detail: yaml_message(&e.to_string()),
                    },
                });
            }
        }
    };
    Ok(matches!(root.kind, NodeKind::Map(_)).then_some(root))
}

/// The parser's message without what the error already carries (position) or what only makes
/// sense to a Rust caller (its option names).
fn yaml_message(s: &str) -> String {
    let mut msg = s.lines().next().unwrap_or("").trim();
    if msg.contains("budget breached: Depth") {
        return format!("nested deeper than {MAX_DEPTH} levels");
    }
    if let Some(rest) = msg.split("budget breached: ").nth(1) {
        // The reader's safety limits, said as a user would: what is too big and what to do.
        let what = rest
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let inside = rest
            .split('{')
            .nth(1)
            .and_then(|r| r.split('}').next())
            .unwrap_or("");
        let count: String = inside.chars().filter(|c| c.is_ascii_digit()).collect();
        let over = count
            .parse::<u64>()
            .map(|n| format!(" (more than {})", n.saturating_sub(1)))
            .unwrap_or_default();
        return match what.as_str() {
            "aliases" | "anchors" => format!(
                "too many YAML {what}{over}: the file may be an alias bomb; write the values out"
            ),
            _ => format!(
                "the file is too large for the YAML reader: too many {what}{over}; split it into \
                 smaller files or move bulk data into a file:// reference"
            ),
        };
    }
    if let Some(i) = msg.rfind(" at line ") {
        if msg[i + 9..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || c.is_ascii_alphabetic())
        {
            msg = &msg[..i];
        }
    }
    if let Some(i) = msg.find(", set DuplicateKeyPolicy") {
        msg = &msg[..i];
    }
    msg.to_string()
}

/// serde_json appends " at line L column C"; the error already carries both.
fn strip_json_location(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// From tree to entries.

/// Keys that describe an entry rather than belong to its data.
const ENTRY_KEYS: &[&str] = &["name", "kind", "meta", "data"];
/// Keys that describe the file; in the single-entry form they sit beside the entry's fields.
const FILE_KEYS: &[&str] = &["version", "namespace"];

struct FileCx<'a> {
    path: &'a str,
    root: &'a str,
    resolve: &'a mut dyn FnMut(&str) -> Result<String, String>,
}

impl FileCx<'_> {
    fn err(&self, node: Option<&Node>, entry: Option<&str>, problem: EntryProblem) -> EntryError {
        EntryError {
            file: self.path.to_string(),
            line: node.and_then(Node::line),
            column: None,
            entry: entry.map(str::to_string),
            problem,
        }
    }

    /// `what` (the node `n`) is not `want`.
    fn wrong_type(
        &self,
        n: &Node,
        entry: Option<&str>,
        what: impl Into<String>,
        want: &'static str,
    ) -> EntryError {
        let problem = EntryProblem::WrongType {
            what: what.into(),
            want,
            found: n.type_name(),
        };
        self.err(Some(n), entry, problem)
    }

    fn entries(&mut self, doc: Node) -> Result<Vec<Entry>, EntryError> {
        // A file that declares entries must say their namespace; other YAML (data, config)
        // without one is not a definition file and is left alone.
        let declares =
            doc.get("entries").is_some() || doc.get("name").is_some() || doc.get("kind").is_some();
        let missing = || EntryProblem::MissingField("namespace".into());
        let namespace = match doc.get("namespace") {
            None if declares => return Err(self.err(Some(&doc), None, missing())),
            None => return Ok(Vec::new()),
            Some(n) => match &n.kind {
                NodeKind::Nil if declares => {
                    return Err(self.err(
                        Some(n),
                        None,
                        EntryProblem::EmptyField("namespace".into()),
                    ))
                }
                NodeKind::Str(s) if declares && s.trim().is_empty() => {
                    return Err(self.err(
                        Some(n),
                        None,
                        EntryProblem::EmptyField("namespace".into()),
                    ))
                }
                NodeKind::Nil => return Ok(Vec::new()),
                NodeKind::Str(s) if s.is_empty() => return Ok(Vec::new()),
                NodeKind::Str(s) => s.clone(),
                _ => return Err(self.wrong_type(n, None, "namespace", "a string")),
            },
        };
        let ns_node = doc.get("namespace");
        if namespace.contains(':') || namespace.split('.').any(|seg| seg.trim().is_empty()) {
            return Err(self.err(ns_node, None, EntryProblem::InvalidNamespace(namespace)));
        }
        if let Some(v) = doc.get("version") {
            if !matches!(
                v.kind,
                NodeKind::Str(_) | NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Nil
            ) {
                return Err(self.wrong_type(v, None, "version", "a scalar"));
            }
        }
        let file_meta = match doc.get("meta") {
            Some(m) => self.meta_table(m, None)?,
            None => Table::default(),
        };

        let mut out = Vec::new();
        match doc.get("entries") {
            Some(list) => match &list.kind {
                NodeKind::Nil => {}
                NodeKind::Seq(items) => {
                    for item in items {
                        out.push(self.entry(item, &namespace, &file_meta, &[])?);
                    }
                }
                _ => return Err(self.wrong_type(list, None, "entries", "a sequence")),
            },
            None => {
                if doc.get("name").is_some() || doc.get("kind").is_some() {
                    // The top-level `meta` is this entry's own, so there is no file meta to merge.
                    out.push(self.entry(&doc, &namespace, &Table::default(), FILE_KEYS)?);
                }
            }
        }
        Ok(out)
    }

    fn entry(
        &mut self,
        node: &Node,
        namespace: &str,
        file_meta: &Table,
        skip: &[&str],
    ) -> Result<Entry, EntryError> {
        let NodeKind::Map(pairs) = &node.kind else {
            return Err(self.wrong_type(node, None, "entry", "a mapping"));
        };
        let name = self.required_str(node, "name", None)?;
        let id = format!("{namespace}:{name}");
        let kind = self.required_str(node, "kind", Some(&id))?;
        // Single-entry files start at the top of the file; their `name` line is the useful one.
        let line = if skip.is_empty() {
            node.line()
        } else {
            node.get("name").and_then(Node::line).or(node.line())
        };

        let mut meta = TableBuilder::from(file_meta.clone());
        if let Some(m) = node.get("meta") {
            for (k, v) in self.meta_table(m, Some(&id))?.map {
                meta.insert(k, v);
            }
        }
        let meta = meta.table;

        let mut source_file = None;
        let explicit = node
            .get("data")
            .filter(|d| !matches!(d.kind, NodeKind::Nil));
        let data = match explicit {
            Some(d) => {
                let NodeKind::Map(dp) = &d.kind else {
                    return Err(self.wrong_type(d, Some(&id), "data", "a mapping"));
                };
                self.data_table(dp, &id, &[], &mut source_file)?
            }
            None => {
                let mut excluded: Vec<&str> = ENTRY_KEYS.to_vec();
                excluded.extend_from_slice(skip);
                self.data_table(pairs, &id, &excluded, &mut source_file)?
            }
        };

        let kind: EntryKind = kind.into();
        if kind.is_lua() {
            self.check_lua_fields(node, explicit, &id)?;
        }
        Ok(Entry {
            id,
            namespace: namespace.to_string(),
            name,
            kind,
            meta,
            data,
            file: self.path.to_string(),
            line,
            source_file,
        })
    }

    /// `modules:` must list module names and `method:` must name a function: anything else
    /// would only fail later, at run time, far from the line that is wrong.
    fn check_lua_fields(
        &self,
        node: &Node,
        data: Option<&Node>,
        id: &str,
    ) -> Result<(), EntryError> {
        let field = |k: &str| data.and_then(|d| d.get(k)).or_else(|| node.get(k));
        if let Some(m) = field("modules") {
            match &m.kind {
                NodeKind::Nil => {}
                NodeKind::Seq(items) => {
                    for it in items {
                        if !matches!(it.kind, NodeKind::Str(_)) {
                            return Err(self.wrong_type(
                                it,
                                Some(id),
                                "each of 'modules'",
                                "a module name (e.g. io, time, sql)",
                            ));
                        }
                    }
                }
                _ => {
                    return Err(self.wrong_type(
                        m,
                        Some(id),
                        "'modules'",
                        "a list of module names (e.g. [io, time])",
                    ))
                }
            }
        }
        if let Some(m) = field("method") {
            if !matches!(m.kind, NodeKind::Str(_) | NodeKind::Nil) {
                return Err(self.wrong_type(m, Some(id), "'method'", "the name of a function"));
            }
        }
        Ok(())
    }

    fn required_str(
        &self,
        node: &Node,
        key: &str,
        entry: Option<&str>,
    ) -> Result<String, EntryError> {
        let Some(v) = node.get(key) else {
            let problem = EntryProblem::MissingField(key.to_string());
            return Err(self.err(Some(node), entry, problem));
        };
        let s = match &v.kind {
            NodeKind::Str(s) => s.clone(),
            // Go's YAML decodes a plain `name: 42` into a string field; keep accepting that.
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Nil => String::new(),
            _ => return Err(self.wrong_type(v, entry, format!("'{key}'"), "a string")),
        };
        if s.trim().is_empty() {
            let problem = EntryProblem::EmptyField(key.to_string());
            return Err(self.err(Some(v), entry, problem));
        }
        Ok(s)
    }

    fn meta_table(&mut self, m: &Node, entry: Option<&str>) -> Result<Table, EntryError> {
        match &m.kind {
            NodeKind::Nil => Ok(Table::default()),
            NodeKind::Map(_) => match self.value(m, entry, false)? {
                Value::Table(t) => Ok(*t),
                _ => Ok(Table::default()),
            },
            _ => Err(self.wrong_type(m, entry, "meta", "a mapping")),
        }
    }

    fn data_table(
        &mut self,
        pairs: &[(Node, Node)],
        id: &str,
        excluded: &[&str],
        source_file: &mut Option<String>,
    ) -> Result<Table, EntryError> {
        let mut t = TableBuilder::default();
        for (k, v) in pairs {
            let key = self.key(k, Some(id))?;
            if excluded.contains(&key.as_str()) {
                continue;
            }
            let value = if key == "source" {
                match &v.kind {
                    NodeKind::Str(s) if s.starts_with(FILE_SCHEME) => {
                        let (resolved, text) = self.load(s, v, id)?;
                        *source_file = Some(resolved);
                        Value::from(text)
                    }
                    _ => self.value(v, Some(id), true)?,
                }
            } else {
                self.value(v, Some(id), true)?
            };
            t.insert(Value::from(key), value);
        }
        Ok(t.table)
    }

    fn key(&self, k: &Node, entry: Option<&str>) -> Result<String, EntryError> {
        match &k.kind {
            NodeKind::Str(s) => Ok(s.clone()),
            NodeKind::Int(i) => Ok(i.to_string()),
            NodeKind::Float(f) => Ok(crate::value::format_float(*f)),
            NodeKind::Bool(b) => Ok(b.to_string()),
            NodeKind::Nil => Ok(String::new()),
            _ => Err(self.wrong_type(k, entry, "mapping keys", "scalars")),
        }
    }

    /// Converts a subtree; with `files`, `file://` strings are replaced by what they name.
    fn value(&mut self, n: &Node, entry: Option<&str>, files: bool) -> Result<Value, EntryError> {
        Ok(match &n.kind {
            NodeKind::Nil => Value::Nil,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::Int(*i),
            NodeKind::Float(f) => Value::Float(*f),
            NodeKind::Str(s) if files && s.starts_with(FILE_SCHEME) => {
                let (_, text) = self.load(s, n, entry.unwrap_or(""))?;
                Value::from(text)
            }
            NodeKind::Str(s) => Value::from(s.as_str()),
            NodeKind::Bytes(b) => Value::Str(b.clone()),
            NodeKind::Seq(items) => {
                let mut t = Table::default();
                for item in items {
                    t.array.push(self.value(item, entry, files)?);
                }
                Value::table(t)
            }
            NodeKind::Map(pairs) => {
                let mut t = TableBuilder::default();
                for (k, v) in pairs {
                    let key = self.key(k, entry)?;
                    let value = self.value(v, entry, files)?;
                    t.insert(Value::from(key), value);
                }
                Value::table(t.table)
            }
        })
    }

    fn load(
        &mut self,
        reference: &str,
        at: &Node,
        id: &str,
    ) -> Result<(String, String), EntryError> {
        let entry = (!id.is_empty()).then_some(id);
        let resolved = resolve_file_ref(self.path, self.root, reference)
            .map_err(|m| self.err(Some(at), entry, EntryProblem::BadFileRef(m)))?;
        match (self.resolve)(&resolved) {
            Ok(text) => Ok((resolved, text)),
            Err(reason) => {
                let problem = EntryProblem::Unreadable {
                    reference: reference.to_string(),
                    resolved,
                    reason,
                };
                Err(self.err(Some(at), entry, problem))
            }
        }
    }
}

/// Builds a string-keyed table where a later key replaces an earlier one in place, so a table
/// never holds a key twice; the index keeps huge mappings from going quadratic.
#[derive(Default)]
struct TableBuilder {
    table: Table,
    index: std::collections::BTreeMap<Vec<u8>, usize>,
}

impl From<Table> for TableBuilder {
    fn from(table: Table) -> Self {
        let index = table
            .map
            .iter()
            .enumerate()
            .filter_map(|(i, (k, _))| match k {
                Value::Str(b) => Some((b.clone(), i)),
                _ => None,
            })
            .collect();
        TableBuilder { table, index }
    }
}

impl TableBuilder {
    fn insert(&mut self, k: Value, v: Value) {
        let Value::Str(bytes) = &k else {
            self.table.map.push((k, v));
            return;
        };
        match self.index.get(bytes) {
            Some(&i) => self.table.map[i].1 = v,
            None => {
                self.index.insert(bytes.clone(), self.table.map.len());
                self.table.map.push((k, v));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `file://` references, as pure string operations on '/'-separated paths.

const FILE_SCHEME: &str = "file://";

/// Turns a `file://` reference in definition file `def_path` into a normalised path,
/// refusing anything that lands outside `root`.
fn resolve_file_ref(def_path: &str, root: &str, reference: &str) -> Result<String, String> {
    let rel = reference.strip_prefix(FILE_SCHEME).unwrap_or(reference);
    if rel.is_empty() {
        return Err(format!("empty file reference '{reference}'"));
    }
    let joined = if rel.starts_with('/') {
        rel.to_string()
    } else {
        let dir = parent_dir(def_path);
        if dir.is_empty() {
            rel.to_string()
        } else {
            format!("{dir}/{rel}")
        }
    };
    let target =
        normalize(&joined).ok_or_else(|| format!("{reference} escapes the filesystem root"))?;
    let base = normalize(root).ok_or_else(|| format!("invalid project root '{root}'"))?;
    if !within(&target, &base) {
        return Err(format!(
            "{reference} resolves to {target}, outside the project root {}",
            display_root(&base)
        ));
    }
    Ok(target)
}

fn display_root(base: &str) -> &str {
    if base.is_empty() {
        "."
    } else {
        base
    }
}

fn parent_dir(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

/// Collapses `.`, `..` and repeated slashes. Relative paths keep leading `..` (they may climb
/// out of the root, which `within` then refuses); `None` if an absolute path climbs above `/`.
/// The empty string stands for the current directory.
fn normalize(path: &str) -> Option<String> {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => return None,
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    Some(if absolute { format!("/{body}") } else { body })
}

fn within(target: &str, base: &str) -> bool {
    let rest = if base.is_empty() {
        if target.starts_with('/') {
            return false;
        }
        target
    } else if base == "/" {
        match target.strip_prefix('/') {
            Some(r) => r,
            None => return false,
        }
    } else {
        match target.strip_prefix(base) {
            Some("") => return true,
            Some(r) if r.starts_with('/') => r,
            _ => return false,
        }
    };
    // Normalised paths hold `..` only as a leading run, so any left here climbs above the base.
    !rest.split('/').any(|seg| seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"version: "1.0"
namespace: app
entries:
  - name: terminal
    kind: terminal.host
    lifecycle:
      auto_start: true
  - name: processes
    kind: process.host
    lifecycle:
      auto_start: true
  - name: cli
    kind: process.lua
    source: file://cli.lua
    method: main
    modules: [io, process, time, channel]
  - name: relay
    kind: process.lua
    source: file://relay.lua
    method: main
    modules: [process, logger, channel, time]
  - name: relay-service
    kind: process.service
    process: app:relay
    host: app:processes
    lifecycle:
      auto_start: true
  - name: worker
    kind: process.lua
    source: file://worker.lua
    method: main
    modules: [process, time]
"#;

    fn fake_fs(path: &str) -> Result<String, String> {
        match path {
            "src/cli.lua" => Ok("-- cli".into()),
            "src/relay.lua" => Ok("-- relay".into()),
            "src/worker.lua" => Ok("-- worker".into()),
            "src/lib/util.lua" => Ok("-- util".into()),
            _ => Err("no such file".into()),
        }
    }

    fn parse(path: &str, text: &str) -> Result<Vec<Entry>, EntryError> {
        parse_file(path, text, "src", &mut fake_fs)
    }

    fn s(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
    }

    fn tbl(v: Option<&Value>) -> &Table {
        match v {
            Some(Value::Table(t)) => t,
            other => panic!("expected table, got {other:?}"),
        }
    }

    #[test]
    fn echo_service_index() {
        let es = parse("src/_index.yaml", ECHO).unwrap();
        let ids: Vec<_> = es
            .iter()
            .map(|e| (e.id.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("app:terminal", "terminal.host"),
                ("app:processes", "process.host"),
                ("app:cli", "process.lua"),
                ("app:relay", "process.lua"),
                ("app:relay-service", "process.service"),
                ("app:worker", "process.lua"),
            ]
        );
        let lines: Vec<_> = es.iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            [Some(4), Some(8), Some(12), Some(17), Some(22), Some(28)]
        );

        let term = &es[0];
        assert_eq!(
            (term.namespace.as_str(), term.name.as_str()),
            ("app", "terminal")
        );
        assert_eq!(term.file, "src/_index.yaml");
        assert_eq!(
            tbl(term.data.get("lifecycle")).get("auto_start"),
            Some(&Value::Bool(true))
        );
        assert_eq!(term.data.map.len(), 1, "name/kind must not leak into data");
        assert_eq!(term.source_file, None);

        let cli = &es[2];
        assert_eq!(s(cli.data.get("source")), Some("-- cli"));
        assert_eq!(cli.source_file.as_deref(), Some("src/cli.lua"));
        assert_eq!(s(cli.data.get("method")), Some("main"));
        let modules: Vec<_> = tbl(cli.data.get("modules"))
            .array
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(modules, ["io", "process", "time", "channel"]);
        // Document order is kept.
        let keys: Vec<_> = cli
            .data
            .map
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["source", "method", "modules"]);

        let svc = &es[4];
        assert_eq!(s(svc.data.get("process")), Some("app:relay"));
        assert_eq!(s(svc.data.get("host")), Some("app:processes"));
        assert_eq!(es[5].source_file.as_deref(), Some("src/worker.lua"));
        check_unique(&es).unwrap();
    }

    #[test]
    fn scalars_map_to_values() {
        let es = parse(
            "src/x.yaml",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    i: -3\n    f: 1.5\n    t: false\n    z: ~\n    q: \"7\"\n    on: on\n",
        )
        .unwrap();
        let d = &es[0].data;
        assert_eq!(d.get("i"), Some(&Value::Int(-3)));
        assert_eq!(d.get("f"), Some(&Value::Float(1.5)));
        assert_eq!(d.get("t"), Some(&Value::Bool(false)));
        assert_eq!(d.get("z"), Some(&Value::Nil));
        assert_eq!(s(d.get("q")), Some("7"));
        assert_eq!(s(d.get("on")), Some("on"));
    }

    #[test]
    fn meta_merges_with_entry_keys_winning() {
        let text = "namespace: n\nmeta:\n  team: core\n  tier: 1\nentries:\n  - name: a\n    kind: k\n    meta:\n      tier: 2\n      tag: x\n  - name: b\n    kind: k\n";
        let es = parse("src/m.yaml", text).unwrap();
        let a = &es[0].meta;
        assert_eq!(s(a.get("team")), Some("core"));
        assert_eq!(a.get("tier"), Some(&Value::Int(2)));
        assert_eq!(s(a.get("tag")), Some("x"));
        assert_eq!(a.map.len(), 3);
        assert_eq!(es[1].meta.get("tier"), Some(&Value::Int(1)));
        assert!(es[0].data.is_empty());
    }

    #[test]
    fn explicit_data_map_wins() {
        let text = "namespace: n\nentries:\n  - name: a\n    kind: k\n    data:\n      x: 1\n      source: file://lib/util.lua\n    ignored: 2\n";
        let es = parse("src/d.yaml", text).unwrap();
        let d = &es[0].data;
        assert_eq!(d.get("x"), Some(&Value::Int(1)));
        assert_eq!(d.get("ignored"), None);
        assert_eq!(s(d.get("source")), Some("-- util"));
        assert_eq!(es[0].source_file.as_deref(), Some("src/lib/util.lua"));

        let bad = parse(
            "src/d.yaml",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    data: [1]\n",
        )
        .unwrap_err();
        assert_eq!((bad.line, bad.entry.as_deref()), (Some(5), Some("n:a")));
    }

    #[test]
    fn file_refs_resolve_at_any_depth() {
        let text = "namespace: n\nentries:\n  - name: a\n    kind: k\n    nested:\n      list: [plain, \"file://./util.lua\"]\n";
        let es = parse("src/lib/x.yaml", text).unwrap();
        let list = &tbl(tbl(es[0].data.get("nested")).get("list")).array;
        assert_eq!(list[1].as_str(), Some("-- util"));
        assert_eq!(es[0].source_file, None, "only `source` is recorded");

        let mut seen = Vec::new();
        let text = "namespace: n\nname: a\nkind: k\nsource: file:///proj/src/a.lua\n";
        parse_file("/proj/src/a.yaml", text, "/proj", &mut |p: &str| {
            seen.push(p.to_string());
            Ok(String::new())
        })
        .unwrap();
        assert_eq!(seen, ["/proj/src/a.lua"]);
    }

    #[test]
    fn file_refs_escaping_root_are_rejected() {
        for r in [
            "file://../../etc/passwd",
            "file:///etc/passwd",
            "file://../secret.lua",
            "file://",
        ] {
            let text =
                format!("namespace: n\nentries:\n  - name: a\n    kind: k\n    source: {r}\n");
            let err = parse("src/x.yaml", &text).unwrap_err();
            assert_eq!(err.line, Some(5), "{r}: {err}");
            assert_eq!(err.entry.as_deref(), Some("n:a"));
        }
        // Climbing out and back in is fine.
        let text = "namespace: n\nname: a\nkind: k\nsource: file://../src/cli.lua\n";
        assert_eq!(
            parse("src/x.yaml", text).unwrap()[0].source_file.as_deref(),
            Some("src/cli.lua")
        );
        // The resolver's own failure names the reference.
        let text = "namespace: n\nname: a\nkind: k\nsource: file://missing.lua\n";
        let err = parse("src/x.yaml", text).unwrap_err();
        assert!(
            matches!(&err.problem, EntryProblem::Unreadable { reference, reason, .. }
                if reference == "file://missing.lua" && reason.contains("no such file")),
            "{err}"
        );
    }

    #[test]
    fn single_entry_form() {
        let text = "version: \"1.0\"\nnamespace: app.sub\nmeta:\n  a: 1\nname: solo\nkind: process.lua\nsource: file://cli.lua\nmethod: main\n";
        let es = parse("src/solo.yaml", text).unwrap();
        assert_eq!(es.len(), 1);
        let e = &es[0];
        assert_eq!(
            (e.id.as_str(), e.namespace.as_str(), e.kind.as_str()),
            ("app.sub:solo", "app.sub", "process.lua")
        );
        assert_eq!(e.line, Some(5));
        assert_eq!(e.meta.get("a"), Some(&Value::Int(1)));
        let keys: Vec<_> = e.data.map.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["source", "method"]);
        assert_eq!(e.source_file.as_deref(), Some("src/cli.lua"));
    }

    #[test]
    fn modules_and_method_of_lua_entries_are_type_checked() {
        let lua = |extra: &str| {
            format!("namespace: app\nentries:\n  - name: cli\n    kind: process.lua\n    source: \"return {{}}\"\n{extra}")
        };
        let e = parse("src/_index.yaml", &lua("    modules: 5\n")).unwrap_err();
        assert_eq!((e.line, e.entry.as_deref()), (Some(6), Some("app:cli")));
        assert!(
            e.to_string()
                .contains("'modules' must be a list of module names"),
            "{e}"
        );
        let e = parse("src/_index.yaml", &lua("    modules: [io, 3]\n")).unwrap_err();
        assert!(e.to_string().contains("module name"), "{e}");
        let e = parse("src/_index.yaml", &lua("    method: 7\n")).unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(
            e.to_string()
                .contains("'method' must be the name of a function"),
            "{e}"
        );
        assert!(parse(
            "src/_index.yaml",
            &lua("    modules: [io]\n    method: main\n")
        )
        .is_ok());
        // Other kinds keep their fields as data.
        assert!(parse(
            "src/a.yaml",
            "namespace: n\nentries:\n  - name: x\n    kind: registry.entry\n    modules: 5\n"
        )
        .is_ok());
        let e = parse("src/_index.yaml", "").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("src/_index.yaml", Some(1)));
        assert!(parse("src/other.yaml", "").unwrap().is_empty());
    }

    #[test]
    fn yaml_limits_read_as_sentences() {
        let m = yaml_message("budget breached: Nodes { nodes: 250001 }");
        assert_eq!(
            m,
            "the file is too large for the YAML reader: too many nodes (more than 250000); \
             split it into smaller files or move bulk data into a file:// reference"
        );
        assert!(!m.contains('{'));
        assert!(yaml_message("budget breached: Aliases { aliases: 1001 }").contains("alias bomb"));
    }

    #[test]
    fn files_without_namespace_are_ignored() {
        for text in [
            "",
            "# just a comment\n",
            "- 1\n- 2\n",
            "plain",
            "namespace: ~\n",
            "title: settings\nport: 80\n",
        ] {
            assert_eq!(parse("src/other.yaml", text).unwrap(), vec![], "{text:?}");
        }
        // Entries without a namespace are an error naming the field, not silently dropped.
        for text in [
            "name: a\nkind: k\n",
            "version: \"1.0\"\nentries:\n  - name: a\n    kind: k\n",
            "namespace: \"\"\nentries: [1]\n",
            "namespace: ~\nentries: []\n",
        ] {
            let e = parse("src/other.yaml", text).unwrap_err();
            assert_eq!(e.file, "src/other.yaml");
            assert!(e.line.is_some(), "{text:?}: {e}");
            assert!(e.to_string().contains("namespace"), "{text:?}: {e}");
        }
        assert_eq!(parse("src/ns.yaml", "namespace: n\n").unwrap(), vec![]);
        assert_eq!(
            parse("src/ns.yaml", "namespace: n\nentries:\n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn json_files() {
        let text = r#"{"namespace": "j", "entries": [{"name": "a", "kind": "k", "z": 1, "b": [true, null, 2.5]}]}"#;
        let es = parse("src/defs.json", text).unwrap();
        assert_eq!(es[0].id, "j:a");
        let keys: Vec<_> = es[0]
            .data
            .map
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["z", "b"]);
        assert_eq!(es[0].line, None);
        let err = parse("src/defs.json", "{\n  \"namespace\": \"j\",\n  oops\n}").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("src/defs.json", Some(3)));
    }

    #[test]
    fn malformed_yaml_reports_position() {
        let err = parse(
            "src/bad.yaml",
            "namespace: n\nentries:\n  - name: a\n    kind: [k\n  - name: b\n",
        )
        .unwrap_err();
        assert_eq!(err.file, "src/bad.yaml");
        assert!(err.line.is_some() && err.column.is_some(), "{err:?}");
        assert!(err.problem.to_string().starts_with("invalid YAML"), "{err}");
        let err = parse("src/bad.yaml", "namespace: n\nnamespace: m\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(!err.problem.to_string().contains("Options"), "{err}");
        assert!(err.to_string().starts_with("src/bad.yaml:2:"), "{err}");
    }

    #[test]
    fn missing_name_or_kind() {
        let err = parse(
            "src/e.yaml",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n  - name: b\n    method: main\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.entry.as_deref()), (Some(5), Some("n:b")));
        assert_eq!(err.problem, EntryProblem::MissingField("kind".into()));
        assert_eq!(
            err.to_string(),
            "src/e.yaml:5: entry 'n:b': missing required field 'kind'"
        );

        let err = parse("src/e.yaml", "namespace: n\nentries:\n  - kind: k\n").unwrap_err();
        assert_eq!((err.line, err.entry.as_deref()), (Some(3), None));
        assert_eq!(err.problem, EntryProblem::MissingField("name".into()));

        let err = parse(
            "src/e.yaml",
            "namespace: n\nentries:\n  - name: \"\"\n    kind: k\n",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3));
        let err = parse(
            "src/e.yaml",
            "namespace: n\nentries:\n  - name: a\n    kind: {x: 1}\n",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(4));
        let wrong = |what: &str, want, found| EntryProblem::WrongType {
            what: what.into(),
            want,
            found,
        };
        assert_eq!(err.problem, wrong("'kind'", "a string", "a mapping"));
        let err = parse("src/e.yaml", "namespace: n\nentries:\n  - just a string\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.problem, wrong("entry", "a mapping", "a string"));
        let err = parse("src/e.yaml", "namespace: n\nentries: {a: 1}\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(
            err.to_string(),
            "src/e.yaml:2: entries must be a sequence, found a mapping"
        );
        let err = parse("src/e.yaml", "namespace: a::b\nentries: []\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert_eq!(err.problem, EntryProblem::InvalidNamespace("a::b".into()));
    }

    #[test]
    fn duplicate_ids_name_both_files() {
        let mut all = parse(
            "src/a.yaml",
            "namespace: n\nentries:\n  - name: x\n    kind: k\n",
        )
        .unwrap();
        all.extend(parse("src/b.yaml", "namespace: n\n\nname: x\nkind: k\n").unwrap());
        let err = check_unique(&all).unwrap_err();
        assert_eq!(err.entry.as_deref(), Some("n:x"));
        let text = err.to_string();
        assert!(
            text.contains("src/a.yaml:3") && text.contains("src/b.yaml:3"),
            "{text}"
        );
    }

    #[test]
    fn odd_but_valid_inputs() {
        let es = parse(
            "src/b.yaml",
            "\u{feff}namespace: n\nname: a\nkind: k\nx: .inf\n",
        )
        .unwrap();
        assert_eq!(es[0].data.get("x"), Some(&Value::Float(f64::INFINITY)));
        let es = parse(
            "src/b.json",
            "\u{feff}{\"namespace\": \"n\", \"name\": \"a\", \"kind\": \"k\"}",
        )
        .unwrap();
        assert_eq!(es[0].id, "n:a");
        // Go's YAML decodes a plain number into a string field.
        let es = parse(
            "src/b.yaml",
            "namespace: n\nentries:\n  - name: 42\n    kind: k\n",
        )
        .unwrap();
        assert_eq!(es[0].id, "n:42");
        let deep = format!("namespace: n\nx: {}{}\n", "[".repeat(40), "]".repeat(40));
        let err = parse("src/b.yaml", &deep).unwrap_err();
        assert!(err.problem.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn wide_inputs_stay_linear() {
        let mut yaml = String::from("namespace: n\nname: a\nkind: k\nmeta:\n");
        let mut json =
            String::from("{\"namespace\": \"n\", \"name\": \"a\", \"kind\": \"k\", \"x\": 0");
        for i in 0..20_000 {
            yaml.push_str(&format!("  k{i}: {i}\n"));
            json.push_str(&format!(", \"k{i}\": {i}, \"x\": {i}"));
        }
        json.push('}');
        let es = parse("src/w.yaml", &yaml).unwrap();
        assert_eq!(es[0].meta.map.len(), 20_000);
        let es = parse("src/w.json", &json).unwrap();
        // Repeated JSON keys keep their first position and last value.
        assert_eq!(es[0].data.map.len(), 20_001);
        assert_eq!(es[0].data.get("x"), Some(&Value::Int(19_999)));
    }

    #[test]
    fn parse_id_cases() {
        let p = |s: &str| parse_id(s);
        assert_eq!(p("app:relay"), ("app".into(), "relay".into()));
        assert_eq!(p("a.b.c:x:y"), ("a.b.c".into(), "x:y".into()));
        assert_eq!(p("bare"), ("".into(), "bare".into()));
        assert_eq!(p(":x"), ("".into(), "x".into()));
        assert_eq!(p("ns:"), ("ns".into(), "".into()));
        assert_eq!(p(""), ("".into(), "".into()));
    }

    #[test]
    fn path_normalisation() {
        assert_eq!(normalize("a/./b/../c//d").as_deref(), Some("a/c/d"));
        assert_eq!(normalize("../a/..").as_deref(), Some(".."));
        assert_eq!(normalize("/a/../.."), None);
        assert_eq!(normalize(".").as_deref(), Some(""));
        assert!(within("a/b", ""));
        assert!(!within("../a", ""));
        assert!(within("/x/y", "/x"));
        assert!(!within("/xy", "/x"));
        assert!(within("../p/q", "../p"));
        assert!(!within("../../p", ".."));
        assert!(within("/etc", "/"));
        assert_eq!(
            resolve_file_ref("_index.yaml", ".", "file://a.lua").as_deref(),
            Ok("a.lua")
        );
        assert!(resolve_file_ref("_index.yaml", ".", "file://../a.lua").is_err());
    }

    #[test]
    fn error_display_omits_unknown_parts() {
        let mut e = EntryError {
            file: String::new(),
            line: None,
            column: None,
            entry: None,
            problem: EntryProblem::MissingField("kind".into()),
        };
        assert_eq!(e.to_string(), "missing required field 'kind'");
        e.file = "f.yaml".into();
        e.entry = Some("n:a".into());
        assert_eq!(
            e.to_string(),
            "f.yaml: entry 'n:a': missing required field 'kind'"
        );
        e.line = Some(7);
        assert_eq!(
            e.to_string(),
            "f.yaml:7: entry 'n:a': missing required field 'kind'"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<String> = [
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    x: *nope\n",
            "namespace: n\nentries: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "namespace: n\n\t- bad tab\n",
            "namespace: {a: 1}\n",
            "namespace: n\nentries:\n  - {name: a, kind: k, ? [1]: 2}\n",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    source: file://\u{0}\n",
            "namespace: n\na: &x [*x]\n",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    b: !!binary \"@@@\"\n",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    f: 1e999\n    i: 999999999999999999999999999999\n",
            "%YAML 9.9\n---\nnamespace: n\n",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    <<: {x: 1}\n",
            "\u{feff}namespace: n\nname: a\nkind: k\n",
            "namespace: \"\u{1F600}\"\nname: \u{1F600}\nkind: k\n",
            "{{{{",
            "]]]]",
            "- - - - -",
            "? ? ? ?",
            "namespace: n\nentries:\n  - name: a\n    kind: k\n    source: 'file://a/../../../b'\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push(format!(
            "namespace: n\nentries: {}{}",
            "[".repeat(5000),
            "]".repeat(5000)
        ));
        inputs.push(format!("namespace: n\nentries:\n{}", "  - ".repeat(3000)));
        inputs.push(format!("namespace: n\ne: {}", "{a: ".repeat(3000)));
        // Every prefix of a valid file is a garbage file too.
        for cut in (0..ECHO.len()).step_by(7) {
            if ECHO.is_char_boundary(cut) {
                inputs.push(ECHO[..cut].to_string());
            }
        }
        for text in &inputs {
            for path in ["src/g.yaml", "src/g.json"] {
                let _ = parse(path, text);
            }
        }
        // Cheap deterministic fuzzing: YAML-significant characters in random order, and the
        // echo file with random characters swapped in.
        let alphabet: Vec<char> = "-:[]{},&*!|>'\"#%@` \t\n?.~0x1eaé\u{feff}"
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let echo: Vec<char> = ECHO.chars().collect();
        for _ in 0..1500 {
            let len = (next() % 80) as usize;
            let mut text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse("src/f.yaml", &text);
            text.insert_str(0, "namespace: n\n");
            let _ = parse("src/f.yaml", &text);
            let mut mutated = echo.clone();
            for _ in 0..3 {
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let _ = parse("src/f.yaml", &mutated.iter().collect::<String>());
        }
        let deep_json = format!(
            "{{\"namespace\":\"n\",\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse("src/d.json", &deep_json).is_err());
    }

    #[test]
    fn kinds_parse_print_and_classify() {
        for text in [
            "process.lua",
            "terminal.host",
            "env.storage.file",
            "store.sql",
            "native",
        ] {
            let k = EntryKind::from(text);
            assert!(!matches!(k, EntryKind::Other(_)), "{text} has a variant");
            assert_eq!(k.as_str(), text);
            assert_eq!(k.to_string(), text);
            assert_eq!(text.parse::<EntryKind>().unwrap(), k);
        }
        let later = EntryKind::from("http.service");
        assert_eq!(later, EntryKind::Other("http.service".into()));
        assert_eq!(later.to_string(), "http.service");
        assert!(!later.is_supported() && !EntryKind::Native.is_supported());
        assert!(EntryKind::ProcessService.is_supported());
        assert!(
            EntryKind::from("process.wasm").is_process(),
            "process.* by its text"
        );
        assert!(!EntryKind::FunctionLua.is_process());
        assert!(EntryKind::LibraryLua.is_lua() && !EntryKind::from("workflow.lua").is_lua());
        assert!(EntryKind::StoreSql.is_store() && EntryKind::EnvVariable.is_env());
        assert_eq!(EntryKind::default().as_str(), "");
        let e = &parse("src/a.yaml", "namespace: n\nname: a\nkind: store.memory\n").unwrap()[0];
        assert_eq!(e.kind, EntryKind::StoreMemory);
    }

    #[test]
    fn boot_warns_on_later_kinds_and_fails_on_unknown_ones_naming_the_entry() {
        use crate::node::{Node, NodeConfig};
        let boot = |text: &str| {
            Node::builder(NodeConfig::default())
                .entries(parse("src/a.yaml", text).unwrap())
                .build(None)
                .map(|b| b.report)
        };
        let report = boot("namespace: n\nentries:\n  - name: web\n    kind: http.service\n")
            .expect("a later-tier kind boots");
        assert_eq!(
            report.warnings,
            ["src/a.yaml: entry 'n:web': kind http.service is not supported by weft yet; ignored"]
        );
        let e = boot("namespace: n\nentries:\n  - name: x\n    kind: proces.lua\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "src/a.yaml:3: entry 'n:x': unknown kind 'proces.lua'"
        );
        let e = boot("namespace: n\nentries:\n  - name: x\n    kind: native\n").unwrap_err();
        assert!(e.to_string().ends_with("unknown kind 'native'"), "{e}");
    }
}
