//! Stacks: the root filesystems dynos run on.
//!
//! A [`Stack`] is a directory that becomes a dyno's read-only `/`, plus host directories bound
//! into it. [`Stack::host`] builds the development stack: the host's own `/usr` bound read-only
//! and a synthesised `/etc` with only what programs need to run (users, name service, loader
//! cache, CA certificates), never the host's `shadow`, keys or other secrets.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The uid and gid the app runs as inside a dyno.
pub const DYNO_UID: u32 = 10000;
pub const DYNO_GID: u32 = 10000;

/// A root filesystem for dynos.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stack {
    /// Stack name, e.g. `slipway-host`.
    pub name: String,
    /// The directory mounted read-only as `/`.
    pub root: PathBuf,
    /// Host directories bound read-only into the root: (host path, path inside, relative).
    pub binds: Vec<(PathBuf, String)>,
}

/// Files copied from the host's `/etc` into the development stack.
const HOST_ETC: &[&str] = &[
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates.conf",
    "alternatives",
    "localtime",
    "timezone",
    "protocols",
    "services",
    "mime.types",
    "bash.bashrc",
    "profile",
    "debian_version",
    "host.conf",
    "gai.conf",
    "inputrc",
    "os-release",
    "python3",
    "python3.11",
];

/// Mount points every stack must have.
const MOUNT_POINTS: &[&str] = &[
    "app", "proc", "dev", "tmp", "usr", "etc", "home", "root", "run", "var/tmp", "var/lib",
];

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        let _ = std::fs::remove_file(to);
        symlink(target, to)
    } else if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        Ok(())
    }
}

impl Stack {
    /// An installed stack: `<dir>/<name>/rootfs`, a complete root filesystem of its own.
    pub fn installed(dir: &Path, name: &str) -> Option<Stack> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !name.starts_with('.');
        let root = dir.join(name).join("rootfs");
        (ok && root.is_dir()).then(|| Stack {
            name: name.to_string(),
            root,
            binds: vec![],
        })
    }

    /// `name` as this host has it: `self` if it is this stack, else an installed one.
    pub fn resolve(&self, dir: &Path, name: &str) -> Option<Stack> {
        if name == self.name || name.is_empty() {
            Some(self.clone())
        } else {
            Stack::installed(dir, name)
        }
    }

    /// Builds (or refreshes) the development stack under `dir` from the host's `/usr`.
    ///
    /// A stack in use is never changed under its dynos (removing a mount point would unmount it
    /// in every dyno that has one there): the tree is built beside, kept if it equals the one in
    /// place, and otherwise swapped in with the old one moved to `rootfs.old.<n>`
    /// ([`Stack::prune_old`] removes those once no dyno can be using them).
    pub fn host(dir: &Path) -> std::io::Result<Stack> {
        let live = dir.join("rootfs");
        let root = dir.join("rootfs.new");
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        for d in MOUNT_POINTS {
            std::fs::create_dir_all(root.join(d))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        std::fs::set_permissions(
            root.join("var/tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )?;
        // Merged-/usr layout: /bin, /lib... point into /usr.
        for link in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(link);
            if let Ok(target) = std::fs::read_link(&host) {
                symlink(target, root.join(link))?;
            } else if Path::new("/usr").join(link).is_dir() {
                symlink(format!("usr/{link}"), root.join(link))?;
            }
        }
        let etc = root.join("etc");
        for name in HOST_ETC {
            let from = Path::new("/etc").join(name);
            if std::fs::symlink_metadata(&from).is_ok() {
                let to = etc.join(name);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                copy_tree(&from, &to)?;
            }
        }
        std::fs::write(
            etc.join("passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                 dyno:x:{DYNO_UID}:{DYNO_GID}:dyno:/app:/bin/bash\n"
            ),
        )?;
        std::fs::write(
            etc.join("group"),
            format!("root:x:0:\nnogroup:x:65534:\ndyno:x:{DYNO_GID}:\n"),
        )?;
        // Per-dyno files are bound over these.
        for f in ["hosts", "resolv.conf", "hostname"] {
            std::fs::write(etc.join(f), "")?;
        }
        if live.exists() && manifest(&live)? == manifest(&root)? {
            std::fs::remove_dir_all(&root)?;
        } else {
            if live.exists() {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                std::fs::rename(&live, dir.join(format!("rootfs.old.{stamp}")))?;
            }
            std::fs::rename(&root, &live)?;
        }
        Ok(Stack {
            name: "slipway-host".into(),
            root: live,
            binds: vec![(PathBuf::from("/usr"), "usr".into())],
        })
    }

    /// Removes host stack trees replaced by [`Stack::host`]; call only when no dyno runs.
    pub fn prune_old(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("rootfs.old.")
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Every path below `root` with what it is: its mode and its contents or link target.
fn manifest(root: &Path) -> std::io::Result<Vec<(PathBuf, u32, Vec<u8>)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let body = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)?
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                todo.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path)?
            };
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((rel, meta.permissions().mode(), body));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_stack_is_not_rebuilt_under_running_dynos() {
        let dir = tempfile::tempdir().unwrap();
        let first = Stack::host(dir.path()).unwrap();
        let marker = first.root.join("usr/.in-use");
        std::fs::write(&marker, "").unwrap();
        // Same content apart from what a dyno put there: rebuilt beside and found different,
        // so the old tree is moved aside, not deleted.
        let second = Stack::host(dir.path()).unwrap();
        assert_eq!(first.root, second.root);
        let old: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("rootfs.old."))
            .collect();
        assert_eq!(old.len(), 1);
        assert!(old[0].path().join("usr/.in-use").exists());
        // Unchanged: kept as it is (same inode).
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&second.root).unwrap().ino();
        let third = Stack::host(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&third.root).unwrap().ino(), ino);
        Stack::prune_old(dir.path());
        assert!(!old[0].path().exists());
    }

    #[test]
    fn installed_stacks_are_found_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("debian-12/rootfs")).unwrap();
        let host = Stack {
            name: "slipway-host".into(),
            root: "/x".into(),
            binds: vec![],
        };
        let s = host.resolve(dir.path(), "debian-12").unwrap();
        assert_eq!(s.root, dir.path().join("debian-12/rootfs"));
        assert!(s.binds.is_empty());
        assert_eq!(
            host.resolve(dir.path(), "slipway-host").unwrap().root,
            PathBuf::from("/x")
        );
        assert_eq!(host.resolve(dir.path(), "").unwrap().name, "slipway-host");
        assert!(host.resolve(dir.path(), "heroku-24").is_none());
        assert!(Stack::installed(dir.path(), "../debian-12").is_none());
        assert!(Stack::installed(dir.path(), ".hidden").is_none());
    }
}
