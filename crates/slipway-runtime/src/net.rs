//! Dyno networking: one network namespace per dyno, wired to a host bridge.
//!
//! [`Network::setup`] creates the bridge (`slipway0`, holding the gateway `.1` of the dyno
//! subnet), turns on IPv4 forwarding and installs its own nftables table. [`Network::acquire`]
//! hands out a [`NetSlot`]: a namespace at `/run/netns/<name>` whose `eth0` has its own address
//! and a default route through the bridge. The launcher `setns()`es into it, so every dyno can
//! listen on `PORT=5000` and the router connects to `<slot ip>:5000` from the host.
//! [`Network::release`] deletes the namespace once the dyno is gone.
//!
//! The rules: a dyno reaches the internet (masqueraded) and the DNS resolver on port 53, and
//! nothing else. It cannot reach other dynos (bridge ports are `isolated` and routed traffic to
//! the subnet is dropped), private, link-local or loopback ranges, or the host itself (input from
//! the bridge is dropped unless it belongs to a connection the host opened, or is DNS to the
//! resolver). Nobody can open a connection to a dyno through forwarding either: only the host
//! itself, where the router runs, can.
//!
//! Why a pool: wiring a namespace costs 30–40 ms, mostly kernel time (veth creation and
//! deletion wait for RCU), so [`Network`] keeps `pool_size` namespaces pre-wired and refills the
//! pool in the background. A namespace is never reused once a dyno has had it, and it is torn
//! down in the background too. The kernel is driven by `ip` and `nft`, two `ip` runs per
//! namespace; the pool hides their cost.
//!
//! Names: namespace `<prefix>n<hex>`, host-side veth `<prefix>v<hex>`, nftables table
//! `inet <prefix>slipway`, where `<hex>` is the address's offset in the subnet. Setup and
//! teardown remove everything that matches, so each server on a host needs its own prefix.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
const IFNAME_MAX: usize = 15;
const NETNS_DIR: &str = "/run/netns";
const SYS_NET: &str = "/sys/class/net";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Ranges a dyno must not reach besides its own subnet: private, link-local and loopback.
const BLOCKED: &str = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 127.0.0.0/8";
/// Where the resolver is looked for when none is configured; the second one is for hosts whose
/// `/etc/resolv.conf` points at systemd-resolved's loopback stub.
const RESOLV_CONFS: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// Errors from setting up or using dyno networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A setting is unusable; the message says which and what to use instead.
    #[error("invalid dyno network setting: {0}")]
    Config(String),
    /// `ip` or `nft` is not installed.
    #[error(
        "`{0}` was not found; install iproute2 and nftables (apt-get install -y iproute2 nftables)"
    )]
    Missing(&'static str),
    /// `ip` or `nft` refused a command.
    #[error("`{command}` failed: {stderr} (dyno networking needs root and a kernel with veth, bridge and nf_tables)")]
    Command {
        /// The command line, with its batch input after `<<<`.
        command: String,
        /// What the tool printed on stderr.
        stderr: String,
    },
    /// A file under /proc or /run could not be used, or a tool could not be started.
    #[error("could not {what}: {source} (dyno networking needs root)")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No resolver was configured and none was found on the host.
    #[error(
        "no usable IPv4 nameserver in /etc/resolv.conf; configure the dyno resolver explicitly"
    )]
    NoResolver,
    /// Every address of the subnet is held by a dyno or a warm namespace.
    #[error("no free dyno address left in {0}; configure a larger dyno subnet")]
    Exhausted(Ipv4Net),
    /// [`Network::teardown`] has run.
    #[error("dyno networking has been torn down; restart the server to use it again")]
    Closed,
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// An IPv4 network such as `10.213.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A network with room for at least two dynos; `addr` must be the network address.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        if prefix > 29 {
            return Err(NetError::Config(format!(
                "dyno subnet {addr}/{prefix} is too small; use /29 or larger (the default is /16)"
            )));
        }
        let net = Ipv4Net { addr, prefix };
        let base = Ipv4Addr::from(u32::from(addr) & net.mask());
        if base != addr {
            return Err(NetError::Config(format!(
                "dyno subnet {addr}/{prefix} is not a network address; use {base}/{prefix}"
            )));
        }
        Ok(net)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first host address, which the bridge holds.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset))
    }

    /// The offsets dynos may get: after the network address and the gateway, before broadcast.
    fn dyno_offsets(&self) -> (u32, u32) {
        (2, !self.mask() - 1)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::Config(format!("`{s}` is not a subnet such as 10.213.0.0/16"));
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        Ipv4Net::new(
            addr.parse().map_err(|_| bad())?,
            prefix.parse().map_err(|_| bad())?,
        )
    }
}

/// How dyno networking is laid out on this host.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The host bridge every dyno's veth is attached to.
    pub bridge: String,
    /// Dyno addresses come from here; the bridge holds the first host address as the gateway.
    pub subnet: Ipv4Net,
    /// How many pre-wired namespaces are kept ready.
    pub pool_size: usize,
    /// The DNS server dynos may reach; `None` takes the first non-loopback IPv4 nameserver of
    /// the host's `/etc/resolv.conf`.
    pub resolver: Option<Ipv4Addr>,
    /// Prefix of namespace, veth and nftables table names; unique per server on a host.
    pub name_prefix: String,
    /// Addresses of dynos that outlived the previous server: their namespaces are kept and
    /// handed back by [`Network::take_adopted`].
    pub keep: Vec<Ipv4Addr>,
    /// Ports on the gateway address that dynos may connect to (add-on servers: Postgres, Redis).
    /// Every other port of the host stays out of their reach.
    pub host_ports: Option<(u16, u16)>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: "slipway0".into(),
            subnet: Ipv4Net {
                addr: Ipv4Addr::new(10, 213, 0, 0),
                prefix: 16,
            },
            pool_size: 8,
            resolver: None,
            name_prefix: "sw".into(),
            keep: Vec::new(),
            host_ports: None,
        }
    }
}

impl NetConfig {
    fn validate(&self) -> Result<(), NetError> {
        let b = &self.bridge;
        if b.is_empty()
            || b.len() > IFNAME_MAX
            || b == "."
            || b == ".."
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(NetError::Config(format!(
                "bridge name `{b}` must be 1 to {IFNAME_MAX} letters, digits, `-`, `_` or `.`"
            )));
        }
        let p = &self.name_prefix;
        let digits = format!("{:x}", self.subnet.dyno_offsets().1).len();
        let longest = IFNAME_MAX - 1 - digits;
        if !p.starts_with(|c: char| c.is_ascii_lowercase())
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            || p.len() > longest
        {
            return Err(NetError::Config(format!(
                "name prefix `{p}` must be a lowercase letter then lowercase letters or digits, \
                 at most {longest} long with subnet {}",
                self.subnet
            )));
        }
        Ok(())
    }
}

/// Whether bridge + NAT dyno networking can work on this host; the error says why not.
pub async fn self_check() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("dyno networking needs root (CAP_NET_ADMIN); run the server as root or use host networking".into());
    }
    run("ip", &["-V"], None).await.map_err(|e| e.to_string())?;
    run("nft", &["--version"], None)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(IP_FORWARD)
        .map_err(|e| {
            format!(
                "cannot change {IP_FORWARD}: {e}; /proc/sys must be writable to route dyno traffic"
            )
        })?;
    let cfg = NetConfig::default();
    let rules = ruleset(&cfg, Ipv4Addr::new(192, 0, 2, 53));
    run("nft", &["-c", "-f", "-"], Some(&rules))
        .await
        .map_err(|e| {
            format!("nftables cannot hold the dyno rules (NAT or filter support missing?): {e}")
        })?;
    Ok(())
}

/// A pre-wired network namespace for one dyno.
#[derive(Debug)]
pub struct NetSlot {
    /// The namespace's name; `ip netns add` created `/run/netns/<name>`.
    pub name: String,
    /// `/run/netns/<name>`: the launcher `setns()`es into it.
    pub path: PathBuf,
    /// The dyno's address; the router connects to `ip:5000`.
    pub ip: Ipv4Addr,
    /// The bridge's address, the dyno's default route.
    pub gateway: Ipv4Addr,
    offset: u32,
}

/// The bridge, the nftables rules and the pool of warm namespaces. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("bridge", &self.inner.bridge)
            .field("subnet", &self.inner.subnet)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    bridge: String,
    subnet: Ipv4Net,
    pool_size: usize,
    resolver: Ipv4Addr,
    prefix: String,
    state: Mutex<State>,
    /// How many background tasks (pool filling, wiring for `acquire`, teardown) are running.
    busy: watch::Sender<usize>,
    rt: tokio::runtime::Handle,
}

struct State {
    addresses: Addresses,
    ready: VecDeque<NetSlot>,
    /// Namespaces of dynos that outlived the previous server, by address.
    adopted: std::collections::HashMap<Ipv4Addr, NetSlot>,
    filling: bool,
    closed: bool,
}

/// Hands out subnet offsets round-robin, so a freed address is not reused right away.
struct Addresses {
    first: u32,
    last: u32,
    next: u32,
    taken: BTreeSet<u32>,
}

impl Addresses {
    fn new((first, last): (u32, u32)) -> Self {
        Addresses {
            first,
            last,
            next: first,
            taken: BTreeSet::new(),
        }
    }

    fn take(&mut self) -> Option<u32> {
        let mut offset = self.next;
        for _ in self.first..=self.last {
            if offset > self.last || offset < self.first {
                offset = self.first;
            }
            if self.taken.insert(offset) {
                self.next = offset.wrapping_add(1);
                return Some(offset);
            }
            offset = offset.wrapping_add(1);
        }
        None
    }

    fn free(&mut self, offset: u32) {
        self.taken.remove(&offset);
    }
}

impl Network {
    /// Creates the bridge (idempotent), turns on `net.ipv4.ip_forward`, replaces the table
    /// `inet <prefix>slipway` wholesale, removes namespaces left by an earlier run with the same
    /// prefix, and starts filling the warm pool in the background.
    pub async fn setup(cfg: NetConfig) -> Result<Network, NetError> {
        cfg.validate()?;
        let resolver = match cfg.resolver {
            Some(ip) => ip,
            None => host_resolver().await?,
        };
        // Offsets of the namespaces kept for running dynos.
        let (first, last) = cfg.subnet.dyno_offsets();
        let kept: Vec<u32> = cfg
            .keep
            .iter()
            .map(|ip| u32::from(*ip).wrapping_sub(u32::from(cfg.subnet.addr)))
            .filter(|o| (first..=last).contains(o))
            .filter(|o| {
                Path::new(NETNS_DIR)
                    .join(format!("{}n{o:x}", cfg.name_prefix))
                    .exists()
            })
            .collect();
        let left = sweep(&cfg.name_prefix, &kept).await?;
        if left > 0 {
            info!(
                prefix = %cfg.name_prefix,
                count = left,
                "Removed dyno network namespaces left by an earlier run."
            );
        }
        ensure_bridge(&cfg.bridge, cfg.subnet).await?;
        tokio::fs::write(IP_FORWARD, "1\n")
            .await
            .map_err(io_error(format!("turn on IPv4 forwarding in {IP_FORWARD}")))?;
        run("nft", &["-f", "-"], Some(&ruleset(&cfg, resolver))).await?;
        let mut addresses = Addresses::new(cfg.subnet.dyno_offsets());
        let mut adopted = std::collections::HashMap::new();
        for &offset in &kept {
            addresses.taken.insert(offset);
            let name = format!("{}n{offset:x}", cfg.name_prefix);
            let ip = cfg.subnet.nth(offset);
            adopted.insert(
                ip,
                NetSlot {
                    path: Path::new(NETNS_DIR).join(&name),
                    name,
                    ip,
                    gateway: cfg.subnet.gateway(),
                    offset,
                },
            );
        }
        let net = Network {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    addresses,
                    ready: VecDeque::new(),
                    adopted,
                    filling: false,
                    closed: false,
                }),
                busy: watch::Sender::new(0),
                rt: tokio::runtime::Handle::current(),
                bridge: cfg.bridge,
                subnet: cfg.subnet,
                pool_size: cfg.pool_size,
                resolver,
                prefix: cfg.name_prefix,
            }),
        };
        info!(
            bridge = %net.inner.bridge,
            subnet = %net.inner.subnet,
            resolver = %resolver,
            pool = net.inner.pool_size,
            "Dyno network ready."
        );
        net.inner.refill();
        Ok(net)
    }

    /// A pre-wired namespace: from the pool if one is ready (the pool then refills in the
    /// background), else wired now.
    pub async fn acquire(&self) -> Result<NetSlot, NetError> {
        let inner = &self.inner;
        let offset = {
            let mut st = inner.state();
            if st.closed {
                return Err(NetError::Closed);
            }
            if let Some(slot) = st.ready.pop_front() {
                drop(st);
                inner.refill();
                return Ok(slot);
            }
            st.addresses
                .take()
                .ok_or(NetError::Exhausted(inner.subnet))?
        };
        inner.refill();
        // Wire in a task of its own: if the caller gives up, the slot goes to the pool
        // instead of being left half made.
        let (tx, rx) = oneshot::channel();
        inner.spawn(move |inner| async move {
            match inner.wire(offset).await {
                Ok(slot) => {
                    if let Err(Ok(slot)) = tx.send(Ok(slot)) {
                        inner.adopt(slot).await;
                    }
                }
                Err(e) => {
                    inner.discard(offset).await;
                    let _ = tx.send(Err(e));
                }
            }
        });
        rx.await.map_err(|_| NetError::Closed)?
    }

    /// The namespace of a dyno that outlived the previous server (kept by `setup`), once.
    pub fn take_adopted(&self, ip: Ipv4Addr) -> Option<NetSlot> {
        self.inner.state().adopted.remove(&ip)
    }

    /// Releases the kept namespaces no dyno claimed (their dynos had ended).
    pub fn release_unclaimed(&self) {
        let slots: Vec<NetSlot> = self.inner.state().adopted.drain().map(|(_, s)| s).collect();
        for slot in slots {
            self.release(slot);
        }
    }

    /// Tears a namespace down in the background. It is never reused: a dyno may have left
    /// state in it. Its address becomes free once the namespace is gone.
    pub fn release(&self, slot: NetSlot) {
        debug!(netns = %slot.name, ip = %slot.ip, "Releasing dyno network namespace.");
        self.inner
            .spawn(move |inner| async move { inner.discard(slot.offset).await });
    }

    /// Removes every namespace and veth with this prefix (the pool's and any still handed
    /// out), the nftables table and the bridge. Waits for background work first; `acquire`
    /// fails afterwards. `ip_forward` is left on, as other software may rely on it.
    pub async fn teardown(&self) -> Result<(), NetError> {
        let inner = &self.inner;
        inner.state().closed = true;
        self.settled().await;
        inner.state().ready.clear();
        sweep(&inner.prefix, &[]).await?;
        let table = table_name(&inner.prefix);
        let script = format!("table inet {table} {{}}\ndelete table inet {table}\n");
        run("nft", &["-f", "-"], Some(&script)).await?;
        if Path::new(SYS_NET).join(&inner.bridge).exists() {
            run("ip", &["link", "del", &inner.bridge], None).await?;
        }
        info!(bridge = %inner.bridge, "Dyno network removed.");
        Ok(())
    }

    /// Waits until no background wiring or teardown is running: the pool is full (or could not
    /// be filled) and released namespaces are gone.
    pub async fn settled(&self) {
        let mut rx = self.inner.busy.subscribe();
        // Err only if the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// How many pre-wired namespaces are ready now.
    pub fn warm(&self) -> usize {
        self.inner.state().ready.len()
    }

    /// The DNS server dynos may reach, for their `/etc/resolv.conf`.
    pub fn resolver(&self) -> Ipv4Addr {
        self.inner.resolver
    }

    /// The dyno subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.inner.subnet
    }
}

/// Counts a background task in [`Inner::busy`] for as long as it lives.
struct Busy(Arc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn names(&self, offset: u32) -> (String, String) {
        (
            format!("{}n{offset:x}", self.prefix),
            format!("{}v{offset:x}", self.prefix),
        )
    }

    /// Runs background work on the server's runtime, counted until it ends.
    fn spawn<F, Fut>(self: &Arc<Self>, work: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.busy.send_modify(|n| *n += 1);
        let busy = Busy(self.clone());
        let fut = work(self.clone());
        self.rt.spawn(async move {
            fut.await;
            drop(busy);
        });
    }

    /// Starts the pool filler unless it is running or the pool is full.
    fn refill(self: &Arc<Self>) {
        {
            let mut st = self.state();
            if st.closed || st.filling || st.ready.len() >= self.pool_size {
                return;
            }
            st.filling = true;
        }
        self.spawn(|inner| inner.fill());
    }

    /// Wires namespaces one at a time until the pool is full. Stops at the first error, which
    /// the next `acquire` will hit and report itself.
    async fn fill(self: Arc<Self>) {
        loop {
            let offset = {
                let mut st = self.state();
                if st.closed || st.ready.len() >= self.pool_size {
                    st.filling = false;
                    return;
                }
                match st.addresses.take() {
                    Some(offset) => offset,
                    None => {
                        st.filling = false;
                        warn!(subnet = %self.subnet, "Dyno subnet is full; the warm pool stays short.");
                        return;
                    }
                }
            };
            match self.wire(offset).await {
                Ok(slot) => self.state().ready.push_back(slot),
                Err(error) => {
                    warn!(%error, "Could not pre-wire a dyno network namespace.");
                    self.discard(offset).await;
                    self.state().filling = false;
                    return;
                }
            }
        }
    }

    /// Keeps a wired slot nobody took, or removes it if the pool is full or closed.
    async fn adopt(&self, slot: NetSlot) {
        let offset = {
            let mut st = self.state();
            if !st.closed && st.ready.len() < self.pool_size {
                st.ready.push_back(slot);
                return;
            }
            slot.offset
        };
        self.discard(offset).await;
    }

    /// Creates the namespace for `offset` and wires it to the bridge.
    async fn wire(&self, offset: u32) -> Result<NetSlot, NetError> {
        let (name, veth) = self.names(offset);
        let ip = self.subnet.nth(offset);
        let gateway = self.subnet.gateway();
        let prefix = self.subnet.prefix;
        let bridge = &self.bridge;
        ip_batch(
            None,
            &[
                format!("netns add {name}"),
                format!("link add {veth} type veth peer name eth0 netns {name}"),
                format!("link set {veth} master {bridge} up"),
                format!("link set {veth} type bridge_slave isolated on"),
            ],
        )
        .await?;
        ip_batch(
            Some(&name),
            &[
                "link set lo up".to_string(),
                format!("addr add {ip}/{prefix} brd + dev eth0"),
                "link set eth0 up".to_string(),
                format!("route add default via {gateway} dev eth0"),
            ],
        )
        .await?;
        debug!(netns = %name, ip = %ip, "Wired dyno network namespace.");
        Ok(NetSlot {
            path: Path::new(NETNS_DIR).join(&name),
            name,
            ip,
            gateway,
            offset,
        })
    }

    /// Deletes what exists of the namespace for `offset`; frees the address only if it is gone.
    async fn discard(&self, offset: u32) {
        let (name, veth) = self.names(offset);
        if let Err(error) = remove(std::slice::from_ref(&veth), std::slice::from_ref(&name)).await {
            warn!(netns = %name, %error, "Could not remove a dyno network namespace.");
        }
        if Path::new(SYS_NET).join(&veth).exists() || Path::new(NETNS_DIR).join(&name).exists() {
            warn!(netns = %name, "Dyno network namespace still exists; its address stays reserved.");
        } else {
            self.state().addresses.free(offset);
        }
    }
}

fn table_name(prefix: &str) -> String {
    format!("{prefix}slipway")
}

/// The whole nftables table, replaced in one transaction: create it if missing, delete it,
/// create it again with its rules.
fn ruleset(cfg: &NetConfig, resolver: Ipv4Addr) -> String {
    let table = table_name(&cfg.name_prefix);
    let bridge = &cfg.bridge;
    let subnet = cfg.subnet;
    let gateway = cfg.subnet.gateway();
    let host_ports = match cfg.host_ports {
        Some((first, last)) => format!(
            "iifname \"{bridge}\" ip daddr {gateway} tcp dport {first}-{last} accept\n        "
        ),
        None => String::new(),
    };
    format!(
        r#"table inet {table} {{}}
delete table inet {table}
table inet {table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{bridge}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        oifname "{bridge}" drop
        iifname "{bridge}" ip daddr {resolver} meta l4proto {{ tcp, udp }} th dport 53 accept
        iifname "{bridge}" ip daddr {subnet} drop
        iifname "{bridge}" ip daddr {{ {BLOCKED} }} drop
        iifname "{bridge}" meta nfproto ipv4 accept
        iifname "{bridge}" drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{bridge}" ct state established,related accept
        iifname "{bridge}" ip daddr {resolver} meta l4proto {{ tcp, udp }} th dport 53 accept
        {host_ports}iifname "{bridge}" drop
    }}
}}
"#
    )
}

/// The first non-loopback IPv4 nameserver in a resolv.conf.
fn nameserver(resolv_conf: &str) -> Option<Ipv4Addr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        let ip: Ipv4Addr = words.next()?.parse().ok()?;
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

async fn host_resolver() -> Result<Ipv4Addr, NetError> {
    for path in RESOLV_CONFS {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if let Some(ip) = nameserver(&text) {
                return Ok(ip);
            }
        }
    }
    Err(NetError::NoResolver)
}

/// Whether `name` is `<prefix><kind><hex>`, one of ours.
fn is_ours(prefix: &str, kind: char, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(kind))
        .is_some_and(|hex| {
            !hex.is_empty()
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

fn list_dir(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every veth and namespace with our prefix; returns how many namespaces there were.
async fn sweep(prefix: &str, keep: &[u32]) -> Result<usize, NetError> {
    let kept = |kind: char, n: &str| keep.iter().any(|o| n == format!("{prefix}{kind}{o:x}"));
    let veths: Vec<String> = list_dir(SYS_NET)
        .into_iter()
        .filter(|n| is_ours(prefix, 'v', n) && !kept('v', n))
        .collect();
    let namespaces: Vec<String> = list_dir(NETNS_DIR)
        .into_iter()
        .filter(|n| is_ours(prefix, 'n', n) && !kept('n', n))
        .collect();
    remove(&veths, &namespaces).await?;
    Ok(namespaces.len())
}

/// Deletes the host veths first (which removes their peers synchronously, so the names are
/// free again right away), then the namespaces. Skips what does not exist.
async fn remove(veths: &[String], namespaces: &[String]) -> Result<(), NetError> {
    let lines: Vec<String> = veths
        .iter()
        .filter(|v| Path::new(SYS_NET).join(v).exists())
        .map(|v| format!("link del {v}"))
        .chain(
            namespaces
                .iter()
                .filter(|n| Path::new(NETNS_DIR).join(n).exists())
                .map(|n| format!("netns del {n}")),
        )
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    let input = lines.join("\n") + "\n";
    run("ip", &["-force", "-batch", "-"], Some(&input))
        .await
        .map(drop)
}

/// Creates the bridge if needed and gives it the gateway address.
async fn ensure_bridge(bridge: &str, subnet: Ipv4Net) -> Result<(), NetError> {
    let dev = Path::new(SYS_NET).join(bridge);
    let mut lines = Vec::new();
    if dev.exists() {
        if !dev.join("bridge").exists() {
            return Err(NetError::Config(format!(
                "network interface {bridge} exists and is not a bridge; choose another bridge name"
            )));
        }
    } else {
        lines.push(format!("link add {bridge} type bridge"));
    }
    lines.push(format!(
        "addr replace {}/{} dev {bridge}",
        subnet.gateway(),
        subnet.prefix
    ));
    lines.push(format!("link set {bridge} up"));
    ip_batch(None, &lines).await
}

/// Runs `ip [-n <netns>] -batch -`; it stops at the first failing line.
async fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), NetError> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let input = lines.join("\n") + "\n";
    run("ip", &args, Some(&input)).await.map(drop)
}

/// Finds a tool in the sbin directories too, which a non-login root shell may lack in PATH.
fn tool(name: &'static str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a tool with `input` on stdin and returns its stdout.
async fn run(
    program: &'static str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, NetError> {
    let mut cmd = Command::new(tool(program));
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetError::Missing(program),
        _ => NetError::Io {
            what: format!("run `{program}`"),
            source: e,
        },
    })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error means the tool exited early; its status and stderr say why.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(io_error(format!("wait for `{program}`")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(input) = input {
        let lines: Vec<&str> = input
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        command = format!("{command} <<< '{}'", lines.join("; "));
    }
    let stderr = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', "; ");
    Err(NetError::Command {
        command,
        stderr: if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_parses_and_rejects_bad_input() {
        let net: Ipv4Net = "10.213.0.0/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.213.0.0/16");
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(net.dyno_offsets(), (2, 65534));
        assert!(net.contains(Ipv4Addr::new(10, 213, 255, 255)));
        assert!(!net.contains(Ipv4Addr::new(10, 214, 0, 1)));
        let err = "10.213.0.5/16".parse::<Ipv4Net>().unwrap_err();
        assert!(err.to_string().contains("use 10.213.0.0/16"), "{err}");
        assert!("10.0.0.0/30".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0/x".parse::<Ipv4Net>().is_err());
        let small: Ipv4Net = "10.0.0.8/29".parse().unwrap();
        assert_eq!(small.dyno_offsets(), (2, 6));
    }

    #[test]
    fn addresses_skip_network_gateway_broadcast_and_rotate() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let mut a = Addresses::new(net.dyno_offsets());
        let got: Vec<u32> = std::iter::from_fn(|| a.take()).collect();
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        assert_eq!(a.take(), None);
        a.free(3);
        a.free(5);
        // The cursor wrapped: 3 comes first, then 5; nothing else is free.
        assert_eq!(a.take(), Some(3));
        assert_eq!(a.take(), Some(5));
        a.free(2);
        a.free(6);
        // Next after 5 is 6, even though 2 was freed first.
        assert_eq!(a.take(), Some(6));
        assert_eq!(a.take(), Some(2));
        assert_eq!(a.take(), None);
    }

    #[test]
    fn names_fit_ifnamsiz_and_are_recognised() {
        let mut cfg = NetConfig::default();
        cfg.validate().unwrap();
        cfg.name_prefix = "abcdefghij".into(); // 10 + "v" + "fffe" = 15
        cfg.validate().unwrap();
        cfg.name_prefix = "abcdefghijk".into();
        assert!(cfg.validate().is_err());
        cfg.name_prefix = "Sw".into();
        assert!(cfg.validate().is_err());
        cfg.name_prefix = "sw".into();
        cfg.bridge = "a-very-long-bridge".into();
        assert!(cfg.validate().is_err());
        assert!(is_ours("sw", 'n', "swn1f"));
        assert!(!is_ours("sw", 'n', "swv1f"));
        assert!(!is_ours("sw", 'n', "swn"));
        assert!(!is_ours("sw", 'n', "swt1n1f"));
        assert!(!is_ours("sw", 'v', "swvv2"));
    }

    #[test]
    fn nameserver_skips_loopback() {
        let conf = "# x\nsearch lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n";
        assert_eq!(nameserver(conf), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(nameserver("nameserver 127.0.0.1\n"), None);
    }

    #[test]
    fn ruleset_allows_dns_before_dropping_private_ranges() {
        let rules = ruleset(&NetConfig::default(), Ipv4Addr::new(10, 0, 0, 2));
        let dns = rules.find("ip daddr 10.0.0.2").unwrap();
        let private = rules.find("10.0.0.0/8").unwrap();
        assert!(dns < private);
        assert!(rules.starts_with("table inet swslipway {}\ndelete table inet swslipway\n"));
        assert!(rules.contains(r#"ip saddr 10.213.0.0/16 oifname != "slipway0" masquerade"#));
        assert!(!rules.contains("dport 15400"));
    }

    #[test]
    fn ruleset_opens_only_the_add_on_ports_on_the_gateway() {
        let cfg = NetConfig {
            host_ports: Some((15400, 15999)),
            ..NetConfig::default()
        };
        let rules = ruleset(&cfg, Ipv4Addr::new(10, 0, 0, 2));
        let input = &rules[rules.find("chain input").unwrap()..];
        let open = input
            .find(r#"iifname "slipway0" ip daddr 10.213.0.1 tcp dport 15400-15999 accept"#)
            .unwrap();
        let drop = input.find("iifname \"slipway0\" drop").unwrap();
        assert!(open < drop);
    }
}
