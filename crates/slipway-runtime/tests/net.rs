//! Dyno networking against the real kernel. Needs root, `ip` and `nft`; prints `SKIPPED:` and
//! passes otherwise. Each test uses its own bridge, subnet and name prefix, and removes them at
//! the end, also when it fails.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use slipway_runtime::net::{self, Ipv4Net, NetConfig, NetError, NetSlot, Network};
use tokio::time::Instant;

/// Long enough for a connection on a bridge, short enough that dropped packets fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists());
        let works = found.is_some_and(|p| {
            Command::new(p)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !works {
            return Some(format!(
                "`{tool}` is missing (apt-get install -y iproute2 nftables)"
            ));
        }
    }
    None
}

fn lease_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("slipway-runtime-test-nets")
}

/// The leases this process holds, by the third byte of their 10.250.x.0/24.
static LEASES: std::sync::Mutex<std::collections::BTreeMap<u8, std::fs::File>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A bridge name, a /24 that no route on the host uses, and a name prefix, unique per test.
fn unique_config(pool_size: usize) -> NetConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id().wrapping_mul(2654435761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // The /24 is also leased, with a lock on a file, so that two tests starting at once (in
    // separate processes) never both take it. The kernel lets go of the lock when the test's
    // process ends, however it ends; `Cleanup` lets go of it sooner.
    let leases = lease_dir();
    std::fs::create_dir_all(&leases).unwrap();
    let first = seed.wrapping_add(n * 37) % 250;
    let x = (0..250)
        .map(|i| ((first + i) % 250) as u8)
        .find(|x| {
            if routes.contains(&format!("10.250.{x}.")) {
                return false;
            }
            let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(leases.join(x.to_string()))
            else {
                return false;
            };
            if f.try_lock().is_err() {
                return false;
            }
            LEASES.lock().unwrap().insert(*x, f);
            true
        })
        .expect("a free 10.250.x.0/24 for the test");
    let tag = format!("{:04x}", (seed.wrapping_add(n)) & 0xffff);
    NetConfig {
        bridge: format!("swtbr{tag}"),
        subnet: Ipv4Net::new(Ipv4Addr::new(10, 250, x, 0), 24).unwrap(),
        pool_size,
        // Any address works for the rules; these tests never resolve names.
        resolver: Some(Ipv4Addr::new(192, 0, 2, 53)),
        // Not `t…`: the test servers' networks are named t0 to t249 (their bridges t00 to
        // t2490), and the cleanup removes everything that starts with this prefix.
        name_prefix: format!("n{tag}"),
        keep: Vec::new(),
        host_ports: None,
    }
}

/// What is left of a network on the host: the bridge, namespaces, veths, the nft table.
fn leftovers(cfg: &NetConfig) -> Vec<String> {
    let mut left = Vec::new();
    if Path::new("/sys/class/net").join(&cfg.bridge).exists() {
        left.push(format!("bridge {}", cfg.bridge));
    }
    for dir in ["/run/netns", "/sys/class/net"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&cfg.name_prefix) {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    if nft_table_exists(cfg) {
        left.push(format!("nft table inet {}slipway", cfg.name_prefix));
    }
    left
}

fn nft_table_exists(cfg: &NetConfig) -> bool {
    Command::new("nft")
        .args([
            "list",
            "table",
            "inet",
            &format!("{}slipway", cfg.name_prefix),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes whatever a test left behind, without async: runs even when a test panics.
struct Cleanup(NetConfig);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cfg = &self.0;
        let table = format!("{}slipway", cfg.name_prefix);
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &table])
            .output();
        for dir in ["/sys/class/net", "/run/netns"] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with(&cfg.name_prefix) {
                    continue;
                }
                let args: &[&str] = if dir == "/run/netns" {
                    &["netns", "del", &name]
                } else {
                    &["link", "del", &name]
                };
                let _ = Command::new("ip").args(args).output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &cfg.bridge])
            .output();
        // Files stay (two processes must always lock the same one); the lock goes.
        LEASES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cfg.subnet.addr().octets()[2]);
    }
}

/// Sets up a network, runs `body` with it, tears it down and checks nothing is left, then
/// re-raises a panic from `body`.
async fn with_network<F, Fut>(pool_size: usize, body: F)
where
    F: FnOnce(Network, NetConfig) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let cfg = unique_config(pool_size);
    let _cleanup = Cleanup(cfg.clone());
    let net = Network::setup(cfg.clone()).await.unwrap();
    let outcome = tokio::spawn(body(net.clone(), cfg.clone())).await;
    net.teardown().await.unwrap();
    assert_eq!(leftovers(&cfg), Vec::<String>::new(), "teardown left these");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs `f` on a fresh thread inside the namespace at `path`; sockets it creates stay there.
async fn in_netns<T, F>(path: &Path, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap();
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
    .await
    .unwrap()
}

async fn connect_from(path: &Path, addr: SocketAddr) -> std::io::Result<TcpStream> {
    in_netns(path, move || {
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
    })
    .await
}

async fn connect_from_host(addr: SocketAddr) -> std::io::Result<TcpStream> {
    tokio::task::spawn_blocking(move || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT))
        .await
        .unwrap()
}

fn ip_in(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip -n {ns} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn timed_acquire(net: &Network) -> (NetSlot, Duration) {
    let start = Instant::now();
    let slot = net.acquire().await.unwrap();
    (slot, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_check_passes_here() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    net::self_check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_wired_reachable_from_the_host_and_isolated() {
    with_network(4, |net, cfg| async move {
        // Setup made the bridge with the gateway address, the table and forwarding.
        let bridge = Path::new("/sys/class/net").join(&cfg.bridge);
        assert!(bridge.join("bridge").exists(), "no bridge {}", cfg.bridge);
        assert!(nft_table_exists(&cfg));
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        let gateway = cfg.subnet.gateway();
        let addrs = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "addr", "show", "dev", &cfg.bridge])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert!(addrs.contains(&format!("{gateway}/24")), "{addrs}");

        net.settled().await;
        assert_eq!(net.warm(), 4);
        let (a, took_a) = timed_acquire(&net).await;
        let (b, took_b) = timed_acquire(&net).await;
        println!("acquire from a warm pool: first {took_a:?}, second {took_b:?}");
        assert_ne!(a.ip, b.ip);
        assert!(cfg.subnet.contains(a.ip) && a.ip != gateway);
        assert_eq!(a.gateway, gateway);
        assert_eq!(a.path, PathBuf::from("/run/netns").join(&a.name));
        assert!(a.path.exists());

        // eth0 has the address and the default route goes through the bridge.
        let eth0 = ip_in(&a.name, &["-4", "addr", "show", "dev", "eth0"]);
        assert!(eth0.contains(&format!("inet {}/24", a.ip)), "{eth0}");
        assert!(eth0.contains("UP"), "{eth0}");
        let route = ip_in(&a.name, &["-4", "route", "show", "default"]);
        assert!(
            route.contains(&format!("default via {gateway} dev eth0")),
            "{route}"
        );

        // The router's path: host → a.ip:5000, and the dyno sees the gateway as the peer.
        let listener = in_netns(&a.path, || TcpListener::bind("0.0.0.0:5000"))
            .await
            .unwrap();
        let dyno = SocketAddr::from((a.ip, 5000));
        let mut conn = connect_from_host(dyno)
            .await
            .expect("host reaches the dyno's port 5000");
        let (mut accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), gateway);
        accepted.write_all(b"hello").unwrap();
        drop(accepted);
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");

        // Dyno B cannot reach dyno A.
        let err = connect_from(&b.path, dyno).await.unwrap_err();
        println!("dyno B -> dyno A:5000: {err}");

        // A service on the host's bridge address: the host reaches it, a dyno does not.
        let on_gateway = TcpListener::bind((gateway, 0)).unwrap();
        let gw_addr = on_gateway.local_addr().unwrap();
        connect_from_host(gw_addr)
            .await
            .expect("host reaches its own bridge address");
        let err = connect_from(&a.path, gw_addr).await.unwrap_err();
        println!("dyno -> host {gw_addr}: {err}");

        // A service on the host's loopback: 127.0.0.1 in the dyno is the dyno's own.
        let on_loopback = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let lo_addr = on_loopback.local_addr().unwrap();
        let err = connect_from(&a.path, lo_addr).await.unwrap_err();
        println!("dyno -> host {lo_addr}: {err}");

        // Outbound NAT depends on this host's uplink: print, do not assert.
        let out = SocketAddr::from((Ipv4Addr::new(1, 1, 1, 1), 443));
        match connect_from(&a.path, out).await {
            Ok(_) => println!("dyno -> {out}: connected (NAT works)"),
            Err(e) => println!("dyno -> {out}: {e} (no NAT egress here, not asserted)"),
        }

        // Release removes the namespace and its veth in the background.
        let (a_name, a_path) = (a.name.clone(), a.path.clone());
        drop(listener);
        net.release(a);
        net.settled().await;
        assert!(!a_path.exists(), "{a_name} still exists");
        let veth = a_name.replacen(
            &format!("{}n", cfg.name_prefix),
            &format!("{}v", cfg.name_prefix),
            1,
        );
        assert!(!Path::new("/sys/class/net").join(&veth).exists());
        // The pool refilled behind the two acquisitions.
        assert_eq!(net.warm(), 4);
        net.release(b);
    })
    .await;
}

/// Add-on servers listen on the gateway in the add-on port range: dynos reach those ports and
/// no others of the host.
#[tokio::test(flavor = "multi_thread")]
async fn dynos_reach_only_the_add_on_ports_on_the_gateway() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    // A port free on this host now, for the range; another just outside it. Both from
    // 25000-25999, which neither outgoing connections (32768 and up) nor the test servers'
    // add-on ports (20000-24999) use.
    let start = 25_000 + (std::process::id() % 1000) as u16;
    let mut free = (0..1000u16)
        .map(|i| 25_000 + (start - 25_000 + i) % 1000)
        .filter(|&p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok());
    let (open, closed) = (free.next().unwrap(), free.next().unwrap());
    let cfg = NetConfig {
        host_ports: Some((open, open)),
        ..unique_config(1)
    };
    let _cleanup = Cleanup(cfg.clone());
    let net = Network::setup(cfg.clone()).await.unwrap();
    let gateway = cfg.subnet.gateway();
    let outcome = tokio::spawn({
        let net = net.clone();
        async move {
            let a = net.acquire().await.unwrap();
            let in_range = TcpListener::bind((gateway, open)).unwrap();
            let outside = TcpListener::bind((gateway, closed)).unwrap();
            let addr = in_range.local_addr().unwrap();
            connect_from(&a.path, addr)
                .await
                .expect("a dyno reaches an add-on port on the gateway");
            let err = connect_from(&a.path, outside.local_addr().unwrap())
                .await
                .unwrap_err();
            println!("dyno -> host {gateway}:{closed}: {err}");
            net.release(a);
        }
    })
    .await;
    net.teardown().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_acquire_without_a_pool() {
    with_network(0, |net, _cfg| async move {
        net.settled().await;
        assert_eq!(net.warm(), 0);
        let mut times = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..3 {
            let (slot, took) = timed_acquire(&net).await;
            times.push(took);
            slots.push(slot);
        }
        println!("acquire with no pool (wired on demand): {times:?}");
        let ips: std::collections::BTreeSet<_> = slots.iter().map(|s| s.ip).collect();
        assert_eq!(ips.len(), 3);
        for slot in slots {
            net.release(slot);
        }
        net.settled().await;
        assert_eq!(net.warm(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_removes_slots_still_handed_out_and_is_idempotent() {
    with_network(2, |net, cfg| async move {
        let slot = net.acquire().await.unwrap();
        assert!(slot.path.exists());
        net.teardown().await.unwrap();
        assert_eq!(leftovers(&cfg), Vec::<String>::new());
        assert!(matches!(net.acquire().await, Err(NetError::Closed)));
        // Releasing after teardown is harmless; `with_network` tears down once more.
        net.release(slot);
        net.settled().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_again_replaces_the_previous_run() {
    with_network(2, |first, cfg| async move {
        first.settled().await;
        let held = first.acquire().await.unwrap();
        first.settled().await;
        // A restart with the same settings: the old namespaces go, the table is replaced.
        let second = Network::setup(cfg.clone()).await.unwrap();
        assert!(
            !held.path.exists(),
            "namespace of the previous run survived"
        );
        second.settled().await;
        assert_eq!(second.warm(), 2);
        let rules = Command::new("nft")
            .args([
                "list",
                "table",
                "inet",
                &format!("{}slipway", cfg.name_prefix),
            ])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");
        let slot = second.acquire().await.unwrap();
        assert!(slot.path.exists());
        second.release(slot);
        second.settled().await;
    })
    .await;
}

#[tokio::test]
async fn bad_settings_are_refused_before_touching_the_host() {
    let cfg = NetConfig {
        name_prefix: "much-too-long-prefix".into(),
        ..NetConfig::default()
    };
    let err = Network::setup(cfg).await.unwrap_err();
    assert!(matches!(err, NetError::Config(_)), "{err}");
    println!("{err}");
    let cfg = NetConfig {
        bridge: "has space".into(),
        ..NetConfig::default()
    };
    assert!(matches!(
        Network::setup(cfg).await,
        Err(NetError::Config(_))
    ));
    assert!("10.213.0.0/33".parse::<Ipv4Net>().is_err());
}

/// A DNS query for `deb.debian.org` A, over UDP.
fn dns_query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["deb", "debian", "org"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_to_the_host_resolver() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let mut cfg = unique_config(1);
    cfg.resolver = None;
    let _cleanup = Cleanup(cfg.clone());
    let net = Network::setup(cfg.clone()).await.unwrap();
    let resolver = net.resolver();
    let outcome = tokio::spawn({
        let net = net.clone();
        async move {
            let slot = net.acquire().await.unwrap();
            // Whether the resolver answers depends on this host: print, do not assert.
            let answer = in_netns(&slot.path, move || {
                let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
                sock.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                sock.send_to(&dns_query(), (resolver, 53))?;
                let mut buf = [0u8; 512];
                sock.recv(&mut buf)
            })
            .await;
            match answer {
                Ok(n) => println!("dyno -> resolver {resolver}:53/udp: {n}-byte answer"),
                Err(e) => println!("dyno -> resolver {resolver}:53/udp: {e} (not asserted)"),
            }
            // Anything else at a private address is dropped.
            let other_port = SocketAddr::from((resolver, 80));
            let other = connect_from(&slot.path, other_port).await;
            println!(
                "dyno -> {other_port}: {:?}",
                other.as_ref().map(|_| "connected")
            );
            if resolver.is_private() {
                assert!(other.is_err());
            }
            net.release(slot);
        }
    })
    .await;
    net.teardown().await.unwrap();
    assert_eq!(leftovers(&cfg), Vec::<String>::new(), "teardown left these");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
