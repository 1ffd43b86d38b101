//! Content-addressed slug storage: tar + zstd blobs under `slugs/<sha256>.tar.zst`.

use std::fs;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::archive::{self, ChannelReader, HashingReader, HashingWriter};
use crate::error::{BuildError, IoContext};

/// zstd level: the default trade-off, fast enough for build-time packing.
const ZSTD_LEVEL: i32 = 3;
/// Size of each part uploaded to the object store.
const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;
/// Upload parts in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;

/// Content-addressed slug storage (tar + zstd) over an [`ObjectStore`]; today a local directory
/// through object_store's `LocalFileSystem`, so S3 is later a configuration change.
///
/// Cloning is cheap and clones share the store.
#[derive(Clone)]
pub struct SlugStore {
    store: Arc<dyn ObjectStore>,
    /// Local directory for slugs being packed before their hash (and so their key) is known.
    staging: PathBuf,
}

impl std::fmt::Debug for SlugStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlugStore")
            .field("store", &self.store.to_string())
            .field("staging", &self.staging)
            .finish()
    }
}

/// A slug packed into a staging file, not yet in the store. The file is deleted on drop.
pub(crate) struct PackedSlug {
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

impl Drop for PackedSlug {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl SlugStore {
    /// A store in the local directory `dir` (created if missing); slugs land in `dir/slugs/`.
    pub fn local(dir: PathBuf) -> Result<SlugStore, BuildError> {
        let staging = dir.join(".staging");
        fs::create_dir_all(&staging)
            .ctx(|| format!("creating the slug store at {}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(SlugStore {
            store: Arc::new(store),
            staging,
        })
    }

    /// Packs the contents of `dir` (paths relative to it, modes and symlinks kept) as tar + zstd,
    /// stores it under `slugs/<sha256>.tar.zst`, and returns the sha256 and compressed size.
    pub async fn pack_and_put(&self, dir: &Path) -> Result<(String, u64), BuildError> {
        let packed = self.pack(dir).await?;
        self.put(&packed).await?;
        Ok((packed.sha256.clone(), packed.size))
    }

    /// Whether slug `sha256` is in the store.
    pub async fn exists(&self, sha256: &str) -> Result<bool, BuildError> {
        let location = location(sha256)?;
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches slug `sha256`, verifies its hash while reading, and unpacks it into `dest`.
    ///
    /// The slug is unpacked into a temporary sibling of `dest` that is renamed into place only
    /// once the hash matches, so a half-unpacked or unverified `dest` never exists; on any error
    /// nothing is left behind. Entries escaping `dest` (absolute paths, `..`, paths through
    /// symlinks) and device nodes are refused. If `dest` already exists and is not empty (say a
    /// concurrent unpack won), the result is [`BuildError::DestinationExists`] and it is left as
    /// is; an existing empty directory is replaced.
    pub async fn unpack(&self, sha256: &str, dest: &Path) -> Result<(), BuildError> {
        let location = location(sha256)?;
        let name = dest
            .file_name()
            .ok_or_else(|| BuildError::Io {
                context: format!("unpacking slug into {}", dest.display()),
                source: io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name"),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let got = match self.store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BuildError::SlugNotFound(sha256.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };

        tokio::fs::create_dir_all(&parent)
            .await
            .ctx(|| format!("creating {}", parent.display()))?;
        let tmp = parent.join(format!(
            ".{name}.unpacking-{}",
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::create_dir(&tmp)
            .await
            .ctx(|| format!("creating {}", tmp.display()))?;

        let (tx, rx) = ChannelReader::channel();
        let expected = sha256.to_owned();
        let tmp_for_unpack = tmp.clone();
        let unpacker =
            tokio::task::spawn_blocking(move || unpack_verified(rx, &tmp_for_unpack, &expected));
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(io::Error::other);
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let result = match unpacker.await {
            Ok(result) => result,
            Err(e) => Err(BuildError::Io {
                context: "unpacking slug".into(),
                source: io::Error::other(e),
            }),
        };

        let result = match result {
            Ok(()) => match tokio::fs::rename(&tmp, dest).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                    ) =>
                {
                    Err(BuildError::DestinationExists(dest.display().to_string()))
                }
                Err(e) => Err(BuildError::Io {
                    context: format!("moving the unpacked slug to {}", dest.display()),
                    source: e,
                }),
            },
            Err(e) => Err(e),
        };
        let _ = tokio::task::spawn_blocking(move || crate::fsutil::force_remove_dir(&tmp)).await;
        result
    }

    /// Packs `dir` into a staging file, hashing the compressed bytes as they are written.
    pub(crate) async fn pack(&self, dir: &Path) -> Result<PackedSlug, BuildError> {
        let dir = dir.to_path_buf();
        let path = self
            .staging
            .join(format!("{}.tar.zst", uuid::Uuid::new_v4().simple()));
        let staging_path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<PackedSlug, BuildError> {
            // From here on, the PackedSlug's Drop removes the staging file on every error path.
            let mut packed = PackedSlug {
                path: staging_path,
                sha256: String::new(),
                size: 0,
            };
            let file = fs::File::create(&packed.path)
                .ctx(|| format!("creating {}", packed.path.display()))?;
            let hashing = HashingWriter::new(BufWriter::new(file));
            let mut encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL)
                .ctx(|| "starting zstd compression".into())?;
            encoder
                .include_checksum(true)
                .ctx(|| "configuring zstd compression".into())?;
            let encoder =
                archive::pack_dir(&dir, encoder).ctx(|| format!("packing {}", dir.display()))?;
            let hashing = encoder
                .finish()
                .ctx(|| "finishing zstd compression".into())?;
            let (writer, sha256, size) = hashing.finish();
            let file = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .ctx(|| format!("writing {}", packed.path.display()))?;
            file.sync_all()
                .ctx(|| format!("writing {}", packed.path.display()))?;
            packed.sha256 = sha256;
            packed.size = size;
            Ok(packed)
        })
        .await
        .map_err(|e| BuildError::Io {
            context: "packing slug".into(),
            source: io::Error::other(e),
        })?
    }

    /// Uploads a packed slug under its hash, unless a slug with that hash is already stored.
    pub(crate) async fn put(&self, packed: &PackedSlug) -> Result<(), BuildError> {
        if self.exists(&packed.sha256).await? {
            return Ok(());
        }
        let location = location(&packed.sha256)?;
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
        let mut file = tokio::fs::File::open(&packed.path)
            .await
            .ctx(|| format!("opening {}", packed.path.display()))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(BuildError::Io {
                        context: format!("reading {}", packed.path.display()),
                        source: e,
                    });
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }
}

/// The object path of slug `sha256`, after checking that it is a sha256 in lowercase hex.
fn location(sha256: &str) -> Result<ObjectPath, BuildError> {
    let valid = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(BuildError::InvalidSlugId(sha256.to_owned()));
    }
    Ok(ObjectPath::from(format!("slugs/{sha256}.tar.zst")))
}

/// Decompresses and unpacks a slug from `reader` into `dest`, hashing every compressed byte;
/// a hash mismatch wins over any unpack error, since it explains it.
fn unpack_verified<R: Read>(reader: R, dest: &Path, expected: &str) -> Result<(), BuildError> {
    let hashing = HashingReader::new(reader);
    let decoder = zstd::Decoder::new(hashing).ctx(|| "starting zstd decompression".into())?;
    let mut tar = tar::Archive::new(decoder);
    let unpacked = archive::unpack_entries(&mut tar, dest);
    let mut hashing = tar.into_inner().finish().into_inner();
    let drained = io::copy(&mut hashing, &mut io::sink());
    let actual = hashing.hex_digest();
    if drained.is_ok() && actual != expected {
        return Err(BuildError::SlugChecksumMismatch {
            expected: expected.to_owned(),
            actual,
        });
    }
    unpacked?;
    drained.ctx(|| "reading slug".into())?;
    Ok(())
}
