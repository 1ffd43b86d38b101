//! The slug store: pack → unpack round trips, and refusal of corrupt or hostile slugs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use slipway_build::{BuildError, SlugStore};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Stores raw tar bytes as a slug, bypassing the packer, and returns its key.
fn put_raw_slug(store_dir: &Path, tar: &[u8]) -> String {
    let compressed = zstd::encode_all(tar, 3).unwrap();
    let sha = hex::encode(Sha256::digest(&compressed));
    let dir = store_dir.join("slugs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{sha}.tar.zst")), compressed).unwrap();
    sha
}

/// A tar holding one regular file whose raw header name is `name` (which the tar crate's own
/// builder would refuse to write).
fn tar_with_raw_name(name: &[u8], kind: tar::EntryType) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"pwned\n"
    } else {
        b""
    };
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

/// Names in `dir`, to check that nothing (such as a temp sibling) was left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn roundtrip_keeps_contents_modes_symlinks_and_long_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SlugStore::local(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    let long = format!("{}/{}", "d".repeat(90), "f".repeat(120));
    common::write_files(
        &src,
        &[
            ("app.py", "print('hi')\n", 0o644),
            ("bin/run", "#!/bin/sh\necho run\n", 0o755),
            ("secret.txt", "s", 0o600),
            (&long, "deep", 0o640),
        ],
    );
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("bin/run", src.join("run-link")).unwrap();
    std::os::unix::fs::symlink("/app/.heroku/python", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("missing", src.join("dangling")).unwrap();

    let (sha, size) = store.pack_and_put(&src).await.unwrap();
    assert_eq!(sha.len(), 64);
    let stored = tmp
        .path()
        .join("store/slugs")
        .join(format!("{sha}.tar.zst"));
    let bytes = std::fs::read(&stored).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
    assert!(store.exists(&sha).await.unwrap());

    // Entries are relative to the packed directory.
    let tar = zstd::decode_all(&bytes[..]).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let path = entry.unwrap().path().unwrap().into_owned();
        assert!(path.is_relative() && !path.starts_with("src"), "{path:?}");
    }

    let dest = tmp.path().join("slugs-unpacked").join(&sha);
    store.unpack(&sha, &dest).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("app.py")).unwrap(),
        "print('hi')\n"
    );
    assert_eq!(std::fs::read_to_string(dest.join(&long)).unwrap(), "deep");
    assert_eq!(mode(&dest.join("bin/run")), 0o755);
    assert_eq!(mode(&dest.join("secret.txt")), 0o600);
    assert_eq!(mode(&dest.join(&long)), 0o640);
    assert_eq!(mode(&dest.join("empty")), 0o750);
    assert!(dest.join("empty").is_dir());
    for (link, target) in [
        ("run-link", "bin/run"),
        ("abs-link", "/app/.heroku/python"),
        ("dangling", "missing"),
    ] {
        let path = dest.join(link);
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_link(&path).unwrap(), Path::new(target));
    }
    assert_eq!(names(dest.parent().unwrap()), vec![sha.clone()]);

    // Packing the same tree again gives the same key (entries are sorted, owners zeroed).
    let (again, _) = store.pack_and_put(&src).await.unwrap();
    assert_eq!(again, sha);

    // A populated destination is not overwritten.
    match store.unpack(&sha, &dest).await {
        Err(BuildError::DestinationExists(_)) => {}
        other => panic!("expected DestinationExists, got {other:?}"),
    }
    assert_eq!(names(dest.parent().unwrap()), vec![sha.clone()]);
}

#[tokio::test]
async fn corrupted_slug_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SlugStore::local(tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    common::write_files(&src, &[("a.txt", &big, 0o644), ("b.txt", "b", 0o644)]);
    let (sha, _) = store.pack_and_put(&src).await.unwrap();

    let stored = tmp
        .path()
        .join("store/slugs")
        .join(format!("{sha}.tar.zst"));
    // Flip one bit in the middle, and separately append a byte (valid zstd, wrong hash).
    for corrupt in [
        Box::new(|b: &mut Vec<u8>| {
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
        }) as Box<dyn Fn(&mut Vec<u8>)>,
        Box::new(|b: &mut Vec<u8>| b.extend_from_slice(&zstd::encode_all(&b""[..], 1).unwrap())),
    ] {
        let original = std::fs::read(&stored).unwrap();
        let mut bytes = original.clone();
        corrupt(&mut bytes);
        std::fs::write(&stored, &bytes).unwrap();

        let parent = tmp.path().join("out");
        std::fs::create_dir_all(&parent).unwrap();
        let dest = parent.join("slug");
        let err = store.unpack(&sha, &dest).await.unwrap_err();
        assert!(
            matches!(err, BuildError::SlugChecksumMismatch { .. }),
            "expected a checksum error, got {err:?}"
        );
        assert!(!dest.exists());
        assert!(
            names(&parent).is_empty(),
            "left behind: {:?}",
            names(&parent)
        );
        std::fs::write(&stored, original).unwrap();
    }
    // Restored, it unpacks.
    store
        .unpack(&sha, &tmp.path().join("out/slug"))
        .await
        .unwrap();
}

#[tokio::test]
async fn hostile_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = SlugStore::local(store_dir.clone()).unwrap();
    let cases: [(&[u8], tar::EntryType); 4] = [
        (b"../evil", tar::EntryType::Regular),
        (b"ok/../../evil", tar::EntryType::Regular),
        (b"/tmp/evil-absolute", tar::EntryType::Regular),
        (b"dev-null", tar::EntryType::Char),
    ];
    for (i, (name, kind)) in cases.into_iter().enumerate() {
        let sha = put_raw_slug(&store_dir, &tar_with_raw_name(name, kind));
        let parent = tmp.path().join(format!("case{i}"));
        let dest = parent.join("inner").join("slug");
        let err = store.unpack(&sha, &dest).await.unwrap_err();
        assert!(
            matches!(err, BuildError::UnsafeArchive(_)),
            "{}: expected UnsafeArchive, got {err:?}",
            String::from_utf8_lossy(name)
        );
        assert!(!dest.exists());
        assert!(!parent.join("evil").exists() && !parent.join("inner/evil").exists());
        assert!(names(&parent.join("inner")).is_empty());
    }
    assert!(!Path::new("/tmp/evil-absolute").exists());
}

#[tokio::test]
async fn entry_through_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = SlugStore::local(store_dir.clone()).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "escape", &outside).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(3);
    file.set_mode(0o644);
    builder
        .append_data(&mut file, "escape/planted", &b"bad"[..])
        .unwrap();
    let sha = put_raw_slug(&store_dir, &builder.into_inner().unwrap());

    let dest = tmp.path().join("dest");
    let err = store.unpack(&sha, &dest).await.unwrap_err();
    assert!(matches!(err, BuildError::UnsafeArchive(_)), "{err:?}");
    assert!(!outside.join("planted").exists());
    assert!(!dest.exists());
}

#[tokio::test]
async fn missing_and_malformed_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SlugStore::local(tmp.path().join("store")).unwrap();
    let absent = "0".repeat(64);
    assert!(!store.exists(&absent).await.unwrap());
    assert!(matches!(
        store.unpack(&absent, &tmp.path().join("x")).await,
        Err(BuildError::SlugNotFound(_))
    ));
    for bad in ["", "../../etc/passwd", &"A".repeat(64), &"0".repeat(63)] {
        assert!(matches!(
            store.exists(bad).await,
            Err(BuildError::InvalidSlugId(_))
        ));
    }
    // The store creates its directory.
    assert!(tmp.path().join("store").is_dir());
}
