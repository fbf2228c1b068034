//! Cluster-wide names (`process.registry.register(name, pid, process.registry.EVENTUAL)`):
//! each node keeps, per name, the claim that wins (`NameClaim::wins_over`) among those it heard
//! of. A claim goes to every node up when it is made, and a node newly up gets every claim of
//! this node's processes, so after a partition heals both sides exchange theirs and every node
//! keeps the same winner. A node that holds a winning claim answers a losing one with it, so the
//! loser's node learns too.
//!
//! The losing owner is told by a message on topic `cluster.name.lost` (no sender) whose payload
//! is a table `{name = <name>, owner = <winning PID>}`. Names of a process go when it ends
//! (`NameRelease` to every node up), and names of a node go when the node goes down.

use super::frame::{ClaimKey, Frame, NameClaim};
use crate::core::err;
use crate::node::*;
use crate::pid::{NodeId, Pid};
use crate::value::{kind, ErrorValue, Table, Value};

/// The topic a process that lost a cluster-wide name to another claim gets a message on.
pub const NAME_LOST_TOPIC: &str = "cluster.name.lost";

impl Core {
    /// The owner of cluster-wide `name`, if any.
    pub(crate) fn cluster_name(&self, name: &str) -> Option<Pid> {
        self.cluster
            .as_ref()?
            .names
            .get(name)
            .map(|c| c.owner.clone())
    }

    pub(crate) fn up_peers(&self) -> Vec<NodeId> {
        self.cluster
            .as_ref()
            .map(|c| {
                c.peers
                    .iter()
                    .filter(|(_, p)| p.up)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tell_every_peer(&mut self, f: &Frame) {
        for n in self.up_peers() {
            let _ = self.transmit(&n, f);
        }
    }

    /// Claims `name` cluster-wide for local process `owner`.
    pub(crate) fn claim_name(&mut self, name: &str, owner: u64) -> Result<(), ErrorValue> {
        if self.cluster.is_none() {
            return Err(err(
                kind::INTERNAL,
                "distributed registry not available on a standalone node",
            ));
        }
        if name.is_empty() {
            return Err(err(kind::INVALID, "name must not be empty"));
        }
        let Some(pid) = self.pid_of(owner).cloned() else {
            return Err(err(kind::NOT_FOUND, "process not found"));
        };
        let c = self.cluster.as_mut().expect("checked");
        match c.names.get(name) {
            Some(cl) if cl.owner == pid => return Ok(()),
            Some(_) => {
                return Err(err(
                    kind::ALREADY_EXISTS,
                    format!("name already registered: {name}"),
                ))
            }
            None => {}
        }
        c.lamport += 1;
        let claim = NameClaim {
            name: name.to_string(),
            owner: pid,
            key: ClaimKey {
                lamport: c.lamport,
                node: c.cfg.node.clone(),
            },
        };
        c.names.insert(name.to_string(), claim.clone());
        self.tell_every_peer(&Frame::NameClaim(claim));
        Ok(())
    }

    /// Releases cluster-wide `name` when a process of this node holds it.
    pub(crate) fn release_name(&mut self, name: &str) -> bool {
        let me = self.node.clone();
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        match c.names.get(name) {
            Some(cl) if cl.owner.node == me => {
                let owner = cl.owner.clone();
                c.names.remove(name);
                self.tell_every_peer(&Frame::NameRelease {
                    name: name.to_string(),
                    owner,
                });
                true
            }
            _ => false,
        }
    }

    /// A local process ended: its cluster-wide names go.
    pub(crate) fn release_cluster_names(&mut self, dead: &Pid) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let held: Vec<String> = c
            .names
            .iter()
            .filter(|(_, cl)| cl.owner == *dead)
            .map(|(n, _)| n.clone())
            .collect();
        for n in held {
            self.release_name(&n);
        }
    }

    /// Sends a newly up node every claim of this node's processes.
    pub(crate) fn send_claims_to(&mut self, node: &NodeId) {
        let me = self.node.clone();
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let ours: Vec<NameClaim> = c
            .names
            .values()
            .filter(|cl| cl.owner.node == me)
            .cloned()
            .collect();
        for cl in ours {
            let _ = self.transmit(node, &Frame::NameClaim(cl));
        }
    }

    pub(crate) fn on_name_claim(&mut self, from: &NodeId, claim: NameClaim) {
        let me = self.node.clone();
        // A claim for a process of this node that this node does not hold (an earlier run's,
        // or one that ended): tell the sender it is gone.
        if claim.owner.node == me {
            let held = self
                .cluster
                .as_ref()
                .and_then(|c| c.names.get(&claim.name))
                .is_some_and(|cl| *cl == claim);
            if !held {
                let f = Frame::NameRelease {
                    name: claim.name,
                    owner: claim.owner,
                };
                let _ = self.transmit(from, &f);
            }
            return;
        }
        if !self
            .cluster
            .as_ref()
            .is_some_and(|c| c.is_up(&claim.owner.node))
        {
            return; // a claim of a node this node holds down
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.lamport = c.lamport.max(claim.key.lamport);
        let current = c.names.get(&claim.name).cloned();
        match current {
            None => {
                c.names.insert(claim.name.clone(), claim);
            }
            Some(cur) if cur == claim => {}
            // The owner's node speaks for its own processes: it holds one owner per name, so
            // its claim replaces one of ours for another of its processes (a stale one that
            // came forwarded after its release).
            Some(cur) if cur.owner.node == *from && claim.owner.node == *from => {
                c.names.insert(claim.name.clone(), claim);
            }
            Some(cur) if claim.wins_over(&cur) => {
                c.names.insert(claim.name.clone(), claim.clone());
                if cur.owner.node == me {
                    self.name_lost(&cur, &claim);
                    // Withdraw the lost claim everywhere: a node that took it while holding no
                    // claim (the winner may since have been released there) would keep it.
                    self.tell_every_peer(&Frame::NameRelease {
                        name: cur.name.clone(),
                        owner: cur.owner.clone(),
                    });
                }
            }
            Some(cur) => {
                let _ = self.transmit(from, &Frame::NameClaim(cur));
            }
        }
    }

    pub(crate) fn on_name_release(&mut self, name: &str, owner: &Pid) {
        if let Some(c) = self.cluster.as_mut() {
            if c.names.get(name).is_some_and(|cl| cl.owner == *owner) {
                c.names.remove(name);
            }
        }
    }

    /// Tells the local owner of `lost` that `won` took its name.
    fn name_lost(&mut self, lost: &NameClaim, won: &NameClaim) {
        let Ok(owner) = self.resolve_pid(&lost.owner) else {
            return;
        };
        let data = Table::default()
            .with("name", Value::from(lost.name.as_str()))
            .with("owner", Value::from(won.owner.to_string()));
        self.log(
            Level::Warn,
            "cluster-wide name lost to another claim",
            vec![
                ("name".into(), lost.name.clone()),
                ("owner".into(), lost.owner.to_string()),
                ("winner".into(), won.owner.to_string()),
            ],
        );
        self.deliver(
            None,
            owner,
            NAME_LOST_TOPIC.into(),
            vec![Value::table(data)],
        );
    }
}
