//! Function calls and `process.exec`: the callee runs as a short-lived process whose end
//! completes a tag of the caller; context values flow down; a call can be canceled.

use crate::command::CallOptions;
use crate::core::err;
use crate::entries::EntryKind;
use crate::node::*;
use crate::value::{kind, ErrorValue, Value};
use std::rc::Rc;

impl Core {
    /// The context for a child of `caller`: the caller's, overlaid with `own` (None inherits).
    pub(crate) fn child_context(
        &self,
        caller: u64,
        own: Option<crate::command::ContextOverlay>,
    ) -> Option<Context> {
        let own = own.filter(|o| !o.is_empty())?;
        let mut m = self
            .procs
            .get(&caller)
            .map(|p| (*p.context).clone())
            .unwrap_or_default();
        m.extend(own);
        Some(Rc::new(m))
    }

    /// Stops the callee of the call `caller` is waiting on with `tag` (for a call served by
    /// another node: withdraws the dispatch, which cancels the remote run); false when it
    /// already ended.
    pub(crate) fn cancel_call(&mut self, caller: u64, tag: u64) -> bool {
        let callee = self
            .procs
            .get(&caller)
            .and_then(|p| p.calls.iter().find(|(t, _)| *t == tag).map(|(_, c)| *c));
        match callee {
            Some(c) if self.procs.contains_key(&c) => {
                self.kill(c, err(kind::CANCELED, "function call canceled"));
                true
            }
            Some(_) => false,
            None => self.dispatch_cancel(caller, tag),
        }
    }

    /// Starts `funcs.call`/`async` of `target` for `caller`: the callee runs as a short-lived
    /// process on FUNCTION_HOST and its end completes the returned tag of the caller (a
    /// `Signal::Completed`, dropped if the caller is gone). Returns (tag, callee id).
    pub fn call(
        &mut self,
        caller: u64,
        target: &str,
        args: Vec<Value>,
        context: Option<Context>,
        options: CallOptions,
    ) -> Result<u64, ErrorValue> {
        self.call_on(caller, target, FUNCTION_HOST, args, context, Some(options))
    }

    /// `process.exec`: runs a process entry on `host` and answers the caller's tag with its result.
    pub fn exec(
        &mut self,
        caller: u64,
        target: &str,
        host: &str,
        args: Vec<Value>,
        context: Option<Context>,
    ) -> Result<u64, ErrorValue> {
        self.call_on(caller, target, host, args, context, None)
    }

    /// A call of a `function.lua` entry with its options (`function`: Some), or of a
    /// `process.lua` entry (`process.exec`: None).
    pub(crate) fn call_on(
        &mut self,
        caller: u64,
        target: &str,
        host: &str,
        args: Vec<Value>,
        context: Option<Context>,
        function: Option<CallOptions>,
    ) -> Result<u64, ErrorValue> {
        let timeout_ns = function.as_ref().and_then(|o| o.timeout_ns);
        let want_kind = match function {
            Some(_) => EntryKind::FunctionLua,
            None => EntryKind::ProcessLua,
        };
        let valid = match target.split_once(':') {
            Some((ns, name)) => !ns.is_empty() && !name.is_empty(),
            None => false,
        };
        if !valid {
            return Err(err(
                kind::INVALID,
                format!("invalid function id (want namespace:name): '{target}'"),
            ));
        }
        match self.entries.get(target) {
            Some(e) if e.kind == want_kind => {}
            None if function.is_some() => {
                // Served by another node of the cluster, maybe: a dispatch answers the tag.
                let options = function.unwrap_or_default();
                if let Some(r) = self.dispatch_call(caller, target, &args, options) {
                    return r;
                }
                return Err(err(
                    kind::NOT_FOUND,
                    format!("function not found: {target}"),
                ));
            }
            _ => {
                let what = if want_kind == EntryKind::FunctionLua {
                    "function"
                } else {
                    "process"
                };
                return Err(err(kind::NOT_FOUND, format!("{what} not found: {target}")));
            }
        }
        let tag = self
            .procs
            .get_mut(&caller)
            .ok_or_else(|| err(kind::INTERNAL, "caller is not a live process"))?
            .tags
            .issue(crate::command::ids::FUNCTION_CALL)
            .tag;
        let r = self.spawn(
            target,
            host,
            args,
            SpawnOptions {
                parent: Some(caller),
                reply: Some(tag),
                context,
                ..Default::default()
            },
        );
        match r {
            Ok(pid) => {
                if let Some(p) = self.procs.get_mut(&caller) {
                    p.calls.retain(|(_, c)| *c != pid.uniq);
                    p.calls.push((tag, pid.uniq));
                }
                if let Some(after_ns) = timeout_ns {
                    let at = self.now.saturating_add(after_ns);
                    let target = crate::timers::Target::CallTimeout {
                        caller,
                        tag,
                        callee: pid.uniq,
                        after_ns,
                    };
                    self.timers.arm(
                        at,
                        crate::timers::Timer {
                            target,
                            period: None,
                        },
                    );
                }
                Ok(tag)
            }
            Err(e) => {
                if let Some(p) = self.procs.get_mut(&caller) {
                    p.tags.complete(tag);
                }
                Err(e)
            }
        }
    }
}
