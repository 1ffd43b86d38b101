//! Tar packing and safe unpacking, plus the plumbing that feeds async streams to the synchronous
//! `tar`/`zstd` code on a blocking thread.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::error::{BuildError, IoContext};

/// How many chunks may wait between the async reader and the blocking unpacker.
const CHANNEL_CHUNKS: usize = 8;
const CHUNK_SIZE: usize = 64 * 1024;

/// A `Read` over chunks sent from async code; used on a blocking thread.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// A channel whose sender is fed by [`pump`] and whose reader goes to a blocking thread.
    pub(crate) fn channel() -> (mpsc::Sender<io::Result<Bytes>>, ChannelReader) {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        (
            tx,
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Copies `reader` into `tx` until EOF, an error (forwarded), or the receiving side hanging up.
pub(crate) async fn pump<R: AsyncRead + Unpin>(mut reader: R, tx: mpsc::Sender<io::Result<Bytes>>) {
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        match reader.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Ok(buf.freeze())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// A reader that hashes (sha256) everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Hex sha256 of what was read.
    pub(crate) fn hex_digest(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts everything written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the hex sha256 and the byte count of what was written.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the contents of `dir` as a tar stream to `out`: paths relative to `dir`, entries in
/// byte order of their names, modes and mtimes kept, symlinks stored as symlinks, owners zeroed.
/// Sockets, FIFOs and device nodes are left out.
pub(crate) fn pack_dir<W: Write>(dir: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    append_children(&mut builder, dir, Path::new(""))?;
    builder.into_inner()
}

fn append_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_uid(0);
        header.set_gid(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel, io::empty())?;
            append_children(builder, &path, &rel)?;
        } else if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &rel, fs::read_link(&path)?)?;
        } else if kind.is_file() {
            let file = fs::File::open(&path)?;
            // Size from the open file, so a file that changed since `symlink_metadata` can't
            // desynchronise the header and the data.
            let len = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(len);
            builder.append_data(&mut header, &rel, file.take(len))?;
        }
    }
    Ok(())
}

/// The relative path an archive entry names, or why it may not be unpacked.
fn safe_relative(path: &Path) -> Result<PathBuf, String> {
    let mut rel = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("entry `{}` contains `..`", path.display()));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry `{}` is an absolute path", path.display()));
            }
        }
    }
    Ok(rel)
}

/// Refuses a path whose parent directories inside `dest` include a symlink, so an entry can
/// never be written through a link that an earlier entry planted.
fn check_no_symlink_parents(dest: &Path, rel: &Path) -> Result<(), BuildError> {
    let mut at = dest.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for part in parents.iter().take(parents.len().saturating_sub(1)) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(BuildError::UnsafeArchive(format!(
                    "entry `{}` goes through a symlink",
                    rel.display()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unpacks every entry of `archive` under `dest` (an existing directory). Refuses absolute
/// paths, `..`, paths through symlinks, hard links pointing outside, device nodes and FIFOs.
/// Modes are kept without setuid/setgid bits; owners are not restored.
pub(crate) fn unpack_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
) -> Result<(), BuildError> {
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    let entries = archive.entries().ctx(|| "reading archive".into())?;
    for entry in entries {
        let mut entry = entry.ctx(|| "reading archive entry".into())?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .ctx(|| "reading archive entry path".into())?
            .into_owned();
        let rel = match kind {
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => continue,
            _ => safe_relative(&path).map_err(BuildError::UnsafeArchive)?,
        };
        match kind {
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(BuildError::UnsafeArchive(format!(
                    "entry `{}` is a device node",
                    path.display()
                )));
            }
            tar::EntryType::Fifo => {
                return Err(BuildError::UnsafeArchive(format!(
                    "entry `{}` is a FIFO",
                    path.display()
                )));
            }
            tar::EntryType::Directory => {
                if rel.as_os_str().is_empty() {
                    continue;
                }
                check_no_symlink_parents(dest, &rel)?;
                let target = dest.join(&rel);
                if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&target).ctx(|| format!("replacing {}", target.display()))?;
                }
                fs::create_dir_all(&target).ctx(|| format!("creating {}", target.display()))?;
                let mode = entry.header().mode().unwrap_or(0o755);
                dirs.push((target, mode));
            }
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Symlink
            | tar::EntryType::Link => {
                if rel.as_os_str().is_empty() {
                    return Err(BuildError::UnsafeArchive(
                        "an entry has an empty path".into(),
                    ));
                }
                if kind == tar::EntryType::Link {
                    let link = entry
                        .link_name()
                        .ctx(|| "reading hard link target".into())?
                        .ok_or_else(|| {
                            BuildError::UnsafeArchive(format!(
                                "hard link `{}` has no target",
                                path.display()
                            ))
                        })?;
                    let link_rel = safe_relative(&link).map_err(BuildError::UnsafeArchive)?;
                    check_no_symlink_parents(dest, &link_rel)?;
                    if fs::symlink_metadata(dest.join(&link_rel))
                        .is_ok_and(|m| m.file_type().is_symlink())
                    {
                        return Err(BuildError::UnsafeArchive(format!(
                            "hard link `{}` points at a symlink",
                            path.display()
                        )));
                    }
                }
                check_no_symlink_parents(dest, &rel)?;
                let target = dest.join(&rel);
                // Replace, never write through, whatever an earlier entry left at this path.
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => crate::fsutil::force_remove_dir(&target)
                        .ctx(|| format!("replacing {}", target.display()))?,
                    Ok(_) => fs::remove_file(&target)
                        .ctx(|| format!("replacing {}", target.display()))?,
                    Err(_) => {}
                }
                entry.set_preserve_permissions(false);
                entry.set_preserve_mtime(true);
                let unpacked = entry
                    .unpack_in(dest)
                    .ctx(|| format!("unpacking {}", rel.display()))?;
                if !unpacked {
                    return Err(BuildError::UnsafeArchive(format!(
                        "entry `{}` would land outside the destination",
                        path.display()
                    )));
                }
            }
            other => {
                return Err(BuildError::UnsafeArchive(format!(
                    "entry `{}` has unsupported type {other:?}",
                    path.display()
                )));
            }
        }
    }
    // Directory modes last, deepest first, so read-only directories don't block their contents.
    for (dir, mode) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode & 0o777))
            .ctx(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// Unpacks an uncompressed tar stream into `dest` (an existing directory), reading all of
/// `reader` even after the archive's end marker.
pub(crate) async fn unpack_tar_stream<R: AsyncRead + Unpin>(
    reader: R,
    dest: &Path,
) -> Result<(), BuildError> {
    let (tx, rx) = ChannelReader::channel();
    let dest = dest.to_path_buf();
    let unpacker = tokio::task::spawn_blocking(move || -> Result<(), BuildError> {
        let mut archive = tar::Archive::new(rx);
        let result = unpack_entries(&mut archive, &dest);
        // Drain what follows the end marker so the writer never sees a broken pipe.
        let mut rest = archive.into_inner();
        let drained = io::copy(&mut rest, &mut io::sink());
        result?;
        drained.ctx(|| "reading the rest of the archive".into())?;
        Ok(())
    });
    pump(reader, tx).await;
    unpacker.await.map_err(|e| BuildError::Io {
        context: "unpacking archive".into(),
        source: io::Error::other(e),
    })?
}
