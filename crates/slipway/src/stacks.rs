//! `slipway stacks:install NAME`: builds a versioned stack on this host (as root), a Debian
//! minbase root filesystem made with debootstrap plus what the built-in buildpacks need, and a
//! `dyno` user. It is built beside its final place and renamed in, so a half-built stack is never
//! used; the server picks it up for `stack:set` without a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Stacks this command can build: name → Debian suite.
const KNOWN: &[(&str, &str)] = &[("debian-12", "bookworm")];

/// Packages added to debootstrap's minbase.
const PACKAGES: &str = "python3 python3-pip nodejs npm git curl ca-certificates";

const SCRIPT: &str = r#"set -euo pipefail
R=$1 SUITE=$2 MIRROR=$3 SECURITY=$4 NAME=$5 PACKAGES=$6
echo "-----> debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" >"$R.log" 2>&1 || { tail -20 "$R.log"; exit 1; }
cat >"$R/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
echo "-----> Installing $PACKAGES"
unshare -m --propagation private bash -euo pipefail -c '
  R=$1 PACKAGES=$2
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount -t sysfs sys "$R/sys"
  cp /etc/resolv.conf "$R/etc/resolv.conf"
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES
  chroot "$R" apt-get clean
' _ "$R" "$PACKAGES" >>"$R.log" 2>&1 || { tail -20 "$R.log"; exit 1; }
echo "-----> Adding the dyno user"
chroot "$R" groupadd -g 10000 dyno
chroot "$R" useradd -u 10000 -g 10000 -d /app -s /bin/bash -M dyno
mkdir -p "$R/app"
: >"$R/etc/resolv.conf"; : >"$R/etc/hosts"; : >"$R/etc/hostname"
rm -rf "$R/var/lib/apt/lists/"* "$R/usr/share/doc/"* "$R/usr/share/man/"* "$R/var/cache/apt/"*.bin
printf '%s %s\n' "$NAME" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$R/etc/slipway-stack"
rm -f "$R.log"
"#;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!(" ▸    {msg}");
    ExitCode::FAILURE
}

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .skip(2)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut name = None;
    let mut data_dir: Option<PathBuf> = std::env::var_os("SLIPWAY_DATA_DIR").map(PathBuf::from);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            x if !x.starts_with('-') && name.is_none() => name = Some(x.to_string()),
            x => {
                return fail(format!(
                    "Unknown argument {x}. Usage: slipway stacks:install NAME [--data-dir DIR]"
                ))
            }
        }
    }
    let Some(name) = name else {
        return fail(
            "Usage: slipway stacks:install NAME [--data-dir DIR]; NAME is one of: debian-12",
        );
    };
    let Some((_, suite)) = KNOWN.iter().find(|(n, _)| *n == name) else {
        return fail(format!(
            "Slipway cannot build stack {name}. Stacks it can build: debian-12."
        ));
    };
    if !nix::unistd::geteuid().is_root() {
        return fail(
            "Building a stack needs root (debootstrap and chroot). Run it as root on the server.",
        );
    }
    if Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return fail("debootstrap is not installed. Install it with: apt-get install debootstrap");
    }
    let data_dir = data_dir.unwrap_or_else(crate::config::default_data_dir);
    let stacks = data_dir.join("stacks");
    let dest = stacks.join(&name);
    if let Err(e) = std::fs::create_dir_all(&dest) {
        return fail(format!("Cannot create {}: {e}", dest.display()));
    }
    let staging = dest.join("rootfs.new");
    let _ = std::fs::remove_dir_all(&staging);
    let mirror = std::env::var("SLIPWAY_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let security = std::env::var("SLIPWAY_DEBIAN_SECURITY_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian-security".into());
    println!(
        "Building stack {name} in {} (a few minutes)...",
        dest.display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("stacks:install")
        .arg(&staging)
        .arg(suite)
        .arg(&mirror)
        .arg(&security)
        .arg(&name)
        .arg(PACKAGES)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&staging);
            return fail(format!(
                "Building stack {name} failed (see the lines above). Nothing was changed."
            ));
        }
        Err(e) => return fail(format!("Cannot run bash: {e}")),
    }
    if let Err(e) = replace(&staging, &dest.join("rootfs")) {
        return fail(format!("Cannot move the new stack into place: {e}"));
    }
    println!("Stack {name} installed. Use it with: slipway stack:set {name} -a APP");
    ExitCode::SUCCESS
}

/// Moves `new` to `dest`, replacing what was there.
fn replace(new: &Path, dest: &Path) -> std::io::Result<()> {
    let old = dest.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if dest.exists() {
        std::fs::rename(dest, &old)?;
    }
    std::fs::rename(new, dest)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
