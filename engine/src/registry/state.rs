//! A registry state: entries by id in a persistent ordered map, plus the reverse index of the
//! references between entries that validation follows.
//!
//! Why a persistent map: every commit makes a new state while the previous one stays alive (the
//! version history, snapshot slots, readers holding a `registry.snapshot()`, a prepared state in
//! flight next to the current one). With a `BTreeMap` each commit copied all n entries; with
//! `imbl::OrdMap` (a B-tree whose nodes are shared between versions and copied on write) a clone
//! is O(1) and a commit copies only the O(log n) nodes on the paths to the keys it changes.
//! `OrdMap` iterates in key order and never hashes, so states stay deterministic. (imbl is the
//! maintained fork of `im`; `rpds`'s red-black tree would also do, with one node per entry
//! instead of chunks of 64, i.e. more allocations and slower iteration.)
//!
//! The reverse index (`refs`: target id → ids of the entries that reference it: a Lua entry's
//! `imports:`, a service's `process:` and `host:`) is persistent too and kept in step by
//! `insert`/`remove`, so a commit checks only the entries it changed and their dependents
//! (`referrers`), never the whole state.
//!
//! Reads go through `Deref` to the map (`get`, `iter`, `values`, `len`, ...); writes only
//! through `insert`/`remove`, which keep the index right.

use crate::entries::{Entry, EntryKind};
use imbl::{OrdMap, OrdSet};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::rc::Rc;

#[derive(Clone, Default)]
pub struct State {
    entries: OrdMap<String, Rc<Entry>>,
    refs: OrdMap<String, OrdSet<String>>,
}

/// The ids `e` names and validation resolves: its imports (Lua entries; malformed imports name
/// nothing, the entry's own check reports them) and a service's process and host.
pub(crate) fn references(e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    if e.kind.is_lua() {
        out.extend(
            crate::lua::imports_of(e)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, id)| id),
        );
    }
    if e.kind == EntryKind::ProcessService {
        for f in ["process", "host"] {
            if let Some(s) = e.data.get(f).and_then(|v| v.as_str()) {
                out.push(s.to_string());
            }
        }
    }
    out
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Puts `e` under `id` (its id); the entry it replaces, if any.
    pub fn insert(&mut self, id: String, e: Rc<Entry>) -> Option<Rc<Entry>> {
        let old = self.entries.insert(id.clone(), e.clone());
        if let Some(o) = &old {
            self.unlink(&id, o);
        }
        for target in references(&e) {
            let mut set = self.refs.get(&target).cloned().unwrap_or_default();
            set.insert(id.clone());
            self.refs.insert(target, set);
        }
        old
    }

    pub fn remove(&mut self, id: &str) -> Option<Rc<Entry>> {
        let old = self.entries.remove(id);
        if let Some(o) = &old {
            self.unlink(id, o);
        }
        old
    }

    fn unlink(&mut self, id: &str, e: &Entry) {
        for target in references(e) {
            let Some(mut set) = self.refs.get(&target).cloned() else {
                continue;
            };
            set.remove(id);
            if set.is_empty() {
                self.refs.remove(&target);
            } else {
                self.refs.insert(target, set);
            }
        }
    }

    /// Ids of the entries that reference `id` (whether or not `id` exists), in id order.
    pub fn referrers(&self, id: &str) -> impl Iterator<Item = &String> {
        self.refs.get(id).into_iter().flat_map(|s| s.iter())
    }

    /// The entries as a `BTreeMap` (the node's live view); O(n).
    pub fn to_btree(&self) -> BTreeMap<String, Rc<Entry>> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether the reverse index equals one rebuilt from the entries (tests).
    #[cfg(test)]
    pub(crate) fn index_is_consistent(&self) -> bool {
        let mut fresh = State::new();
        for (k, v) in self.entries.iter() {
            fresh.insert(k.clone(), v.clone());
        }
        fresh.refs == self.refs
    }
}

impl Deref for State {
    type Target = OrdMap<String, Rc<Entry>>;
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        self.entries == other.entries
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl FromIterator<(String, Rc<Entry>)> for State {
    fn from_iter<I: IntoIterator<Item = (String, Rc<Entry>)>>(iter: I) -> State {
        let mut s = State::new();
        for (k, v) in iter {
            s.insert(k, v);
        }
        s
    }
}

impl<const N: usize> From<[(String, Rc<Entry>); N]> for State {
    fn from(a: [(String, Rc<Entry>); N]) -> State {
        a.into_iter().collect()
    }
}

impl From<&BTreeMap<String, Rc<Entry>>> for State {
    fn from(m: &BTreeMap<String, Rc<Entry>>) -> State {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<'a> IntoIterator for &'a State {
    type Item = (&'a String, &'a Rc<Entry>);
    type IntoIter = imbl::ordmap::Iter<'a, String, Rc<Entry>, imbl::shared_ptr::DefaultSharedPtr>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}
