//! Files replaced whole: a reader sees the old contents or the new, never a part, and a crash
//! while writing leaves the old file as it was.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` (file mode `mode`): written beside it, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, bytes, mode, |_| Ok(()))
}

/// [`write_atomic`], calling `prepare` on the new file before it takes `path`'s place (to give
/// it to another owner, say).
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    prepare: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = aside(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The mode given at creation is masked by the umask; this one is not.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        prepare(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A name beside `path` that no other writer, in this process or another, uses at once.
fn aside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "slipway-files-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn readers_never_see_part_of_a_file() {
        let dir = scratch();
        let path = dir.join("state.json");
        let (a, b) = (vec![b'a'; 1 << 20], vec![b'b'; 1 << 20]);
        write_atomic(&path, &a, 0o600).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let text = std::fs::read(&path).unwrap();
                    assert_eq!(text.len(), 1 << 20, "a part of the file was read");
                    assert!(text.iter().all(|c| *c == text[0]), "two writes mixed");
                    reads += 1;
                }
                reads
            })
        };
        let writers: Vec<_> = [a, b]
            .into_iter()
            .map(|bytes| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        write_atomic(&path, &bytes, 0o600).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["state.json"], "temporary files left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_mode_is_set_and_a_failed_prepare_leaves_the_old_file() {
        let dir = scratch();
        let path = dir.join("hook");
        write_atomic(&path, b"one", 0o755).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let err = write_atomic_with(&path, b"two", 0o600, |_| Err(io::Error::other("no")));
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
