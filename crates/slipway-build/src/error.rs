//! The builder's error type. Each message is one line that says what went wrong and what to do.

use std::io;
use std::process::ExitStatus;

/// Why a build, or a slug store operation, failed.
#[derive(thiserror::Error, Debug)]
pub enum BuildError {
    /// No buildpack was set and no built-in buildpack's `bin/detect` accepted the app.
    #[error(
        "App not compatible with buildpack: no built-in buildpack detected this app. Add a \
         Procfile, requirements.txt, package.json or index.html, or set one with \
         `slipway buildpacks:set`."
    )]
    NoBuildpackDetected,

    /// A buildpack set on the app declined it in `bin/detect`.
    #[error(
        "App not compatible with buildpack: {buildpack}. Its bin/detect declined this app (see the \
         output above); fix the app or change its buildpacks with `slipway buildpacks:set`."
    )]
    DetectFailed {
        /// The buildpack as the app names it.
        buildpack: String,
    },

    /// `bin/compile` exited with a failure status.
    #[error(
        "Failed to compile {name} app: buildpack {buildpack} ended with {status}. Fix the error \
         shown above and push again."
    )]
    CompileFailed {
        /// The buildpack as the app names it.
        buildpack: String,
        /// What its `bin/detect` printed, e.g. `Python`.
        name: String,
        /// How `bin/compile` ended.
        status: ExitStatus,
    },

    /// `bin/compile` ran past the compile time limit and was killed.
    #[error(
        "Failed to compile {name} app: buildpack {buildpack} ran longer than {minutes} minutes \
         and was stopped. Make the build faster (the build cache persists between successful \
         builds) and push again."
    )]
    CompileTimeout {
        /// The buildpack as the app names it.
        buildpack: String,
        /// What its `bin/detect` printed.
        name: String,
        /// The limit, in minutes.
        minutes: u64,
    },

    /// A buildpack's `bin/detect` or `bin/release` failed or hung.
    #[error("Buildpack {buildpack} failed: {reason}. Fix the buildpack or choose another one with `slipway buildpacks:set`.")]
    BuildpackFailed {
        /// The buildpack as the app names it.
        buildpack: String,
        /// What went wrong.
        reason: String,
    },

    /// The built app's Procfile could not be parsed.
    #[error("Invalid Procfile: {0}. Each line must read `<process type>: <command>`; fix it and push again.")]
    InvalidProcfile(String),

    /// A buildpack reference is none of the accepted forms.
    #[error(
        "Unknown buildpack `{0}`: use a built-in name (python, nodejs, static, procfile), an \
         absolute path on the server, or a git URL (https://..., file://..., with an optional #ref)."
    )]
    UnknownBuildpack(String),

    /// The app's stack is not on this server.
    #[error("Stack {0} is not installed on this server. Choose an installed one with `slipway stack:set` (see `slipway stacks`).")]
    StackMissing(String),

    /// A buildpack could not be fetched or copied.
    #[error("Could not fetch buildpack: {0}. Check the buildpack's URL or path with `slipway buildpacks`.")]
    BuildpackFetch(String),

    /// A buildpack was fetched but lacks what the classic API requires.
    #[error("Buildpack {buildpack} is not usable: {reason}.")]
    InvalidBuildpack {
        /// The buildpack as the app names it.
        buildpack: String,
        /// What is missing.
        reason: String,
    },

    /// The compressed slug is over the size limit.
    #[error(
        "Compiled slug size: {size} is too large (max is {max}). Add files not needed at run time \
         to .slugignore and push again."
    )]
    SlugTooLarge {
        /// The compressed size, formatted like `500.1M`.
        size: String,
        /// The limit, formatted like `500M`.
        max: String,
    },

    /// An app id that cannot be used as a directory name.
    #[error("Invalid app id `{0}`: only letters, digits, `-` and `_` are allowed.")]
    InvalidAppId(String),

    /// A slug key that is not a lowercase hex sha256.
    #[error("Invalid slug id `{0}`: expected 64 lowercase hex digits (a sha256).")]
    InvalidSlugId(String),

    /// The slug store has no slug under this key.
    #[error("Slug {0} is not in the slug store. Build the app again to create it.")]
    SlugNotFound(String),

    /// The stored slug's bytes do not hash to its key.
    #[error("Slug {expected} is corrupt: its content hashes to {actual}. Build the app again to create a new slug.")]
    SlugChecksumMismatch {
        /// The key asked for.
        expected: String,
        /// The sha256 of what the store returned.
        actual: String,
    },

    /// A tar archive (source or slug) holds an entry that may not be unpacked.
    #[error("Refusing to unpack archive: {0}.")]
    UnsafeArchive(String),

    /// `unpack` found its destination already populated (for example by a concurrent unpack).
    #[error(
        "Cannot unpack into {0}: it already exists and is not empty. Unpack into a new directory."
    )]
    DestinationExists(String),

    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the builder was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The object store failed.
    #[error("Slug store error: {0}")]
    Store(#[from] object_store::Error),
}

/// Adds a context line to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`BuildError::Io`] with `context` as its description.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, BuildError>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, BuildError> {
        self.map_err(|source| BuildError::Io {
            context: context(),
            source,
        })
    }
}
