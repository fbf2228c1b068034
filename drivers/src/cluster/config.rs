//! Where a node's cluster settings come from: `weft run --node/--listen/--join/--cluster-secret`
//! over the `cluster` section of the app's `.wippy.yaml` (Wippy's keys). Only reads and checks;
//! binding the port and talking to peers is the transport's.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// The file beside `src/` that holds the node's settings, as in Wippy.
pub const CONFIG_FILE: &str = ".wippy.yaml";
/// The environment variable read for the cluster key when no flag gives it.
pub const SECRET_ENV: &str = "WEFT_CLUSTER_SECRET";
/// The address a node binds when the file names a port but no address.
const DEFAULT_BIND_ADDR: &str = "127.0.0.1";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Join a cluster as this node (PIDs print as {NAME@host|0x…}); overrides cluster.name.
    #[arg(long = "node", value_name = "NAME")]
    pub node: Option<String>,
    /// The one port this node serves its peers on (HOST:PORT); overrides
    /// cluster.internode.bind_addr / bind_port.
    #[arg(long = "listen", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Members to join through, comma-separated (any one that answers is enough); overrides
    /// cluster.membership.join_addrs.
    #[arg(long = "join", value_name = "HOST:PORT[,HOST:PORT…]")]
    pub join: Option<String>,
    /// The cluster's secret key (peers with another key never join); also WEFT_CLUSTER_SECRET;
    /// overrides cluster.membership.secret_key.
    #[arg(long = "cluster-secret", value_name = "KEY")]
    pub secret: Option<String>,
}

/// A node's resolved place in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub node: String,
    /// The listen address as written, and what names it (a flag or a key) for error messages.
    pub listen: String,
    pub listen_from: &'static str,
    pub listen_addr: SocketAddr,
    pub join: Vec<String>,
    pub secret: Vec<u8>,
}

/// The `cluster` section of `.wippy.yaml`, every key optional.
#[derive(Debug, Default, PartialEq)]
struct FileCluster {
    enabled: Option<bool>,
    name: Option<String>,
    bind_addr: Option<String>,
    bind_port: Option<u16>,
    join_addrs: Option<Vec<String>>,
    secret_key: Option<String>,
}

type Yaml = serde_json::Value;

fn keys_of(v: &Yaml, path: &str, known: &[&str]) -> Result<(), String> {
    let Some(map) = v.as_object() else {
        return Err(format!(
            "{path}: expected a mapping of {}",
            known.join(", ")
        ));
    };
    for k in map.keys() {
        if !known.contains(&k.as_str()) {
            let hint = crate::project::did_you_mean(k, known.iter().copied());
            return Err(format!(
                "{path}.{k}: unknown key{hint} (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

fn string(v: &Yaml, path: &str) -> Result<String, String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{path}: expected a string, found {v}")),
    }
}

/// Reads the `cluster` section of a parsed `.wippy.yaml`; other top-level keys are Wippy's and
/// left alone, unknown keys under `cluster` are errors naming them.
fn read_section(doc: &Yaml) -> Result<FileCluster, String> {
    let mut out = FileCluster::default();
    let Some(c) = doc.get("cluster") else {
        return Ok(out);
    };
    if c.is_null() {
        return Ok(out);
    }
    keys_of(
        c,
        "cluster",
        &["enabled", "name", "internode", "membership"],
    )?;
    if let Some(v) = c.get("enabled") {
        out.enabled = Some(
            v.as_bool()
                .ok_or_else(|| format!("cluster.enabled: expected true or false, found {v}"))?,
        );
    }
    if let Some(v) = c.get("name") {
        out.name = Some(string(v, "cluster.name")?);
    }
    if let Some(i) = c.get("internode").filter(|v| !v.is_null()) {
        keys_of(i, "cluster.internode", &["bind_addr", "bind_port"])?;
        if let Some(v) = i.get("bind_addr") {
            out.bind_addr = Some(string(v, "cluster.internode.bind_addr")?);
        }
        if let Some(v) = i.get("bind_port") {
            let port = match v {
                Yaml::Number(n) => n.as_u64(),
                Yaml::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            out.bind_port = Some(port.and_then(|p| u16::try_from(p).ok()).ok_or_else(|| {
                format!("cluster.internode.bind_port: expected a port number 0-65535, found {v}")
            })?);
        }
    }
    if let Some(m) = c.get("membership").filter(|v| !v.is_null()) {
        keys_of(m, "cluster.membership", &["join_addrs", "secret_key"])?;
        if let Some(v) = m.get("join_addrs") {
            let path = "cluster.membership.join_addrs";
            out.join_addrs = Some(match v {
                Yaml::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| string(a, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
                Yaml::String(s) => split_list(s),
                Yaml::Null => Vec::new(),
                _ => return Err(format!("{path}: expected a list of HOST:PORT, found {v}")),
            });
        }
        if let Some(v) = m.get("secret_key") {
            out.secret_key = Some(string(v, "cluster.membership.secret_key")?);
        }
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// A node name that can stand in a PID (`{name@host|0x…}`) and in request metadata.
pub fn check_name(name: &str, from: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!(
            "{from} '{name}': a node name is 1-64 letters, digits, '-', '_' or '.'"
        ));
    }
    if name == weft_engine::pid::NodeId::LOCAL {
        return Err(format!(
            "{from} '{name}': 'local' names the standalone node; pick another name"
        ));
    }
    Ok(())
}

/// `HOST:PORT` resolved to one socket address, or an error naming where it came from.
pub fn parse_addr(addr: &str, from: &str) -> Result<SocketAddr, String> {
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| format!("{from} '{addr}': not a HOST:PORT address ({e})"))?;
    let mut all: Vec<SocketAddr> = resolved.collect();
    // Prefer IPv4 for names like localhost, so both ends agree on one address.
    all.sort_by_key(|a| !a.is_ipv4());
    all.into_iter()
        .next()
        .ok_or_else(|| format!("{from} '{addr}': resolves to no address"))
}

/// Reads `root/.wippy.yaml` (absent: no settings) and puts the flags over it. `Ok(None)`: a
/// standalone node.
pub fn resolve(
    root: &Path,
    args: &ClusterArgs,
    env_secret: Option<String>,
) -> Result<Option<Settings>, String> {
    let path = root.join(CONFIG_FILE);
    let file = if path.is_file() {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Yaml = if text.trim().is_empty() {
            Yaml::Null
        } else {
            serde_saphyr::from_str(&text).map_err(|e| format!("{CONFIG_FILE}: {e}"))?
        };
        read_section(&doc).map_err(|e| format!("{CONFIG_FILE}: {e}"))?
    } else {
        FileCluster::default()
    };
    settle(file, args, env_secret)
}

fn settle(
    file: FileCluster,
    args: &ClusterArgs,
    env_secret: Option<String>,
) -> Result<Option<Settings>, String> {
    let by_flags = args.node.is_some() || args.listen.is_some() || args.join.is_some();
    if !by_flags && file.enabled != Some(true) {
        if args.secret.is_some() {
            return Err(
                "--cluster-secret: this node is not in a cluster (give --node NAME and \
                        --listen HOST:PORT, or set cluster.enabled in .wippy.yaml)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let (node, node_from) =
        match (&args.node, &file.name) {
            (Some(n), _) => (n.clone(), "--node"),
            (None, Some(n)) => (n.clone(), "cluster.name"),
            (None, None) => return Err(
                "a cluster node needs a name: give --node NAME (or cluster.name in .wippy.yaml)"
                    .into(),
            ),
        };
    check_name(&node, node_from)?;
    let (listen, listen_from) = match (&args.listen, &file.bind_port) {
        (Some(l), _) => (l.clone(), "--listen"),
        (None, Some(port)) => {
            let host = file.bind_addr.as_deref().unwrap_or(DEFAULT_BIND_ADDR);
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            (format!("{host}:{port}"), "cluster.internode.bind_port")
        }
        (None, None) => {
            return Err(format!(
                "cluster node '{node}' needs an address to serve its peers on: give --listen \
                 HOST:PORT (or cluster.internode.bind_port in .wippy.yaml)"
            ))
        }
    };
    let listen_addr = parse_addr(&listen, listen_from)?;
    if listen_addr.ip().is_unspecified() {
        return Err(format!(
            "{listen_from} '{listen}': peers reach this node at the address it listens on; \
             name one they can reach instead of {}",
            listen_addr.ip()
        ));
    }
    let (join, join_from) = match (&args.join, &file.join_addrs) {
        (Some(j), _) => (split_list(j), "--join"),
        (None, Some(j)) => (j.clone(), "cluster.membership.join_addrs"),
        (None, None) => (Vec::new(), "--join"),
    };
    for a in &join {
        parse_addr(a, join_from)?;
    }
    let secret = args
        .secret
        .clone()
        .or(env_secret)
        .or(file.secret_key)
        .unwrap_or_default();
    Ok(Some(Settings {
        node,
        listen,
        listen_from,
        listen_addr,
        join,
        secret: secret.into_bytes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<FileCluster, String> {
        let doc: Yaml = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        read_section(&doc)
    }

    #[test]
    fn wippy_keys_are_read_and_flags_win_over_them() {
        let file = section(
            "logger: {level: info}\ncluster:\n  enabled: true\n  name: n1\n  internode:\n    \
             bind_addr: 127.0.0.1\n    bind_port: 7101\n  membership:\n    join_addrs: \
             [\"127.0.0.1:7102\", \"127.0.0.1:7103\"]\n    secret_key: s3\n",
        )
        .unwrap();
        let s = settle(file, &ClusterArgs::default(), None)
            .unwrap()
            .unwrap();
        assert_eq!(s.node, "n1");
        assert_eq!(s.listen, "127.0.0.1:7101");
        assert_eq!(s.join, vec!["127.0.0.1:7102", "127.0.0.1:7103"]);
        assert_eq!(s.secret, b"s3");

        let file =
            section("cluster: {enabled: true, name: n1, internode: {bind_port: 7101}}").unwrap();
        let args = ClusterArgs {
            node: Some("n9".into()),
            listen: Some("127.0.0.1:7200".into()),
            join: Some("127.0.0.1:7201, 127.0.0.1:7202".into()),
            secret: None,
        };
        let s = settle(file, &args, Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.node.as_str(), s.listen.as_str()),
            ("n9", "127.0.0.1:7200")
        );
        assert_eq!(s.listen_from, "--listen");
        assert_eq!(s.join, vec!["127.0.0.1:7201", "127.0.0.1:7202"]);
        assert_eq!(s.secret, b"from-env");
    }

    #[test]
    fn no_flags_and_no_enabled_cluster_is_a_standalone_node() {
        let file = section("cluster: {enabled: false, name: n1}").unwrap();
        assert_eq!(settle(file, &ClusterArgs::default(), None), Ok(None));
        assert_eq!(
            settle(FileCluster::default(), &ClusterArgs::default(), None),
            Ok(None)
        );
    }

    #[test]
    fn bad_settings_name_the_key_or_flag() {
        let e = section("cluster: {internode: {bind_prot: 7}}").unwrap_err();
        assert!(
            e.contains("cluster.internode.bind_prot: unknown key"),
            "{e}"
        );
        assert!(e.contains("did you mean bind_port"), "{e}");
        let e = section("cluster: {gossip: 1}").unwrap_err();
        assert!(e.starts_with("cluster.gossip: unknown key"), "{e}");
        let e = section("cluster: {internode: {bind_port: 70000}}").unwrap_err();
        assert!(
            e.contains("cluster.internode.bind_port: expected a port"),
            "{e}"
        );
        let e = section("cluster: {enabled: yes please}").unwrap_err();
        assert!(e.contains("cluster.enabled"), "{e}");

        let args = |node: &str, listen: &str, join: &str| ClusterArgs {
            node: Some(node.into()),
            listen: Some(listen.into()),
            join: (!join.is_empty()).then(|| join.into()),
            secret: None,
        };
        let run = |a: ClusterArgs| settle(FileCluster::default(), &a, None).unwrap_err();
        assert!(run(args("n1", "nowhere", "")).starts_with("--listen 'nowhere'"));
        assert!(run(args("n1", "0.0.0.0:7000", "")).contains("name one they can reach"));
        assert!(run(args("n@1", "127.0.0.1:7000", "")).starts_with("--node 'n@1'"));
        assert!(run(args("local", "127.0.0.1:7000", "")).contains("standalone"));
        assert!(run(args("n1", "127.0.0.1:7000", "127.0.0.1:1,bad")).starts_with("--join 'bad'"));
        let no_listen = ClusterArgs {
            node: Some("n1".into()),
            ..Default::default()
        };
        assert!(run(no_listen).contains("--listen HOST:PORT"));
        let no_name = ClusterArgs {
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        };
        assert!(run(no_name).contains("--node NAME"));
    }
}
