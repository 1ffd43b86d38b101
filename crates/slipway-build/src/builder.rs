//! The build itself: source in, buildpacks run, slug out.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::mpsc::UnboundedSender;

use crate::buildpack::{self, redact, Fetcher, Source};
use crate::error::{BuildError, IoContext};
use crate::process::{self, Ended, Env};
use crate::procfile::{merge_process_types, parse_procfile};
use crate::release;
use crate::sandbox::{BuildDyno, BuildSandbox};
use crate::slug_store::SlugStore;
use crate::slugignore::SlugIgnore;

/// Heroku's base PATH for builds.
const DEFAULT_BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Heroku's compile limit.
const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Limit for `bin/detect` and `bin/release`, which should be instant.
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);
/// Heroku's hard limit on the compressed slug.
const MAX_SLUG_SIZE: u64 = 500 * 1024 * 1024;
/// Above this, Heroku warns that boot may be slow.
const SOFT_SLUG_SIZE: u64 = 300 * 1024 * 1024;

/// What to build: the pushed commit of one app, and how.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The app's id; names its build cache directory (letters, digits, `-`, `_`).
    pub app_id: String,
    /// The app's name, for messages.
    pub app_name: String,
    /// Full sha of the pushed commit; exported as `SOURCE_VERSION`.
    pub commit: String,
    /// The app's buildpacks in order: built-in names (`python`, `nodejs`, `static`, `procfile`,
    /// also as `heroku/<name>`), absolute local paths, or git URLs with an optional `#ref`.
    /// Empty: the `BUILDPACK_URL` config var if set, else auto-detection among the built-ins.
    pub buildpacks: Vec<String>,
    /// Config vars; buildpacks see them as ENV_DIR files, never in their environment.
    pub config: BTreeMap<String, String>,
    /// The stack, exported as `STACK` (e.g. `slipway-host`).
    pub stack: String,
}

/// The result of a successful build; the slug is in the slug store under `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltSlug {
    /// Hex sha256 of the compressed slug, its key in the slug store.
    pub sha256: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// Process types: the Procfile merged over the last buildpack's `default_process_types`.
    pub process_types: BTreeMap<String, String>,
    /// What the last buildpack's `bin/detect` printed, e.g. `Python`.
    pub buildpack_description: String,
}

/// Runs builds. Owns a directory: built-in buildpacks in `buildpacks/`, per-app build caches in
/// `cache/<app_id>/`, git buildpack mirrors in `buildpack-cache/`, build dirs in `tmp/`.
///
/// Builds of different apps run in parallel; builds of one app wait for each other, since they
/// share its cache.
///
/// Buildpack programs run as host processes with the server's user, or, given a
/// [`BuildSandbox`], each in a build dyno as the sandbox's unprivileged user.
pub struct Builder {
    root: PathBuf,
    slugs: SlugStore,
    fetcher: Fetcher,
    build_path: String,
    compile_timeout: Duration,
    sandbox: Option<BuildSandbox>,
    /// Directories (canonical) whose contents apps may name as buildpacks by path.
    local_buildpacks: Vec<PathBuf>,
    app_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("root", &self.root)
            .field("build_path", &self.build_path)
            .field("compile_timeout", &self.compile_timeout)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// One buildpack of a build, fetched into the build's own copy.
struct Pack {
    /// As the app lists it (credentials removed), for messages.
    shown: String,
    source: Source,
    dir: PathBuf,
    cache_key: String,
    /// Set when auto-detection already ran its `bin/detect`.
    detected: Option<String>,
}

/// The largest `.slugignore` a build reads.
const SLUGIGNORE_MAX: u64 = 1024 * 1024;

impl Builder {
    /// A builder owning `root`: creates its directories, clears build dirs left by a previous
    /// process, and writes the built-in buildpacks to `root/buildpacks/<name>/bin/*`.
    pub async fn new(root: PathBuf, slugs: SlugStore) -> Result<Builder, BuildError> {
        for sub in ["buildpacks", "cache", "buildpack-cache", "tmp"] {
            let dir = root.join(sub);
            tokio::fs::create_dir_all(&dir)
                .await
                .ctx(|| format!("creating {}", dir.display()))?;
        }
        let tmp = root.join("tmp");
        let mut stale = tokio::fs::read_dir(&tmp)
            .await
            .ctx(|| format!("reading {}", tmp.display()))?;
        while let Some(entry) = stale
            .next_entry()
            .await
            .ctx(|| format!("reading {}", tmp.display()))?
        {
            let path = entry.path();
            let removed =
                tokio::task::spawn_blocking(move || crate::fsutil::force_remove_dir(&path)).await;
            if let Ok(Err(error)) = removed {
                tracing::warn!(%error, "Could not remove a stale build directory.");
            }
        }
        buildpack::install_builtins(&root.join("buildpacks")).await?;
        Ok(Builder {
            fetcher: Fetcher::new(root.join("buildpacks"), root.join("buildpack-cache")),
            root,
            slugs,
            build_path: DEFAULT_BUILD_PATH.to_owned(),
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            sandbox: None,
            local_buildpacks: Vec::new(),
            app_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Lets apps name buildpacks on this server (an absolute path, or a `file://` git URL) that
    /// are inside one of `dirs`. By default none: what else is on the server is not an app's to
    /// read, and a build copies its buildpacks as the server's user. Missing dirs are skipped.
    pub fn with_local_buildpacks(mut self, dirs: &[PathBuf]) -> Builder {
        self.local_buildpacks = dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        self
    }

    /// Checks a buildpack reference as a build will take it: one of the accepted forms, and a
    /// path only inside the directories allowed with [`Builder::with_local_buildpacks`].
    pub fn check_buildpack(&self, reference: &str) -> Result<(), BuildError> {
        let source = Source::parse(reference)?;
        let path = match &source {
            Source::Local(path) => path.clone(),
            Source::Git { url, .. } => match url.strip_prefix("file://") {
                Some(path) => PathBuf::from(path),
                None => return Ok(()),
            },
            Source::Builtin(_) => return Ok(()),
        };
        let real = match std::fs::canonicalize(&path) {
            Ok(real) => Some(real),
            // Missing: judged by its name, and the fetch then says it is missing.
            Err(_)
                if !path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir) =>
            {
                Some(path.clone())
            }
            Err(_) => None,
        };
        // git decodes a file:// URL's %-escapes (`%2e%2e` is `..`): none are taken.
        let encoded = path.as_os_str().as_encoded_bytes().contains(&b'%');
        let allowed = path.is_absolute()
            && !encoded
            && real.is_some_and(|real| self.local_buildpacks.iter().any(|d| real.starts_with(d)));
        if allowed {
            return Ok(());
        }
        Err(BuildError::InvalidBuildpack {
            buildpack: buildpack::redact(reference),
            reason: if self.local_buildpacks.is_empty() {
                "this server takes no buildpacks from its own disk; use a built-in one or a git \
                 URL, or have the operator start it with --local-buildpacks DIR"
                    .to_owned()
            } else {
                format!(
                    "buildpacks on this server must be directories inside {}",
                    self.local_buildpacks
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        })
    }

    /// Sets the `PATH` builds start with (default: Heroku's
    /// `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`).
    pub fn with_build_path(mut self, path: impl Into<String>) -> Builder {
        self.build_path = path.into();
        self
    }

    /// Sets how long each `bin/compile` may run (default: 15 minutes, as on Heroku).
    pub fn with_compile_timeout(mut self, timeout: Duration) -> Builder {
        self.compile_timeout = timeout;
        self
    }

    /// Runs every buildpack program (`bin/detect`, `bin/compile`, `bin/release`, the sourcing of
    /// `export` files) in a build dyno: a container on `sandbox.stack`, as `sandbox.uid`, that
    /// sees the stack, the build's own directories and the built-in buildpacks (read-only).
    pub fn with_sandbox(mut self, sandbox: BuildSandbox) -> Builder {
        self.sandbox = Some(sandbox);
        self
    }

    /// Whether buildpack programs run in build dynos.
    pub fn is_sandboxed(&self) -> bool {
        self.sandbox.is_some()
    }

    /// The slug store builds put their slugs in.
    pub fn slug_store(&self) -> &SlugStore {
        &self.slugs
    }

    /// Deletes an app's build cache, so its next build starts with empty CACHE_DIRs (what
    /// `heroku builds:cache:purge` asks for). Waits for a running build of the app.
    pub async fn purge_cache(&self, app_id: &str) -> Result<(), BuildError> {
        check_app_id(app_id)?;
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        let dir = self.root.join("cache").join(app_id);
        remove_dir(dir).await
    }

    /// Runs a build of the tar stream `source_tar` (the output of `git archive --format=tar`),
    /// sending every output line to `out` as it is produced, and puts the slug in the store.
    ///
    /// On failure the output stops where the build did; the caller shows the error (one line).
    pub async fn build(
        &self,
        req: BuildRequest,
        source_tar: impl AsyncRead + Unpin + Send,
        out: UnboundedSender<String>,
    ) -> Result<BuiltSlug, BuildError> {
        check_app_id(&req.app_id)?;
        let lock = self.app_lock(&req.app_id);
        let _guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                say(
                    &out,
                    "-----> Waiting for the app's previous build to finish",
                );
                lock.lock().await
            }
        };
        let workspace = Workspace::create(&self.root.join("tmp")).await?;
        tracing::info!(app = %req.app_name, commit = %req.commit, build_dir = %workspace.build_dir.display(), "Build started.");
        let result = self.run(&req, source_tar, &out, &workspace).await;
        workspace.remove().await;
        match &result {
            Ok(slug) => {
                tracing::info!(app = %req.app_name, slug = %slug.sha256, size = slug.size, "Build succeeded.")
            }
            Err(error) => tracing::info!(app = %req.app_name, %error, "Build failed."),
        }
        result
    }

    fn app_lock(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.app_locks.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(app_id.to_owned()).or_default().clone()
    }

    async fn run(
        &self,
        req: &BuildRequest,
        source_tar: impl AsyncRead + Unpin + Send,
        out: &UnboundedSender<String>,
        ws: &Workspace,
    ) -> Result<BuiltSlug, BuildError> {
        let build_dir = &ws.build_dir;
        crate::archive::unpack_tar_stream(source_tar, build_dir).await?;
        remove_dir(build_dir.join(".git")).await?;
        self.apply_slugignore(build_dir, out).await?;
        write_env_dir(&ws.env_dir, &req.config, out).await?;
        let dyno = match &self.sandbox {
            Some(sandbox) => Some(self.build_dyno(sandbox, &req.stack, ws).await?),
            None => None,
        };
        let dyno = dyno.as_ref();

        let base_env = self.base_env(req, ws);
        let mut packs = self
            .choose_buildpacks(req, ws, &base_env, out, dyno)
            .await?;

        // Each buildpack's `export` file shapes the environment of the ones after it.
        let mut env = base_env.clone();
        let mut caches: Vec<(PathBuf, PathBuf)> = Vec::new();
        let app_cache = self.root.join("cache").join(&req.app_id);
        for pack in &mut packs {
            let name = match pack.detected.take() {
                Some(name) => name,
                None => {
                    self.detect_or_fail(pack, build_dir, &env, out, dyno)
                        .await?
                }
            };
            say(out, format!("-----> {name} app detected"));

            let work_cache = ws.cache_dir.join(&pack.cache_key);
            let saved_cache = app_cache.join(&pack.cache_key);
            copy_cache(&saved_cache, &work_cache).await?;
            if let Some(dyno) = dyno {
                dyno.hand_over(&work_cache).await?;
            }
            caches.push((work_cache.clone(), saved_cache));

            let compile = pack.dir.join("bin").join("compile");
            let args = [
                build_dir.as_os_str(),
                work_cache.as_os_str(),
                ws.env_dir.as_os_str(),
            ];
            let ended = process::run_streaming(
                &compile,
                &args,
                &env,
                build_dir,
                self.compile_timeout,
                out,
                dyno,
            )
            .await
            .ctx(|| format!("running {}", compile.display()))?;
            match ended {
                Ended::Exited(status) if status.success() => {}
                Ended::Exited(status) => {
                    return Err(BuildError::CompileFailed {
                        buildpack: pack.shown.clone(),
                        name,
                        status,
                    });
                }
                Ended::TimedOut => {
                    return Err(BuildError::CompileTimeout {
                        buildpack: pack.shown.clone(),
                        name,
                        minutes: self.compile_timeout.as_secs().div_ceil(60),
                    });
                }
            }
            pack.detected = Some(name);

            let export = pack.dir.join("export");
            if tokio::fs::metadata(&export)
                .await
                .is_ok_and(|m| m.is_file())
            {
                env = source_export(&export, &env, build_dir, &pack.shown, dyno).await?;
            }
        }

        let Some(last) = packs.last() else {
            return Err(BuildError::NoBuildpackDetected);
        };
        let description = last.detected.clone().unwrap_or_default();
        let defaults = self.release(last, build_dir, &base_env, dyno).await?;
        let procfile = read_procfile(build_dir).await?;
        let process_types = merge_process_types(&defaults, &procfile.clone().unwrap_or_default());
        report_process_types(out, procfile.as_ref(), &defaults);

        say(out, "-----> Compressing...");
        let packed = self.slugs.pack(build_dir).await?;
        if packed.size > MAX_SLUG_SIZE {
            return Err(BuildError::SlugTooLarge {
                size: human_size(packed.size),
                max: "500M".into(),
            });
        }
        if packed.size > SOFT_SLUG_SIZE {
            say(
                out,
                format!(
                    " !     Warning: Your slug size ({}) exceeds the soft limit (300M), which may affect boot time.",
                    human_size(packed.size)
                ),
            );
        }
        self.slugs.put(&packed).await?;
        // Only a successful build saves the cache; a failed one leaves the previous cache as it was.
        commit_caches(&app_cache, caches).await?;
        say(out, format!("       Done: {}", human_size(packed.size)));
        Ok(BuiltSlug {
            sha256: packed.sha256.clone(),
            size: packed.size,
            process_types,
            buildpack_description: description,
        })
    }

    /// Readies the build dyno. The build dir and HOME become the build user's (buildpack copies
    /// and working caches do as they are made); the directories around them stay root's and
    /// readable, so a buildpack can't swap the builder's own paths for symlinks.
    async fn build_dyno(
        &self,
        sandbox: &BuildSandbox,
        stack: &str,
        ws: &Workspace,
    ) -> Result<BuildDyno, BuildError> {
        let builtins = self.root.join("buildpacks");
        let stack = sandbox
            .stack
            .resolve(&sandbox.stacks_dir, stack)
            .ok_or_else(|| BuildError::StackMissing(stack.to_string()))?;
        let dyno = BuildDyno::create(
            sandbox,
            stack,
            ws.dyno_dir.clone(),
            &[&ws.build_dir, &ws.work_dir],
            &[&builtins],
        )
        .await?;
        for dir in [&ws.work_dir, &ws.env_dir, &ws.buildpacks_dir, &ws.cache_dir] {
            BuildDyno::open_up(dir, 0o755).await?;
        }
        let mut vars = tokio::fs::read_dir(&ws.env_dir)
            .await
            .ctx(|| format!("reading {}", ws.env_dir.display()))?;
        while let Some(var) = vars
            .next_entry()
            .await
            .ctx(|| format!("reading {}", ws.env_dir.display()))?
        {
            BuildDyno::open_up(&var.path(), 0o644).await?;
        }
        dyno.hand_over(&ws.build_dir).await?;
        dyno.hand_over(&ws.home_dir).await?;
        Ok(dyno)
    }

    /// The platform's part of every buildpack program's environment (Heroku: `PATH HOME STACK
    /// SOURCE_VERSION REQUEST_ID BUILDPACK_LOG_FILE`), and nothing from the server's own.
    fn base_env(&self, req: &BuildRequest, ws: &Workspace) -> Env {
        let mut env = Env::new();
        let mut set = |k: &str, v: &OsStr| {
            env.insert(OsString::from(k), v.to_owned());
        };
        set("PATH", OsStr::new(&self.build_path));
        set("HOME", ws.home_dir.as_os_str());
        set("STACK", OsStr::new(&req.stack));
        set("SOURCE_VERSION", OsStr::new(&req.commit));
        set("REQUEST_ID", OsStr::new(&ws.id));
        set("BUILDPACK_LOG_FILE", OsStr::new("/dev/null"));
        env
    }

    async fn apply_slugignore(
        &self,
        build_dir: &Path,
        out: &UnboundedSender<String>,
    ) -> Result<(), BuildError> {
        let file = build_dir.join(".slugignore");
        // The app's own file only: a symlink could lead anywhere on the server (which reads it
        // as its own user), and a pattern list has no use for megabytes.
        match tokio::fs::symlink_metadata(&file).await {
            Ok(meta) if meta.is_file() && meta.len() <= SLUGIGNORE_MAX => {}
            Ok(_) => {
                say(
                    out,
                    format!(
                        " !     .slugignore is not a regular file of at most {} KB; it is ignored.",
                        SLUGIGNORE_MAX / 1024
                    ),
                );
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| "reading .slugignore".into()),
        }
        let text = match tokio::fs::read(&file).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return Err(e).ctx(|| "reading .slugignore".into()),
        };
        let ignore = SlugIgnore::parse(&text);
        let dir = build_dir.to_path_buf();
        let deleted = tokio::task::spawn_blocking(move || ignore.apply(&dir))
            .await
            .map_err(|e| BuildError::Io {
                context: "applying .slugignore".into(),
                source: io::Error::other(e),
            })?
            .ctx(|| "applying .slugignore".into())?;
        if deleted > 0 {
            let noun = if deleted == 1 { "file" } else { "files" };
            say(
                out,
                format!("-----> Deleting {deleted} {noun} matching .slugignore patterns."),
            );
        }
        Ok(())
    }

    /// The app's buildpacks fetched into the workspace, or the first built-in that detects it.
    async fn choose_buildpacks(
        &self,
        req: &BuildRequest,
        ws: &Workspace,
        env: &Env,
        out: &UnboundedSender<String>,
        dyno: Option<&BuildDyno>,
    ) -> Result<Vec<Pack>, BuildError> {
        let mut refs: Vec<String> = req
            .buildpacks
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        if refs.is_empty() {
            if let Some(url) = req
                .config
                .get("BUILDPACK_URL")
                .filter(|u| !u.trim().is_empty())
            {
                refs.push(url.trim().to_owned());
            }
        }
        let sayer = |line: String| say(out, line);

        if refs.is_empty() {
            say(
                out,
                "-----> Determining which buildpack to use for this app",
            );
            for bp in buildpack::builtins() {
                let dir = self.fetcher.builtin_path(bp.name);
                let detection = detect(&dir, bp.name, &ws.build_dir, env, dyno).await?;
                if let Some(name) = detection.passed() {
                    let source = Source::Builtin(bp.name);
                    let copy = ws.buildpacks_dir.join("1");
                    self.fetcher
                        .materialize(bp.name, &source, &copy, &sayer)
                        .await?;
                    if let Some(dyno) = dyno {
                        dyno.hand_over(&copy).await?;
                    }
                    return Ok(vec![Pack {
                        shown: bp.name.to_owned(),
                        cache_key: source.cache_key(),
                        source,
                        dir: copy,
                        detected: Some(name),
                    }]);
                }
            }
            return Err(BuildError::NoBuildpackDetected);
        }

        if let [only] = refs.as_slice() {
            say(out, format!("-----> Using buildpack: {}", redact(only)));
        } else {
            say(out, "-----> Using buildpacks:");
            for (i, r) in refs.iter().enumerate() {
                say(out, format!("       {}. {}", i + 1, redact(r)));
            }
        }
        let mut packs: Vec<Pack> = Vec::new();
        for (i, reference) in refs.iter().enumerate() {
            self.check_buildpack(reference)?;
            let source = Source::parse(reference)?;
            let dir = ws.buildpacks_dir.join((i + 1).to_string());
            self.fetcher
                .materialize(reference, &source, &dir, &sayer)
                .await?;
            if let Some(dyno) = dyno {
                dyno.hand_over(&dir).await?;
            }
            let mut cache_key = source.cache_key();
            if packs.iter().any(|p| p.cache_key == cache_key) {
                cache_key = format!("{cache_key}-{}", i + 1);
            }
            packs.push(Pack {
                shown: redact(reference),
                source,
                dir,
                cache_key,
                detected: None,
            });
        }
        Ok(packs)
    }

    /// Runs a set buildpack's `bin/detect`; a refusal prints Heroku's message and detect's stderr.
    async fn detect_or_fail(
        &self,
        pack: &Pack,
        build_dir: &Path,
        env: &Env,
        out: &UnboundedSender<String>,
        dyno: Option<&BuildDyno>,
    ) -> Result<String, BuildError> {
        match detect(&pack.dir, &pack.shown, build_dir, env, dyno).await? {
            Detection::Passed(name) => Ok(name),
            Detection::Declined { stderr } => {
                say(
                    out,
                    format!("-----> App not compatible with buildpack: {}", pack.shown),
                );
                for line in String::from_utf8_lossy(&stderr).lines() {
                    say(out, line);
                }
                if matches!(pack.source, Source::Builtin(_)) {
                    say(
                        out,
                        "       Slipway's built-in buildpacks: python, nodejs, static, procfile.",
                    );
                }
                Err(BuildError::DetectFailed {
                    buildpack: pack.shown.clone(),
                })
            }
        }
    }

    /// The last buildpack's `default_process_types` (its `bin/release` is optional, and runs
    /// without the `export` environment, as on Heroku).
    async fn release(
        &self,
        pack: &Pack,
        build_dir: &Path,
        env: &Env,
        dyno: Option<&BuildDyno>,
    ) -> Result<BTreeMap<String, String>, BuildError> {
        let program = pack.dir.join("bin").join("release");
        if tokio::fs::metadata(&program).await.is_err() {
            return Ok(BTreeMap::new());
        }
        let captured = process::run_captured(
            &program,
            &[build_dir.as_os_str()],
            env,
            build_dir,
            QUICK_TIMEOUT,
            dyno,
        )
        .await
        .map_err(|e| BuildError::BuildpackFailed {
            buildpack: pack.shown.clone(),
            reason: format!("could not run bin/release: {e}"),
        })?;
        match captured.ended {
            Ended::Exited(status) if status.success() => Ok(release::default_process_types(
                &String::from_utf8_lossy(&captured.stdout),
            )),
            Ended::Exited(status) => Err(BuildError::BuildpackFailed {
                buildpack: pack.shown.clone(),
                reason: format!(
                    "bin/release ended with {status}: {}",
                    first_line(&captured.stderr)
                ),
            }),
            Ended::TimedOut => Err(BuildError::BuildpackFailed {
                buildpack: pack.shown.clone(),
                reason: "bin/release did not finish in time".into(),
            }),
        }
    }
}

/// What `bin/detect` said.
enum Detection {
    Passed(String),
    Declined { stderr: Vec<u8> },
}

impl Detection {
    fn passed(self) -> Option<String> {
        match self {
            Detection::Passed(name) => Some(name),
            Detection::Declined { .. } => None,
        }
    }
}

/// Runs `bin/detect BUILD_DIR`: exit 0 means the buildpack applies and stdout names the app's
/// framework (falling back to the buildpack's name when empty).
async fn detect(
    bp_dir: &Path,
    shown: &str,
    build_dir: &Path,
    env: &Env,
    dyno: Option<&BuildDyno>,
) -> Result<Detection, BuildError> {
    let program = bp_dir.join("bin").join("detect");
    let captured = process::run_captured(
        &program,
        &[build_dir.as_os_str()],
        env,
        build_dir,
        QUICK_TIMEOUT,
        dyno,
    )
    .await
    .map_err(|e| BuildError::BuildpackFailed {
        buildpack: shown.to_owned(),
        reason: format!("could not run bin/detect: {e}"),
    })?;
    match captured.ended {
        Ended::Exited(status) if status.success() => {
            let text = String::from_utf8_lossy(&captured.stdout);
            let name = text.split_whitespace().collect::<Vec<_>>().join(" ");
            Ok(Detection::Passed(if name.is_empty() {
                shown.to_owned()
            } else {
                name
            }))
        }
        Ended::Exited(_) => Ok(Detection::Declined {
            stderr: captured.stderr,
        }),
        Ended::TimedOut => Err(BuildError::BuildpackFailed {
            buildpack: shown.to_owned(),
            reason: "bin/detect did not finish in time".into(),
        }),
    }
}

/// Sources a buildpack's `export` file in bash over `env` and returns the resulting environment.
async fn source_export(
    export: &Path,
    env: &Env,
    build_dir: &Path,
    shown: &str,
    dyno: Option<&BuildDyno>,
) -> Result<Env, BuildError> {
    let script = OsStr::new(". \"$1\" >/dev/null 2>&1; exec env -0");
    let args = [
        OsStr::new("-c"),
        script,
        OsStr::new("bash"),
        export.as_os_str(),
    ];
    let bash = Path::new("bash");
    let captured = process::run_captured(bash, &args, env, build_dir, QUICK_TIMEOUT, dyno)
        .await
        .ctx(|| format!("sourcing {}", export.display()))?;
    match captured.ended {
        Ended::Exited(status) if status.success() => {}
        _ => {
            return Err(BuildError::BuildpackFailed {
                buildpack: shown.to_owned(),
                reason: "its export file could not be sourced".into(),
            });
        }
    }
    let mut next = Env::new();
    for item in captured.stdout.split(|&b| b == 0) {
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        if key.is_empty() || matches!(key, b"_" | b"SHLVL" | b"PWD" | b"OLDPWD") {
            continue;
        }
        next.insert(
            OsStr::from_bytes(key).to_owned(),
            OsStr::from_bytes(value).to_owned(),
        );
    }
    Ok(next)
}

/// Writes ENV_DIR: one file per config var, named by the key, holding the value byte for byte.
async fn write_env_dir(
    dir: &Path,
    config: &BTreeMap<String, String>,
    out: &UnboundedSender<String>,
) -> Result<(), BuildError> {
    for (key, value) in config {
        if key.is_empty() || key == "." || key == ".." || key.contains(['/', '\0']) {
            say(
                out,
                format!(
                    " !     Config var `{key}` is not a valid file name; buildpacks won't see it."
                ),
            );
            continue;
        }
        let path = dir.join(key);
        tokio::fs::write(&path, value)
            .await
            .ctx(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads and parses the built app's Procfile, if it has one.
async fn read_procfile(build_dir: &Path) -> Result<Option<BTreeMap<String, String>>, BuildError> {
    let path = build_dir.join("Procfile");
    // The builder reads it with more rights than the build had: a symlink may not lead out.
    let inside = match (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(build_dir).await,
    ) {
        (Ok(target), Ok(dir)) => target.starts_with(&dir),
        (Err(e), _) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        (Err(e), _) | (_, Err(e)) => return Err(e).ctx(|| "reading the Procfile".into()),
    };
    if !inside {
        return Err(BuildError::InvalidProcfile(
            "the Procfile is a symlink to a file outside the app".into(),
        ));
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                BuildError::InvalidProcfile("the Procfile is not valid UTF-8".into())
            })?;
            parse_procfile(&text)
                .map(Some)
                .map_err(BuildError::InvalidProcfile)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| "reading the Procfile".into()),
    }
}

/// Heroku's "Discovering process types" block.
fn report_process_types(
    out: &UnboundedSender<String>,
    procfile: Option<&BTreeMap<String, String>>,
    defaults: &BTreeMap<String, String>,
) {
    say(out, "-----> Discovering process types");
    let declared = match procfile {
        Some(types) => types.keys().cloned().collect::<Vec<_>>().join(", "),
        None => "(none)".to_owned(),
    };
    if defaults.is_empty() {
        say(out, format!("       Procfile declares types -> {declared}"));
    } else {
        say(
            out,
            format!("       Procfile declares types     -> {declared}"),
        );
        let names = defaults.keys().cloned().collect::<Vec<_>>().join(", ");
        say(
            out,
            format!("       Default types for buildpack -> {names}"),
        );
    }
}

/// Copies an app's saved cache for one buildpack into the build's working copy, or starts it
/// empty.
async fn copy_cache(saved: &Path, work: &Path) -> Result<(), BuildError> {
    let (saved, work) = (saved.to_path_buf(), work.to_path_buf());
    blocking("preparing the build cache", move || {
        if std::fs::symlink_metadata(&saved).is_ok_and(|m| m.is_dir()) {
            crate::fsutil::copy_tree(&saved, &work, &[])
        } else {
            std::fs::create_dir_all(&work)
        }
    })
    .await
}

/// Replaces the app's saved caches with the build's working copies.
async fn commit_caches(
    app_cache: &Path,
    caches: Vec<(PathBuf, PathBuf)>,
) -> Result<(), BuildError> {
    let app_cache = app_cache.to_path_buf();
    blocking("saving the build cache", move || {
        std::fs::create_dir_all(&app_cache)?;
        for (work, saved) in caches {
            let old = app_cache.join(format!(".old-{}", uuid::Uuid::new_v4().simple()));
            let had_old = match std::fs::rename(&saved, &old) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            std::fs::rename(&work, &saved)?;
            if had_old {
                crate::fsutil::force_remove_dir(&old)?;
            }
        }
        Ok(())
    })
    .await
}

async fn remove_dir(dir: PathBuf) -> Result<(), BuildError> {
    let shown = dir.display().to_string();
    blocking(&format!("removing {shown}"), move || {
        crate::fsutil::force_remove_dir(&dir)
    })
    .await
}

/// Runs blocking filesystem work off the async threads.
async fn blocking(
    what: &str,
    f: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> Result<(), BuildError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.ctx(|| what.to_owned()),
        Err(e) => Err(BuildError::Io {
            context: what.to_owned(),
            source: io::Error::other(e),
        }),
    }
}

fn check_app_id(app_id: &str) -> Result<(), BuildError> {
    let ok = !app_id.is_empty()
        && app_id.len() <= 128
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BuildError::InvalidAppId(app_id.to_owned()))
    }
}

fn say(out: &UnboundedSender<String>, line: impl Into<String>) {
    let _ = out.send(line.into());
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error output")
        .trim()
        .to_owned()
}

/// Sizes as Heroku prints them: `12.3K`, `39.3M`, `1.2G`.
fn human_size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{:.1}K", b / K)
    } else if b < K * K * K {
        format!("{:.1}M", b / (K * K))
    } else {
        format!("{:.1}G", b / (K * K * K))
    }
}

/// A build's scratch directories under the builder's `tmp/`: `build_<id>` (BUILD_DIR, as on
/// Heroku), `work_<id>` (ENV_DIR, HOME, buildpack copies, working caches) and, for a sandboxed
/// build, `dyno_<id>` (the build dyno's launcher directory), removed afterwards (or, if the build
/// future is dropped, on a blocking thread from `Drop`).
struct Workspace {
    id: String,
    build_dir: PathBuf,
    work_dir: PathBuf,
    dyno_dir: PathBuf,
    env_dir: PathBuf,
    home_dir: PathBuf,
    buildpacks_dir: PathBuf,
    cache_dir: PathBuf,
    removed: bool,
}

impl Workspace {
    async fn create(tmp: &Path) -> Result<Workspace, BuildError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let work_dir = tmp.join(format!("work_{id}"));
        let ws = Workspace {
            build_dir: tmp.join(format!("build_{id}")),
            dyno_dir: tmp.join(format!("dyno_{id}")),
            env_dir: work_dir.join("env"),
            home_dir: work_dir.join("home"),
            buildpacks_dir: work_dir.join("buildpacks"),
            cache_dir: work_dir.join("cache"),
            work_dir,
            id,
            removed: false,
        };
        for dir in [
            &ws.build_dir,
            &ws.env_dir,
            &ws.home_dir,
            &ws.buildpacks_dir,
            &ws.cache_dir,
        ] {
            tokio::fs::create_dir_all(dir)
                .await
                .ctx(|| format!("creating {}", dir.display()))?;
        }
        Ok(ws)
    }

    async fn remove(mut self) {
        self.removed = true;
        let dirs = [
            self.build_dir.clone(),
            self.work_dir.clone(),
            self.dyno_dir.clone(),
        ];
        let result = tokio::task::spawn_blocking(move || {
            for dir in dirs {
                crate::fsutil::force_remove_dir(&dir)?;
            }
            Ok::<_, io::Error>(())
        })
        .await;
        if let Ok(Err(error)) = result {
            tracing::warn!(%error, "Could not remove a build directory.");
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let dirs = [
            self.build_dir.clone(),
            self.work_dir.clone(),
            self.dyno_dir.clone(),
        ];
        let work = move || {
            for dir in dirs {
                let _ = crate::fsutil::force_remove_dir(&dir);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_heroku() {
        assert_eq!(human_size(512), "0.5K");
        assert_eq!(human_size(12_595), "12.3K");
        assert_eq!(human_size(41_208_627), "39.3M");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0G");
    }

    #[test]
    fn app_ids() {
        assert!(check_app_id("01234567-89ab-cdef-0123-456789abcdef").is_ok());
        assert!(check_app_id("../x").is_err());
        assert!(check_app_id("").is_err());
    }
}
