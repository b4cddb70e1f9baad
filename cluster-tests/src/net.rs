//! Where nodes live on the network. As root (CI), each node gets its own network namespace,
//! joined to a bridge in the root namespace by a veth pair, so a partition is real: blackhole
//! routes between the namespaces drop every packet between the two sides, while the test
//! (in the root namespace) still reaches both. Elsewhere every node listens on loopback and
//! partitions are not possible (those tests skip, saying so).

use std::process::Command;

/// One node's place on the network.
#[derive(Clone, Debug)]
pub struct Host {
    pub ip: String,
    /// Its network namespace, when there are namespaces.
    pub ns: Option<String>,
}

#[derive(Debug)]
enum Mode {
    Namespaces { tag: String, subnet: String },
    Loopback,
}

/// The test network.
#[derive(Debug)]
pub struct Net {
    mode: Mode,
    hosts: Vec<Host>,
    /// Blackhole routes in place: (namespace, destination IP).
    cuts: std::sync::Mutex<Vec<(String, String)>>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Net {
    /// A network for up to `hosts` nodes: namespaces when this process may make them
    /// (`FIRN_TEST_LOOPBACK=1` forces loopback).
    pub fn new(hosts: usize) -> Self {
        if std::env::var_os("FIRN_TEST_LOOPBACK").is_none() && is_root() {
            match Self::namespaces(hosts) {
                Ok(net) => return net,
                Err(e) => eprintln!("network namespaces unavailable ({e}); nodes use loopback"),
            }
        }
        Self {
            mode: Mode::Loopback,
            hosts: (0..hosts)
                .map(|_| Host {
                    ip: "127.0.0.1".into(),
                    ns: None,
                })
                .collect(),
            cuts: Default::default(),
        }
    }

    fn namespaces(hosts: usize) -> Result<Self, String> {
        clean_stale();
        let pid = std::process::id();
        let tag = format!("{:x}", (pid ^ rand::random::<u32>()) & 0xffff);
        let third = 100 + (rand::random::<u8>() % 150);
        let subnet = format!("10.{}.{third}", 200 + (pid % 50));
        let bridge = format!("fbr{tag}");
        let mut net = Self {
            mode: Mode::Namespaces {
                tag: tag.clone(),
                subnet: subnet.clone(),
            },
            hosts: Vec::new(),
            cuts: Default::default(),
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let ns = format!("fnet-{pid}-{tag}-{i}");
            let (outside, inside) = (format!("fv{tag}h{i}"), format!("fp{tag}h{i}"));
            let ip = format!("{subnet}.{}", 10 + i);
            run(&["ip", "netns", "add", &ns])?;
            // Recorded now, so a failure below still cleans it up.
            net.hosts.push(Host {
                ip: ip.clone(),
                ns: Some(ns.clone()),
            });
            run(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            run(&["ip", "link", "set", &inside, "netns", &ns])?;
            run(&["ip", "link", "set", &outside, "master", &bridge])?;
            run(&["ip", "link", "set", &outside, "up"])?;
            let exec = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(args);
                run(&all)
            };
            exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &inside])?;
            exec(&["ip", "link", "set", &inside, "up"])?;
            exec(&["ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// True when partitions are possible (nodes in namespaces).
    pub fn partitionable(&self) -> bool {
        matches!(self.mode, Mode::Namespaces { .. })
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The address services of the test itself (the S3 server) listen on, reachable from
    /// every node.
    pub fn gateway(&self) -> String {
        match &self.mode {
            Mode::Namespaces { subnet, .. } => format!("{subnet}.1"),
            Mode::Loopback => "127.0.0.1".into(),
        }
    }

    /// A command that runs `program` on host `i`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        match &self.hosts[i].ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Drops every packet between the hosts of `a` and those of `b`, both ways.
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        assert!(self.partitionable(), "partitions need network namespaces");
        let mut cuts = self.cuts.lock().expect("cut lock");
        for (from, to) in a
            .iter()
            .flat_map(|x| b.iter().map(move |y| (*x, *y)))
            .flat_map(|(x, y)| [(x, y), (y, x)])
        {
            let ns = self.hosts[from].ns.clone().expect("a namespace");
            let dest = self.hosts[to].ip.clone();
            blackhole(&ns, &dest, "add").expect("a blackhole route");
            cuts.push((ns, dest));
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        let mut cuts = self.cuts.lock().expect("cut lock");
        for (ns, dest) in cuts.drain(..) {
            let _ = blackhole(&ns, &dest, "del");
        }
    }
}

/// Adds or deletes (`verb`) the route in namespace `ns` that drops everything sent to `dest`.
fn blackhole(ns: &str, dest: &str, verb: &str) -> Result<(), String> {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "ip",
        "route",
        verb,
        "blackhole",
        &format!("{dest}/32"),
    ])
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Mode::Namespaces { tag, .. } = &self.mode {
            for h in &self.hosts {
                if let Some(ns) = &h.ns {
                    let _ = run(&["ip", "netns", "del", ns]);
                }
            }
            let _ = run(&["ip", "link", "del", &format!("fbr{tag}")]);
        }
    }
}

/// Deletes namespaces (and their bridges) left by test processes that died.
fn clean_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.split('-');
        if parts.next() != Some("fnet") {
            continue;
        }
        let (Some(pid), Some(tag)) = (parts.next(), parts.next()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = run(&["ip", "netns", "del", name]);
        let _ = run(&["ip", "link", "del", &format!("fbr{tag}")]);
    }
}
