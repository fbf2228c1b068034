//! The body of the dispatch frames: the collector's messages (`crate::dispatch::types`) in the
//! frame encoding (texts and byte strings length-prefixed, maps as a count and pairs, optional
//! fields behind a flag byte, `Status.code` as its raw `i32` in a u64). The RPC kind is one
//! byte: 0 Connect, 1 Serve, 2 Dispatch.

use super::{FrameError, FrameReader, Writer};
use crate::dispatch::types::*;
use std::collections::BTreeMap;

impl Writer<'_> {
    fn map(&mut self, m: &BTreeMap<String, String>) {
        self.u64(m.len() as u64);
        for (k, v) in m {
            self.str(k);
            self.str(v);
        }
    }

    fn strs(&mut self, v: &[String]) {
        self.u64(v.len() as u64);
        for s in v {
            self.str(s);
        }
    }

    fn any(&mut self, a: &Option<Any>) {
        match a {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.str(&a.type_url);
                self.u64(a.value.len() as u64);
                self.0.extend_from_slice(&a.value);
            }
        }
    }

    fn service(&mut self, s: &Option<ServiceRef>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(&s.namespace);
                self.str(&s.service_name);
            }
        }
    }

    fn status(&mut self, s: &Option<Status>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.u64(s.code as i64 as u64);
                self.str(&s.message);
                self.map(&s.details);
            }
        }
    }

    pub(super) fn request(&mut self, r: &Request) {
        match r {
            Request::Connect(c) => {
                self.u8(0);
                self.str(&c.address);
                self.strs(&c.namespaces);
                self.map(&c.metadata);
            }
            Request::Serve(s) => {
                self.u8(1);
                self.str(&s.namespace);
                self.service(&s.service);
                self.str(&s.method_name);
                self.any(&s.input);
                self.map(&s.execution_context);
            }
            Request::Dispatch(d) => {
                self.u8(2);
                self.str(&d.namespace);
                self.service(&d.service);
                self.str(&d.method_name);
                self.any(&d.input);
                self.str(&d.target_collector_id);
                self.map(&d.routing_hints);
            }
        }
    }

    pub(super) fn response(&mut self, r: &Response) {
        match r {
            Response::Connect(c) => {
                self.u8(0);
                self.status(&c.status);
                self.str(&c.connection_id);
                self.strs(&c.shared_namespaces);
                self.str(&c.target_collector_id);
            }
            Response::Serve(s) => {
                self.u8(1);
                self.status(&s.status);
                self.any(&s.output);
                self.str(&s.executor_id);
            }
            Response::Dispatch(d) => {
                self.u8(2);
                self.status(&d.status);
                self.any(&d.output);
                self.str(&d.handled_by_collector_id);
            }
        }
    }

    pub(super) fn namespaces(&mut self, namespaces: &[String]) {
        self.strs(namespaces);
    }
}

impl FrameReader<'_> {
    fn flag(&mut self, field: &'static str) -> Result<bool, FrameError> {
        self.bool(field)
    }

    fn map(&mut self, field: &'static str) -> Result<BTreeMap<String, String>, FrameError> {
        let n = self.0.count(16).map_err(|e| Self::wrap(field, e))?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.str(field)?;
            // Keys strictly increasing, as they are written: one map, one encoding.
            if m.last_key_value().is_some_and(|(last, _)| *last >= k) {
                return Err(FrameError::BadFlag { field, byte: 0 });
            }
            let v = self.str(field)?;
            m.insert(k, v);
        }
        Ok(m)
    }

    pub(super) fn strs(&mut self, field: &'static str) -> Result<Vec<String>, FrameError> {
        let n = self.0.count(8).map_err(|e| Self::wrap(field, e))?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.str(field)?);
        }
        Ok(v)
    }

    fn any(&mut self, field: &'static str) -> Result<Option<Any>, FrameError> {
        if !self.flag(field)? {
            return Ok(None);
        }
        let type_url = self.str(field)?;
        let value = self.0.bytes().map_err(|e| Self::wrap(field, e))?.to_vec();
        Ok(Some(Any { type_url, value }))
    }

    fn service(&mut self, field: &'static str) -> Result<Option<ServiceRef>, FrameError> {
        if !self.flag(field)? {
            return Ok(None);
        }
        Ok(Some(ServiceRef {
            namespace: self.str(field)?,
            service_name: self.str(field)?,
        }))
    }

    fn status(&mut self, field: &'static str) -> Result<Option<Status>, FrameError> {
        if !self.flag(field)? {
            return Ok(None);
        }
        let code = self.u64(field)? as i64;
        let code = i32::try_from(code).map_err(|_| FrameError::BadFlag { field, byte: 0xff })?;
        Ok(Some(Status {
            code,
            message: self.str(field)?,
            details: self.map(field)?,
        }))
    }

    pub(super) fn request(&mut self) -> Result<Request, FrameError> {
        const F: &str = "dispatch.request";
        Ok(match self.u8(F)? {
            0 => Request::Connect(ConnectRequest {
                address: self.str(F)?,
                namespaces: self.strs(F)?,
                metadata: self.map(F)?,
            }),
            1 => Request::Serve(ServeRequest {
                namespace: self.str(F)?,
                service: self.service(F)?,
                method_name: self.str(F)?,
                input: self.any(F)?,
                execution_context: self.map(F)?,
            }),
            2 => Request::Dispatch(DispatchRequest {
                namespace: self.str(F)?,
                service: self.service(F)?,
                method_name: self.str(F)?,
                input: self.any(F)?,
                target_collector_id: self.str(F)?,
                routing_hints: self.map(F)?,
            }),
            byte => return Err(FrameError::BadFlag { field: F, byte }),
        })
    }

    pub(super) fn response(&mut self) -> Result<Response, FrameError> {
        const F: &str = "dispatch_reply.response";
        Ok(match self.u8(F)? {
            0 => Response::Connect(ConnectResponse {
                status: self.status(F)?,
                connection_id: self.str(F)?,
                shared_namespaces: self.strs(F)?,
                target_collector_id: self.str(F)?,
            }),
            1 => Response::Serve(ServeResponse {
                status: self.status(F)?,
                output: self.any(F)?,
                executor_id: self.str(F)?,
            }),
            2 => Response::Dispatch(DispatchResponse {
                status: self.status(F)?,
                output: self.any(F)?,
                handled_by_collector_id: self.str(F)?,
            }),
            byte => return Err(FrameError::BadFlag { field: F, byte }),
        })
    }
}
