//! Slipway's builder: turns a pushed commit into a slug with Heroku's classic buildpack API.
//!
//! Data enters as a tar stream of the app's source (`git archive --format=tar <commit>`) plus a
//! [`BuildRequest`] (app, commit, buildpacks, config vars, stack). [`Builder::build`] unpacks the
//! source into a fresh build directory, removes `.git` and `.slugignore` matches, picks the
//! buildpacks (the app's list, else `BUILDPACK_URL`, else the first built-in whose `bin/detect`
//! passes), runs `bin/detect`, `bin/compile BUILD_DIR CACHE_DIR ENV_DIR` and the `export` hand-off
//! of each one in order, reads the last one's `bin/release`, merges the built app's Procfile over
//! its default process types, and packs the result. Every line of build output leaves through an
//! unbounded channel as it is produced, in Heroku's format (`-----> ` steps, 7-space details),
//! from detection to `Done: <size>`; the caller adds the push's header and outcome lines and
//! prints a failed build's error, whose message is one line saying what to do.
//!
//! Slugs leave as tar + zstd blobs in the content-addressed [`SlugStore`] (object_store over a
//! local directory, so S3 is a configuration change), keyed by the sha256 of the compressed
//! bytes; [`SlugStore::unpack`] verifies that hash while it unpacks, and refuses entries that
//! would escape the destination. The [`BuiltSlug`] returned by a build carries that key, the size,
//! the merged process types and the buildpack's description, for the caller to record a release.
//!
//! The built-in buildpacks (`python`, `nodejs`, `static`, `procfile`) are shell scripts embedded in
//! the binary and written under the builder's root at start; they use the stack's own tools and
//! reach only package registries. [`parse_procfile`] is the Procfile parser the rest of Slipway
//! shares. Buildpack programs run with a cleared environment: as host processes, or, when the
//! builder is given a [`BuildSandbox`], each in a build dyno (the runtime's `dyno-exec` launcher:
//! a container on the stack, as an unprivileged user, that sees only the stack and the build's
//! own directories, bound at their host paths).

mod archive;
mod builder;
mod buildpack;
mod error;
mod fsutil;
mod process;
mod procfile;
mod release;
mod sandbox;
mod slug_store;
mod slugignore;

pub use builder::{BuildRequest, Builder, BuiltSlug};
pub use buildpack::BUILTIN_BUILDPACKS;
pub use error::BuildError;
pub use procfile::{merge_process_types, parse_procfile};
pub use sandbox::BuildSandbox;
pub use slug_store::SlugStore;
