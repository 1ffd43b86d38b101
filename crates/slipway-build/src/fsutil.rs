//! Small filesystem helpers used by builds: tree copies and removal of read-only trees.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Copies the tree at `src` to `dst` (which must not exist), keeping modes and symlinks;
/// sockets, FIFOs and devices are skipped, and so are top-level names in `skip`.
pub(crate) fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    fs::create_dir(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name.as_os_str() == *s) {
            continue;
        }
        copy_entry(&entry.path(), &dst.join(&name))?;
    }
    fs::set_permissions(
        dst,
        fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
    )
}

fn copy_entry(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else if kind.is_dir() {
        copy_tree(src, dst, &[])
    } else if kind.is_file() {
        // Opened without following a symlink: one swapped in since the listing is not copied
        // as the file it points to (the server may read what the build's user may not).
        let mut from = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(src)?;
        let meta = from.metadata()?;
        if !meta.is_file() {
            return Ok(());
        }
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)?;
        // io::copy between files uses copy_file_range (reflinks where supported).
        io::copy(&mut from, &mut to)?;
        to.set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o7777,
        ))
    } else {
        Ok(())
    }
}

/// Gives the tree at `path` to `uid`:`gid`, without following symlinks.
pub(crate) fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if !fs::symlink_metadata(path)?.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Removes a directory tree even when some directories in it are read-only (as Go's module
/// cache makes them), by granting the owner write access and retrying. Missing is fine.
pub(crate) fn force_remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(|_| first)
        }
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}
