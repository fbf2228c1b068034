//! Owns the source pre-pass that lowers Wippy's typed Lua dialect into source the Luau compiler accepts.
//! It must never change the number of lines, never panic on any input, and never touch plain Luau it understands.

use std::borrow::Cow;

/// Rewrites the Wippy-only constructs of `src` into Luau; borrows `src` when nothing needed changing.
pub fn to_luau(src: &str) -> Cow<'_, str> {
    let toks = tokenize(src.as_bytes());
    let mut p = Pass {
        src: src.as_bytes(),
        toks,
        edits: Vec::new(),
        seq: 0,
        last_type_end: 0,
    };
    p.run();
    if p.edits.is_empty() {
        return Cow::Borrowed(src);
    }
    match p.apply() {
        Some(out) => Cow::Owned(out),
        // A bug in edit bookkeeping must degrade to "no rewrite", never to a panic or lost lines.
        None => Cow::Borrowed(src),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Name,
    Number,
    Str,
    Sym,
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
}

fn tokenize(b: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i += 2;
            if let Some(level) = long_bracket_level(b, i) {
                i = skip_long_bracket(b, i, level);
            } else {
                while i < n && b[i] != b'\n' {
                    i += 1;
                }
            }
            continue;
        }
        if c == b'[' {
            if let Some(level) = long_bracket_level(b, i) {
                i = skip_long_bracket(b, i, level);
                toks.push(Tok {
                    kind: Kind::Str,
                    start,
                    end: i,
                });
                continue;
            }
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < n {
                let d = b[i];
                if d == b'\\' {
                    i += 2;
                    continue;
                }
                // Lua short strings cannot span lines; stopping here keeps one bad quote from eating the file.
                if d == b'\n' && c != b'`' {
                    break;
                }
                i += 1;
                if d == c {
                    break;
                }
            }
            i = i.min(n);
            toks.push(Tok {
                kind: Kind::Str,
                start,
                end: i,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            i += 1;
            while i < n {
                let d = b[i];
                let exponent_sign =
                    (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
                if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            toks.push(Tok {
                kind: Kind::Number,
                start,
                end: i,
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            // Non-ASCII bytes ride along in names so every token boundary stays on a char boundary.
            while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            toks.push(Tok {
                kind: Kind::Name,
                start,
                end: i,
            });
            continue;
        }
        let rest = &b[i..];
        let len = if rest.starts_with(b"...") {
            3
        } else if rest.starts_with(b"..") || rest.starts_with(b"::") || rest.starts_with(b"->") {
            2
        } else {
            1
        };
        i += len;
        toks.push(Tok {
            kind: Kind::Sym,
            start,
            end: i,
        });
    }
    toks
}

/// Level of a long bracket opening at `i` (`[[` is 0, `[==[` is 2), if one opens there.
fn long_bracket_level(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut j = i + 1;
    while b.get(j) == Some(&b'=') {
        j += 1;
    }
    (b.get(j) == Some(&b'[')).then_some(j - i - 1)
}

fn skip_long_bracket(b: &[u8], i: usize, level: usize) -> usize {
    let mut j = i + level + 2;
    while j < b.len() {
        if b[j] == b']' {
            let mut k = j + 1;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            if k - j - 1 == level && b.get(k) == Some(&b']') {
                return k + 1;
            }
        }
        j += 1;
    }
    b.len()
}

const KEYWORDS: &[&[u8]] = &[
    b"and",
    b"break",
    b"do",
    b"else",
    b"elseif",
    b"end",
    b"false",
    b"for",
    b"function",
    b"goto",
    b"if",
    b"in",
    b"local",
    b"nil",
    b"not",
    b"or",
    b"repeat",
    b"return",
    b"then",
    b"true",
    b"until",
    b"while",
];

// Luau's own function attributes are valid after a type only by accident of layout; leave them be.
const LUAU_ATTRIBUTES: &[&[u8]] = &[b"native", b"checked", b"deprecated"];

// Past this nesting the input is hostile or broken; giving up keeps the stack bounded.
const MAX_DEPTH: usize = 100;

enum EditText {
    Blank,
    Text(&'static str),
}

struct Edit {
    start: usize,
    end: usize,
    text: EditText,
    /// Orders insertions at one offset: openers recorded later wrap earlier ones, closers the reverse.
    order: (u8, i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Func,
    If,
    Do,
    Loop { awaiting_do: bool },
    Repeat,
}

struct Goto {
    tok: usize,
    name_start: usize,
    name_end: usize,
    loop_id: Option<usize>,
    done: bool,
}

struct Pass<'a> {
    src: &'a [u8],
    toks: Vec<Tok>,
    edits: Vec<Edit>,
    seq: i64,
    /// Byte offset just past the last type token proper, so that a suffix lands before blanked validators.
    last_type_end: usize,
}

impl<'a> Pass<'a> {
    fn text(&self, i: usize) -> &'a [u8] {
        let src: &'a [u8] = self.src;
        match self.toks.get(i) {
            Some(t) => src.get(t.start..t.end).unwrap_or(b""),
            None => b"",
        }
    }

    fn is(&self, i: usize, s: &str) -> bool {
        self.text(i) == s.as_bytes()
    }

    fn kind(&self, i: usize) -> Option<Kind> {
        self.toks.get(i).map(|t| t.kind)
    }

    fn is_keyword(&self, i: usize) -> bool {
        self.kind(i) == Some(Kind::Name) && KEYWORDS.contains(&self.text(i))
    }

    /// A plain identifier usable as a variable, field or type name.
    fn is_ident(&self, i: usize) -> bool {
        self.kind(i) == Some(Kind::Name) && !self.is_keyword(i)
    }

    fn start(&self, i: usize) -> usize {
        self.toks.get(i).map_or(self.src.len(), |t| t.start)
    }

    fn end(&self, i: usize) -> usize {
        self.toks.get(i).map_or(self.src.len(), |t| t.end)
    }

    fn line_between(&self, a: usize, b: usize) -> bool {
        let (s, e) = (self.end(a), self.start(b));
        s < e && self.src.get(s..e).is_some_and(|r| r.contains(&b'\n'))
    }

    /// Whether token `i` can be the last token of an expression, which is what makes a
    /// following `as` a cast and a following `!` a non-nil assertion.
    fn ends_expr(&self, i: usize) -> bool {
        match self.kind(i) {
            Some(Kind::Name) => {
                !self.is_keyword(i)
                    || self.is(i, "nil")
                    || self.is(i, "true")
                    || self.is(i, "false")
            }
            Some(Kind::Number) | Some(Kind::Str) => true,
            Some(Kind::Sym) => matches!(self.text(i), b")" | b"]" | b"}" | b"..." | b"!"),
            None => false,
        }
    }

    fn starts_type(&self, i: usize) -> bool {
        match self.kind(i) {
            Some(Kind::Name) => {
                !self.is_keyword(i)
                    || self.is(i, "nil")
                    || self.is(i, "true")
                    || self.is(i, "false")
            }
            Some(Kind::Str) => true,
            Some(Kind::Sym) => matches!(self.text(i), b"{" | b"("),
            _ => false,
        }
    }

    fn push(&mut self, start: usize, end: usize, text: EditText, class: u8) {
        self.seq += 1;
        let sub = if class == 1 { -self.seq } else { self.seq };
        self.edits.push(Edit {
            start,
            end,
            text,
            order: (class, sub),
        });
    }

    fn blank(&mut self, start: usize, end: usize) {
        self.push(start, end, EditText::Blank, 2);
    }

    fn replace(&mut self, start: usize, end: usize, text: &'static str) {
        self.push(start, end, EditText::Text(text), 2);
    }

    fn open(&mut self, at: usize, text: &'static str) {
        self.push(at, at, EditText::Text(text), 1);
    }

    fn close(&mut self, at: usize, text: &'static str) {
        self.push(at, at, EditText::Text(text), 0);
    }

    fn apply(&mut self) -> Option<String> {
        self.edits
            .sort_by_key(|e| (e.start, if e.start == e.end { e.order } else { (3, 0) }));
        let mut out: Vec<u8> = Vec::with_capacity(self.src.len() + 16);
        let mut cur = 0;
        for e in &self.edits {
            if e.start < cur || e.end < e.start || e.end > self.src.len() {
                continue;
            }
            out.extend_from_slice(self.src.get(cur..e.start)?);
            let replaced = self.src.get(e.start..e.end)?;
            match e.text {
                EditText::Blank => {
                    out.extend(
                        replaced
                            .iter()
                            .map(|&c| if c == b'\n' || c == b'\r' { c } else { b' ' }),
                    )
                }
                EditText::Text(t) => {
                    out.extend_from_slice(t.as_bytes());
                    // Replacements never add lines and must not lose the ones they cover.
                    out.extend(replaced.iter().filter(|&&c| c == b'\n'));
                }
            }
            cur = e.end;
        }
        out.extend_from_slice(self.src.get(cur..)?);
        String::from_utf8(out).ok()
    }

    fn run(&mut self) {
        let mut blocks: Vec<(Block, usize, usize)> = Vec::new(); // (block, id, opening token)
        let mut gotos: Vec<Goto> = Vec::new();
        let mut next_id = 0usize;
        let n = self.toks.len();
        let mut i = 0;
        while i < n {
            let saved = self.edits.len();
            let t = self.text(i);
            let kind = self.kind(i);
            let mut next = i + 1;
            let mut push_block = |b: Block, blocks: &mut Vec<(Block, usize, usize)>| {
                next_id += 1;
                blocks.push((b, next_id, i));
            };
            if kind == Some(Kind::Name) {
                match t {
                    b"local" => next = self.local_decl(i + 1),
                    b"function" => {
                        push_block(Block::Func, &mut blocks);
                        next = self.function_header(i + 1);
                    }
                    b"for" => {
                        push_block(Block::Loop { awaiting_do: true }, &mut blocks);
                        next = self.binding_list(i + 1);
                    }
                    b"while" => push_block(Block::Loop { awaiting_do: true }, &mut blocks),
                    b"do" => match blocks.last_mut() {
                        Some((Block::Loop { awaiting_do }, _, _)) if *awaiting_do => {
                            *awaiting_do = false
                        }
                        _ => push_block(Block::Do, &mut blocks),
                    },
                    b"if" => push_block(Block::If, &mut blocks),
                    b"repeat" => push_block(Block::Repeat, &mut blocks),
                    b"end" | b"until" => {
                        blocks.pop();
                    }
                    b"goto" if self.is_ident(i + 1) => {
                        let loop_id = blocks.iter().rev().find_map(|(b, id, _)| match b {
                            Block::Loop { .. } | Block::Repeat => Some(Some(*id)),
                            Block::Func => Some(None),
                            _ => None,
                        });
                        gotos.push(Goto {
                            tok: i,
                            name_start: self.start(i + 1),
                            name_end: self.end(i + 1),
                            loop_id: loop_id.flatten(),
                            done: false,
                        });
                        next = i + 2;
                    }
                    b"as" => {
                        if let Some(j) = self.as_cast(i) {
                            next = j;
                        }
                    }
                    b"export" if self.is(i + 1, "type") => {
                        next = self.type_alias(i + 1).unwrap_or(i + 1)
                    }
                    b"type" => {
                        if let Some(j) = self.type_alias(i) {
                            next = j;
                        }
                    }
                    _ => {}
                }
            } else if kind == Some(Kind::Sym) {
                match t {
                    b"::" if self.is_ident(i + 1) && self.is(i + 2, "::") => {
                        self.label(i, &blocks, &mut gotos);
                        next = i + 3;
                    }
                    b"::" => {
                        if let Some(j) = self.parse_type(i + 1, 0) {
                            next = j;
                        }
                    }
                    b"!" => {
                        let glued_eq = self.is(i + 1, "=") && self.start(i + 1) == self.end(i);
                        if !glued_eq && i > 0 && self.ends_expr(i - 1) && !self.is(i - 1, "!") {
                            self.blank(self.start(i), self.end(i));
                        }
                    }
                    _ => {}
                }
            }
            if next <= i {
                self.edits.truncate(saved);
                next = i + 1;
            }
            i = next;
        }
    }

    /// `::name::` immediately closing a loop body is the Lua idiom for `continue`.
    fn label(&mut self, i: usize, blocks: &[(Block, usize, usize)], gotos: &mut [Goto]) {
        let after = i + 3;
        if !(self.is(after, "end") || self.is(after, "until")) {
            return;
        }
        let Some(&(block, loop_id, opened)) = blocks.last() else {
            return;
        };
        let closes_loop = match block {
            Block::Loop { awaiting_do } => !awaiting_do,
            Block::Repeat => true,
            _ => false,
        };
        let name = self.text(i + 1);
        let src = self.src;
        let targets: Vec<usize> = gotos
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                !g.done && g.tok > opened && src.get(g.name_start..g.name_end) == Some(name)
            })
            .map(|(k, _)| k)
            .collect();
        // A goto from a nested loop or function would change meaning as `continue`; keep the label then.
        if !closes_loop
            || targets.is_empty()
            || targets.iter().any(|&k| gotos[k].loop_id != Some(loop_id))
        {
            return;
        }
        for k in targets {
            let g = &mut gotos[k];
            g.done = true;
            let (s, e) = (self.start(g.tok), self.end(g.tok));
            // Luau only accepts `continue` as the last statement of a block, Lua's goto anywhere.
            let after = g.tok + 2;
            let ends_block = self.kind(after).is_none()
                || ["end", "else", "elseif", "until"]
                    .iter()
                    .any(|k| self.is(after, k));
            if ends_block {
                self.blank(s, e);
            } else {
                self.replace(s, e, "do");
            }
            if src.get(g.name_start..g.name_end) != Some(b"continue".as_slice()) {
                self.replace(g.name_start, g.name_end, "continue");
            }
            if !ends_block {
                self.close(g.name_end, " end");
            }
        }
        self.blank(self.start(i), self.end(i + 2));
    }

    fn as_cast(&mut self, i: usize) -> Option<usize> {
        if i == 0 || !self.ends_expr(i - 1) || !self.starts_type(i + 1) {
            return None;
        }
        // `x` newline `as(...)` is more likely a call of a variable named `as` than a cast.
        if self.is(i + 1, "(") && self.line_between(i - 1, i) {
            return None;
        }
        let j = self.parse_type(i + 1, 0)?;
        self.replace(self.start(i), self.end(i), "::");
        Some(j)
    }

    /// After `local`: `a: T, b: U` (or `local function`, left to the main loop).
    fn local_decl(&mut self, i: usize) -> usize {
        if self.is(i, "function") {
            return i;
        }
        self.binding_list(i)
    }

    /// `name [: T] {, name [: T]}` as in `local` and `for` headers.
    fn binding_list(&mut self, mut i: usize) -> usize {
        loop {
            if !self.is_ident(i) {
                return i;
            }
            i += 1;
            if self.is(i, "<") && self.is_ident(i + 1) && self.is(i + 2, ">") {
                i += 3;
            }
            if self.is(i, ":") {
                match self.parse_type(i + 1, 0) {
                    Some(j) => i = j,
                    None => return i + 1,
                }
            }
            if self.is(i, ",") {
                i += 1;
            } else {
                return i;
            }
        }
    }

    /// From just after `function`: optional name, generics, typed params and return types.
    fn function_header(&mut self, mut i: usize) -> usize {
        if self.is_ident(i) {
            i += 1;
            while (self.is(i, ".") || self.is(i, ":")) && self.is_ident(i + 1) {
                i += 2;
            }
        }
        if self.is(i, "<") {
            match self.angle_list(i, 0) {
                Some(j) => i = j,
                None => return i,
            }
        }
        if !self.is(i, "(") {
            return i;
        }
        i += 1;
        loop {
            if self.is(i, ")") {
                break;
            }
            if !(self.is_ident(i) || self.is(i, "...")) {
                return i;
            }
            i += 1;
            if self.is(i, ":") {
                match self.parse_type(i + 1, 0) {
                    Some(j) => i = j,
                    None => return i,
                }
            }
            if self.is(i, ",") {
                i += 1;
            } else if !self.is(i, ")") {
                return i;
            }
        }
        i += 1;
        if !self.is(i, ":") {
            return i;
        }
        let first = i + 1;
        let Some(mut j) = self.parse_type(first, 0) else {
            return i + 1;
        };
        if self.is(j, ",") {
            // A bare comma list of return types is Wippy-only; Luau wants a parenthesised pack.
            let saved = self.edits.len();
            let mut ok = true;
            while self.is(j, ",") {
                match self.parse_type(j + 1, 0) {
                    Some(k) => j = k,
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                self.open(self.start(first), "(");
                self.close(self.end(j - 1), ")");
            } else {
                self.edits.truncate(saved);
            }
        }
        j
    }

    /// At `type` (possibly after `export`): `type Name [<generics>] = T`.
    fn type_alias(&mut self, i: usize) -> Option<usize> {
        if i > 0 && (self.is(i - 1, ".") || self.is(i - 1, ":")) {
            return None;
        }
        if !self.is_ident(i + 1) {
            return None;
        }
        let mut j = i + 2;
        if self.is(j, "<") {
            j = self.angle_list(j, 0)?;
        }
        if !self.is(j, "=") {
            return None;
        }
        self.parse_type(j + 1, 0)
    }

    /// `<...>` holding generic parameters (with defaults) or type arguments; returns index after `>`.
    fn angle_list(&mut self, i: usize, depth: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            if self.is(j, ">") {
                return Some(j + 1);
            }
            j = self.parse_type(j, depth + 1)?;
            if self.is(j, "=") {
                j = self.parse_type(j + 1, depth + 1)?;
            }
            if self.is(j, ",") {
                j += 1;
            } else if !self.is(j, ">") {
                return None;
            }
        }
    }

    /// Parses one type (union/intersection of postfixed simple types), recording rewrites.
    /// On failure nothing recorded inside stays behind.
    fn parse_type(&mut self, i: usize, depth: usize) -> Option<usize> {
        self.parse_type_ex(i, depth).map(|(j, _)| j)
    }

    /// Also reports whether the type is a single element that a trailing `?` can safely qualify.
    fn parse_type_ex(&mut self, i: usize, depth: usize) -> Option<(usize, bool)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let saved = self.edits.len();
        let mut j = i;
        let mut parts = 0;
        let mut simple = true;
        if self.is(j, "|") || self.is(j, "&") {
            j += 1;
            simple = false;
        }
        loop {
            match self.parse_postfixed(j, depth + 1) {
                Some((k, s)) => {
                    j = k;
                    simple &= s;
                    parts += 1;
                }
                None => {
                    self.edits.truncate(saved);
                    return None;
                }
            }
            if self.is(j, "|") || self.is(j, "&") {
                j += 1;
            } else {
                break;
            }
        }
        Some((j, simple && parts == 1))
    }

    fn parse_postfixed(&mut self, mut i: usize, depth: usize) -> Option<(usize, bool)> {
        if self.is(i, "readonly") && self.starts_type(i + 1) {
            self.blank(self.start(i), self.end(i));
            i += 1;
        }
        let first = i;
        let (mut j, simple) = self.parse_simple(i, depth)?;
        self.last_type_end = self.end(j - 1);
        loop {
            if self.is(j, "?") {
                j += 1;
                self.last_type_end = self.end(j - 1);
            } else if self.is(j, "[") && self.is(j + 1, "]") {
                self.open(self.start(first), "{");
                self.replace(self.start(j), self.end(j + 1), "}");
                j += 2;
                self.last_type_end = self.end(j - 1);
            } else if self.is(j, "@")
                && self.kind(j + 1) == Some(Kind::Name)
                && self.start(j + 1) == self.end(j)
                && !LUAU_ATTRIBUTES.contains(&self.text(j + 1))
            {
                let mut k = j + 2;
                if self.is(k, "(") {
                    k = self.skip_balanced(k)?;
                }
                self.blank(self.start(j), self.end(k - 1));
                j = k;
            } else {
                break;
            }
        }
        Some((j, simple))
    }

    /// Index after the bracket that closes the one at `i`, counting only `(`/`)`, `{`/`}`, `[`/`]`.
    fn skip_balanced(&self, i: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut j = i;
        while j < self.toks.len() {
            if self.kind(j) == Some(Kind::Sym) {
                match self.text(j) {
                    b"(" | b"{" | b"[" => depth += 1,
                    b")" | b"}" | b"]" => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
            }
            j += 1;
        }
        None
    }

    fn parse_simple(&mut self, i: usize, depth: usize) -> Option<(usize, bool)> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.kind(i)? {
            Kind::Str => Some((i + 1, true)),
            Kind::Number => {
                // Luau has no numeric literal types; widening keeps the program's meaning at runtime.
                self.replace(self.start(i), self.end(i), "number");
                Some((i + 1, true))
            }
            Kind::Name => {
                if self.is(i, "typeof") && self.is(i + 1, "(") {
                    return Some((self.skip_balanced(i + 1)?, true));
                }
                if self.is_keyword(i)
                    && !(self.is(i, "nil") || self.is(i, "true") || self.is(i, "false"))
                {
                    return None;
                }
                let mut j = i + 1;
                while self.is(j, ".") && self.is_ident(j + 1) {
                    j += 2;
                }
                if self.is(j, "<") {
                    j = self.angle_list(j, depth + 1)?;
                }
                if self.is(j, "...") {
                    j += 1;
                }
                Some((j, true))
            }
            Kind::Sym => match self.text(i) {
                b"-" if self.kind(i + 1) == Some(Kind::Number) => {
                    self.replace(self.start(i), self.end(i + 1), "number");
                    Some((i + 2, true))
                }
                b"..." => {
                    if self.starts_type(i + 1) {
                        let (j, _) = self.parse_postfixed(i + 1, depth + 1)?;
                        Some((j, false))
                    } else {
                        Some((i + 1, false))
                    }
                }
                b"{" => self.parse_table(i, depth + 1).map(|j| (j, true)),
                b"(" => self.parse_paren(i, depth + 1),
                b"<" => {
                    let j = self.angle_list(i, depth + 1)?;
                    if !self.is(j, "(") {
                        return None;
                    }
                    self.parse_paren(j, depth + 1).map(|(k, _)| (k, false))
                }
                _ => None,
            },
        }
    }

    /// `name?: T` becomes `name : T?` so the field stays optional under Luau.
    fn optional_field(&mut self, q: usize, ty: usize, depth: usize) -> Option<usize> {
        self.blank(self.start(q), self.end(q));
        let (j, simple) = self.parse_type_ex(ty, depth + 1)?;
        let end = self.last_type_end;
        if simple && self.src.get(..end).is_some_and(|s| s.ends_with(b"?")) {
            return Some(j);
        }
        if simple {
            self.close(end, "?");
        } else {
            self.open(self.start(ty), "(");
            self.close(end, ")?");
        }
        Some(j)
    }

    fn parse_table(&mut self, i: usize, depth: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            if self.is(j, "}") {
                return Some(j + 1);
            }
            if (self.is(j, "read") || self.is(j, "write"))
                && (self.is_ident(j + 1) || self.is(j + 1, "["))
            {
                j += 1;
            }
            if self.is(j, "[") {
                j = self.parse_type(j + 1, depth + 1)?;
                if !(self.is(j, "]") && self.is(j + 1, ":")) {
                    return None;
                }
                j = self.parse_type(j + 2, depth + 1)?;
            } else if self.kind(j) == Some(Kind::Name) && self.is(j + 1, "?") && self.is(j + 2, ":")
            {
                j = self.optional_field(j + 1, j + 3, depth)?;
            } else if self.kind(j) == Some(Kind::Name) && self.is(j + 1, ":") {
                j = self.parse_type(j + 2, depth + 1)?;
            } else {
                j = self.parse_type(j, depth + 1)?;
            }
            if self.is(j, ",") || self.is(j, ";") {
                j += 1;
            } else if !self.is(j, "}") {
                return None;
            }
        }
    }

    /// Parenthesised type, type pack or function type.
    fn parse_paren(&mut self, i: usize, depth: usize) -> Option<(usize, bool)> {
        let mut j = i + 1;
        let mut count = 0;
        while !self.is(j, ")") {
            if self.kind(j) == Some(Kind::Name) && self.is(j + 1, ":") {
                j += 2;
            } else if self.kind(j) == Some(Kind::Name) && self.is(j + 1, "?") && self.is(j + 2, ":")
            {
                j = self.optional_field(j + 1, j + 3, depth)?;
                count += 1;
                if self.is(j, ",") {
                    j += 1;
                    continue;
                }
                if self.is(j, ")") {
                    break;
                }
                return None;
            }
            j = self.parse_type(j, depth + 1)?;
            count += 1;
            if self.is(j, ",") {
                j += 1;
            } else if !self.is(j, ")") {
                return None;
            }
        }
        j += 1;
        if self.is(j, "->") {
            let k = self.parse_type(j + 1, depth + 1)?;
            return Some((k, false));
        }
        Some((j, count == 1))
    }
}

#[cfg(test)]
mod tests {
    use super::to_luau;
    use std::borrow::Cow;

    fn check(src: &str, want: &str) {
        let got = to_luau(src);
        assert_eq!(got, want, "input: {src:?}");
        assert_eq!(src.matches('\n').count(), got.matches('\n').count());
    }

    fn unchanged(src: &str) {
        assert!(
            matches!(to_luau(src), Cow::Borrowed(_)),
            "expected no rewrite of {src:?}, got {:?}",
            to_luau(src)
        );
    }

    #[test]
    fn as_cast_becomes_double_colon() {
        check(
            "local y: number = x as number",
            "local y: number = x :: number",
        );
        check(
            "local o = m as {value: number}",
            "local o = m :: {value: number}",
        );
        check("return f(a) as string?", "return f(a) :: string?");
    }

    #[test]
    fn as_identifier_is_left_alone() {
        unchanged("local as = 1\nprint(as)");
        unchanged("local v = t.as\nt.as = 2");
        unchanged("local q = sql.as.int(x)");
        unchanged("f(as, as)\nlocal x = y\nas = 3");
        unchanged("local z = w\nas(1)");
    }

    #[test]
    fn validators_are_blanked_in_types() {
        check(
            "type X = {age: number @min(0) @max(150)}",
            "type X = {age: number                  }",
        );
        check(
            "type P = {s: string @pattern(\"^(a|b)$\") @min_len(1)}",
            "type P = {s: string                                }",
        );
        unchanged("local s = \"@min(0)\" -- @max(1)");
    }

    #[test]
    fn optional_field_moves_question_mark() {
        check("type O = {age?: number}", "type O = {age : number?}");
        check(
            "type O = {f?: string | number}",
            "type O = {f : (string | number)?}",
        );
        check(
            "type O = {n?: string @min_len(2), m?: T?}",
            "type O = {n : string?            , m : T?}",
        );
    }

    #[test]
    fn readonly_is_blanked_in_types_only() {
        check("type R = readonly {number}", "type R =          {number}");
        check(
            "local function f(x: readonly {string}) end",
            "local function f(x:          {string}) end",
        );
        unchanged("local t = readonly {1, 2}");
        unchanged("local t = readonly({1})");
    }

    #[test]
    fn bare_multi_return_gets_parenthesised() {
        check(
            "local function f(): string?, string?\nend",
            "local function f(): (string?, string?)\nend",
        );
        unchanged("local function f(): (string, number) end");
    }

    #[test]
    fn array_suffix_becomes_table_type() {
        check("local xs: string[] = {}", "local xs: {string} = {}");
        check("local m: Foo.Bar[][] = {}", "local m: {{Foo.Bar}} = {}");
    }

    #[test]
    fn number_literal_type_becomes_number() {
        check("type Count = 3", "type Count = number");
        check(
            "type Mixed = Mode | 3 | -1",
            "type Mixed = Mode | number | number",
        );
    }

    #[test]
    fn goto_continue_becomes_continue() {
        check(
            "for i = 1, 3 do\n  if i == 2 then goto continue end\n  print(i)\n  ::continue::\nend",
            "for i = 1, 3 do\n  if i == 2 then      continue end\n  print(i)\n              \nend",
        );
        check(
            "while true do\n  goto skip\n  print(1)\n  ::skip::\nend",
            "while true do\n  do continue end\n  print(1)\n          \nend",
        );
        // A goto out of an inner loop is a real jump; rewriting it would change behaviour.
        unchanged("for i=1,2 do\n for j=1,2 do goto continue end\n ::continue::\nend");
        unchanged("goto done\n::done::\nprint(1)");
    }

    #[test]
    fn postfix_bang_is_blanked() {
        check("send(conn!, msg)", "send(conn , msg)");
        check("local v = f()!.x", "local v = f() .x");
        unchanged("local s = 'x!' -- y!\nprint(s)");
        unchanged("if a != b then end");
    }

    #[test]
    fn plain_luau_types_are_borrowed() {
        unchanged(
            "export type Map<K, V> = {[K]: V}\nlocal f: (number) -> string? = nil\nlocal c = x :: any\ntype U = A & B | C\n",
        );
        unchanged("local function id<T>(x: T, ...: number): ...T return x end");
    }

    #[test]
    fn nasty_inputs_do_not_panic() {
        for src in [
            "",
            "as",
            "as as as",
            "--[[",
            "[[",
            "[==[ x",
            "\"unterminated",
            "'",
            "x as",
            "type",
            "type X =",
            "local x:",
            "function f(): ",
            "::",
            "::a",
            "@",
            "!",
            "x!",
            "{[",
            "type X = {a?:",
            "local x: T[",
            "type X = (((((",
            "é as ü",
            "x as é[]",
            "goto",
            "::continue::",
            "repeat ::continue:: until",
        ] {
            let out = to_luau(src);
            assert_eq!(src.matches('\n').count(), out.matches('\n').count());
        }
        let deep = "type X = ".to_string() + &"{".repeat(10_000);
        let _ = to_luau(&deep);
        let deep = "local x: ".to_string() + &"(".repeat(10_000);
        let _ = to_luau(&deep);
    }

    #[test]
    fn newline_count_is_preserved_through_rewrites() {
        let src = "type X = {\n a?: number @min(0\n),\n b: string[]\n}\nlocal y = z as X\nfunction f(): a,\n b end";
        let out = to_luau(src);
        assert_eq!(src.matches('\n').count(), out.matches('\n').count());
        assert!(matches!(out, Cow::Owned(_)));
    }
}
