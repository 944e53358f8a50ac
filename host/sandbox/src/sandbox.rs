//! The [`Sandbox`]: the process's one engine and linker, its epoch ticker, and
//! loading (compile-or-load, import policy, contract check, pre-instantiation).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use weft_core::{Grant, Limits};

use crate::binary::{self, WasmLayer};
use crate::bindings::{Step, StepPre};
use crate::cache::{ContentHash, DiskCache, FileStamp, LoadedFrom, MemoryCache};
use crate::component::{Compiled, StepComponent};
use crate::deadline::EpochTicker;
use crate::error::SandboxError;
use crate::host::HostState;
use crate::imports;
use crate::isolate::{self, Compiler};
use crate::wasi::WasiGrants;

/// Linear memory pages the pooling allocator keeps resident (and resets with
/// `PAGEMAP_SCAN` + memset) between instances, instead of unmapping them.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
/// The same for tables.
const KEEP_RESIDENT_TABLES: usize = 64 << 10;

/// How a [`Sandbox`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Where precompiled artifacts are cached (`<sha256>-<engine key>.cwasm`);
    /// `None` compiles every distinct component once per process.
    pub cache_dir: Option<PathBuf>,
    /// How many step instances may exist at once (the instance pool's size).
    /// One more concurrent attempt fails with a retryable host failure.
    pub max_instances: u32,
    /// The largest memory limit a step may have, in bytes (the size of each
    /// memory slot of the pool). Loading a step with a higher
    /// `Limits::memory_bytes` fails.
    pub max_memory_bytes: u64,
    /// The largest component file the sandbox reads, in bytes (default
    /// 64 MiB; weft's largest guest, a Python component, is 18 MB). A larger
    /// file is refused from its size, before any of it is read or hashed.
    pub max_component_bytes: u64,
    /// Where components are compiled: in this process (the default, for
    /// trusted components), or in a child process under CPU-time and memory
    /// limits (what `weft` does).
    pub compiler: Compiler,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 200,
            max_memory_bytes: 1 << 30,
            max_component_bytes: 64 << 20,
            compiler: Compiler::InProcess,
        }
    }
}

/// Runs step components. One per process: it holds the wasmtime engine (and
/// its instance pool), the linker with every host import, a compile cache and
/// the thread that advances the engine's epoch for deadlines.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    compiled: MemoryCache<Compiled>,
    disk: Option<DiskCache>,
    ticker: Arc<EpochTicker>,
    max_memory_bytes: u64,
    max_component_bytes: u64,
    compiler: Compiler,
    pagemap_scan: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("cache_dir", &self.disk.as_ref().map(DiskCache::dir))
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("pagemap_scan", &self.pagemap_scan)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Creates the engine (pooling allocator, copy-on-write memory images,
    /// epoch interruption, fuel), the linker and the epoch ticker thread.
    ///
    /// The pool uses Linux's `PAGEMAP_SCAN` to reset memory between instances
    /// when the kernel offers it (≥ 6.7), which makes a fresh instance several
    /// times cheaper; elsewhere it works without.
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when wasmtime refuses the configuration (e.g.
    /// not enough virtual address space for the pool).
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
        let (engine, pagemap_scan) = match build_engine(&config, pagemap) {
            Ok(engine) => (engine, pagemap),
            Err(error) if pagemap => {
                tracing::warn!(%error, "cannot create the engine with PAGEMAP_SCAN; retrying without");
                (build_engine(&config, false)?, false)
            }
            Err(error) => return Err(error),
        };

        let mut linker = Linker::new(&engine);
        Step::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        // WASI 0.2 is linked once, virtualised (see `wasi`): each attempt's
        // context gives only what its step is granted, and the import policy
        // refuses the rest (e.g. `wasi:http`) at load.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        // Sleeps move the deterministic monotonic clock (see `wasi::clocks`).
        crate::wasi::link_sleeps(&mut linker, HostState::sleep_clock).map_err(engine_error)?;

        let disk = config.cache_dir.map(|dir| DiskCache::new(dir, &engine));
        let ticker = Arc::new(EpochTicker::start(engine.clone())?);
        tracing::debug!(
            pagemap_scan,
            max_instances = config.max_instances,
            "sandbox ready"
        );
        Ok(Self {
            engine,
            linker,
            compiled: MemoryCache::default(),
            disk,
            ticker,
            max_memory_bytes: config.max_memory_bytes,
            max_component_bytes: config.max_component_bytes,
            compiler: config.compiler,
            pagemap_scan,
        })
    }

    /// Whether the instance pool resets memory with `PAGEMAP_SCAN`.
    pub fn pagemap_scan(&self) -> bool {
        self.pagemap_scan
    }

    /// Checks that `limits` fit this sandbox (the memory cap fits a pool slot).
    ///
    /// # Errors
    /// [`SandboxError::MemoryLimit`] when `limits.memory_bytes` is above
    /// [`SandboxConfig::max_memory_bytes`].
    pub fn check_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        if limits.memory_bytes > self.max_memory_bytes {
            return Err(SandboxError::MemoryLimit {
                requested: limits.memory_bytes,
                max: self.max_memory_bytes,
            });
        }
        Ok(())
    }

    /// Loads the component at `path` for a step granted `grants`; see
    /// [`Sandbox::load_bytes`].
    ///
    /// # Errors
    /// [`SandboxError::Read`] when the file cannot be read; otherwise as
    /// [`Sandbox::load_bytes`], naming the component by its path.
    pub fn load_file(
        &self,
        path: &Path,
        grants: &[Grant],
    ) -> Result<Arc<StepComponent>, SandboxError> {
        let (compiled, loaded_from) = self.prepare_file(path)?;
        Ok(self.step_component(compiled, &path.display().to_string(), grants, loaded_from))
    }

    /// Loads a component (or a core module carrying wit-bindgen's component
    /// metadata, which is encoded into a component first, with the WASI
    /// preview1 adapter if it imports `wasi_snapshot_preview1`) for a step
    /// granted `grants`. Each distinct content is checked against the import
    /// policy *before* it is compiled, then compiled once (or read from the
    /// on-disk cache), checked against the world `weft:step/step@0.1.0`, and
    /// pre-instantiated; loading it again is cheap. The grants do not change
    /// what a component may import, only what its WASI imports give (see the
    /// crate's `wasi` module).
    ///
    /// # Errors
    /// [`SandboxError::NotWasm`], [`SandboxError::Encode`] or
    /// [`SandboxError::Compile`] when the bytes are not a usable component;
    /// [`SandboxError::ImportsDenied`] when it imports anything steps may not
    /// use (naming every such import); [`SandboxError::Async`] when it uses
    /// the component model's async ABI; [`SandboxError::NotAStep`] when it
    /// does not implement the world; [`SandboxError::Link`] when an import
    /// has another type than the host's.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        name: &str,
        grants: &[Grant],
    ) -> Result<Arc<StepComponent>, SandboxError> {
        let (compiled, loaded_from) = self.prepare(bytes, name)?;
        Ok(self.step_component(compiled, name, grants, loaded_from))
    }

    /// Reads, hashes and prepares a component file (whatever the grants).
    pub(crate) fn prepare_file(
        &self,
        path: &Path,
    ) -> Result<(Arc<Compiled>, LoadedFrom), SandboxError> {
        let name = path.display().to_string();
        let read_error = |error| SandboxError::Read {
            path: path.to_owned(),
            error,
        };
        // The file's identity, taken once, before anything is read.
        let canonical = std::fs::canonicalize(path).ok();
        let stamp = canonical.as_deref().and_then(FileStamp::of);
        // Warm: the file's content hash is known from its metadata, and
        // the compiled code is in memory or in the on-disk cache.
        if let (Some(disk), Some(canonical), Some(stamp)) = (&self.disk, &canonical, &stamp)
            && let Some(hash) = disk.known_hash(canonical, stamp)
        {
            if let Some(compiled) = self.compiled.get(&hash) {
                return Ok((compiled, LoadedFrom::Memory));
            }
            let mut head = [0u8; 8];
            std::fs::File::open(canonical)
                .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut head))
                .map_err(read_error)?;
            if let Some(layer) = binary::layer(&head)
                && let Some(component) = disk.load(&self.engine, &hash)
            {
                let compiled = self.cached(component, &name, hash, layer == WasmLayer::Core)?;
                return Ok((
                    self.compiled.insert(hash, Arc::new(compiled)),
                    LoadedFrom::Disk,
                ));
            }
        }
        // Read what was stamped (a symlink retargeted meanwhile is not),
        // if it is not too large.
        let bytes = self.read_component(canonical.as_deref().unwrap_or(path), path)?;
        let hash = ContentHash::of(&bytes);
        if let (Some(disk), Some(canonical), Some(stamp)) = (&self.disk, &canonical, &stamp) {
            disk.remember_hash(canonical, stamp, &hash);
        }
        self.prepare_hashed(&bytes, &name, hash)
    }

    /// Prepares the component whose bytes have the SHA-256 `sha256` (hex):
    /// compiled already by this sandbox, or from the on-disk cache, or read
    /// from `path` if the file there still has that digest.
    ///
    /// # Errors
    /// [`SandboxError::Pinned`] when it is in neither place (naming the path,
    /// the digest and what is at the path); otherwise as
    /// [`Sandbox::load_bytes`].
    pub(crate) fn prepare_pinned(
        &self,
        path: &Path,
        sha256: &str,
    ) -> Result<(Arc<Compiled>, LoadedFrom), SandboxError> {
        let pinned = |problem: String| SandboxError::Pinned {
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            problem,
        };
        let hash = ContentHash::parse(sha256)
            .ok_or_else(|| pinned("the recorded digest is not a SHA-256".to_owned()))?;
        if let Some(compiled) = self.compiled.get(&hash) {
            return Ok((compiled, LoadedFrom::Memory));
        }
        let name = path.display().to_string();
        if let Some(component) = self.disk.as_ref().and_then(|d| d.load(&self.engine, &hash)) {
            let compiled = self.cached(component, &name, hash, false)?;
            return Ok((
                self.compiled.insert(hash, Arc::new(compiled)),
                LoadedFrom::Disk,
            ));
        }
        let bytes = self.read_component(path, path).map_err(|e| match e {
            SandboxError::Read { error, .. } => pinned(format!("cannot read it: {error}")),
            other => other,
        })?;
        let found = ContentHash::of(&bytes);
        if found != hash {
            return Err(pinned(format!("the file there has sha256 {found}")));
        }
        self.prepare(&bytes, &name)
    }

    /// Reads the component file at `file` (named `path` in errors), refusing
    /// one larger than [`SandboxConfig::max_component_bytes`] from its size
    /// alone, and never reading more than the limit plus one byte (a file
    /// that grows while it is read is refused too).
    fn read_component(&self, file: &Path, path: &Path) -> Result<Vec<u8>, SandboxError> {
        use std::io::Read as _;
        let read_error = |error| SandboxError::Read {
            path: path.to_owned(),
            error,
        };
        let limit = self.max_component_bytes;
        let too_large = |size| SandboxError::TooLarge {
            path: path.to_owned(),
            size,
            limit,
        };
        let opened = std::fs::File::open(file).map_err(read_error)?;
        let size = opened.metadata().map_err(read_error)?.len();
        if size > limit {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        opened
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// A prepared component for a step with `grants`.
    pub(crate) fn step_component(
        &self,
        compiled: Arc<Compiled>,
        name: &str,
        grants: &[Grant],
        loaded_from: LoadedFrom,
    ) -> Arc<StepComponent> {
        tracing::debug!(component = name, hash = %compiled.hash, ?loaded_from, "component loaded");
        Arc::new(StepComponent::new(
            compiled,
            name.to_owned(),
            WasiGrants::of(grants),
            loaded_from,
            self.ticker.clone(),
        ))
    }

    /// Everything about a component that does not depend on the grants,
    /// once per distinct content.
    fn prepare(
        &self,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Arc<Compiled>, LoadedFrom), SandboxError> {
        self.prepare_hashed(bytes, name, ContentHash::of(bytes))
    }

    /// [`Sandbox::prepare`] of bytes whose hash is known.
    fn prepare_hashed(
        &self,
        bytes: &[u8],
        name: &str,
        hash: ContentHash,
    ) -> Result<(Arc<Compiled>, LoadedFrom), SandboxError> {
        if let Some(compiled) = self.compiled.get(&hash) {
            return Ok((compiled, LoadedFrom::Memory));
        }
        let (compiled, from) = self.compile(bytes, name, hash)?;
        Ok((self.compiled.insert(hash, Arc::new(compiled)), from))
    }

    /// Checks the imports, then compiles (or loads from disk), checks the
    /// exports and pre-instantiates.
    fn compile(
        &self,
        bytes: &[u8],
        name: &str,
        hash: ContentHash,
    ) -> Result<(Compiled, LoadedFrom), SandboxError> {
        let layer = binary::layer(bytes).ok_or_else(|| SandboxError::NotWasm {
            component: name.to_owned(),
        })?;
        let from_core = layer == WasmLayer::Core;
        let cached = self
            .disk
            .as_ref()
            .and_then(|disk| disk.load(&self.engine, &hash));
        let (component, loaded_from) = match cached {
            // Artifacts are only written for components that passed the
            // checks below, by this same crate version (see `cache`); the
            // import policy is applied again to the compiled type.
            Some(component) => {
                return Ok((
                    self.cached(component, name, hash, from_core)?,
                    LoadedFrom::Disk,
                ));
            }
            None => {
                let encoded;
                let component_bytes = match layer {
                    WasmLayer::Component => bytes,
                    WasmLayer::Core => {
                        encoded = binary::encode_core(bytes, name)?;
                        &encoded[..]
                    }
                };
                // Before compiling: a refused component costs no Cranelift time.
                let inspection = binary::inspect_component(component_bytes, name)?;
                imports::check(name, inspection.imports.iter().map(String::as_str))?;
                if let Some(what) = inspection.uses_async {
                    return Err(SandboxError::Async {
                        component: name.to_owned(),
                        what: what.to_owned(),
                    });
                }
                let component =
                    match &self.compiler {
                        Compiler::InProcess => Component::new(&self.engine, component_bytes)
                            .map_err(|error| SandboxError::Compile {
                                component: name.to_owned(),
                                reason: format!("{error:#}"),
                            })?,
                        Compiler::Isolated {
                            program,
                            args,
                            limits,
                        } => isolate::compile(
                            &self.engine,
                            component_bytes,
                            name,
                            program,
                            args,
                            *limits,
                        )?,
                    };
                if let Some(disk) = &self.disk {
                    disk.store(&hash, &component);
                }
                (component, LoadedFrom::Compiled)
            }
        };

        Ok((self.ready(component, name, hash, from_core)?, loaded_from))
    }

    /// A component from the on-disk cache: the import policy is applied
    /// again to its compiled type (the policy may have changed since).
    fn cached(
        &self,
        component: Component,
        name: &str,
        hash: ContentHash,
        from_core: bool,
    ) -> Result<Compiled, SandboxError> {
        let ty = component.component_type();
        imports::check(name, ty.imports(&self.engine).map(|(import, _)| import))?;
        self.ready(component, name, hash, from_core)
    }

    /// Checks the exports and pre-instantiates.
    fn ready(
        &self,
        component: Component,
        name: &str,
        hash: ContentHash,
        from_core: bool,
    ) -> Result<Compiled, SandboxError> {
        check_run_export(&self.engine, &component, name, from_core)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| SandboxError::Link {
                component: name.to_owned(),
                reason: format!("{error:#}"),
            })?;
        // Type-checks `run` against the world.
        let pre = StepPre::new(pre).map_err(|error| SandboxError::NotAStep {
            component: name.to_owned(),
            reason: format!("{error:#}"),
        })?;
        Ok(Compiled { pre, hash })
    }
}

/// A precise error for a missing or non-function `run` (the generated
/// bindings' type check covers a `run` of the wrong type).
fn check_run_export(
    engine: &Engine,
    component: &Component,
    name: &str,
    from_core: bool,
) -> Result<(), SandboxError> {
    use wasmtime::component::types::ComponentItem;

    let ty = component.component_type();
    let reason = match ty.get_export(engine, "run") {
        Some(export) if matches!(export.ty, ComponentItem::ComponentFunc(_)) => return Ok(()),
        Some(_) => "its export `run` is not a function".to_owned(),
        None => {
            let exports: Vec<&str> = ty.exports(engine).map(|(export, _)| export).collect();
            let exports = if exports.is_empty() {
                "it has no exports".to_owned()
            } else {
                format!("its exports are `{}`", exports.join("`, `"))
            };
            let mut reason = format!("it does not export the function `run` ({exports})");
            if from_core {
                reason.push_str(
                    "; a core module becomes a component through the component-type \
                     metadata wit-bindgen embeds: was it built with wit-bindgen for world `step`?",
                );
            }
            reason
        }
    };
    Err(SandboxError::NotAStep {
        component: name.to_owned(),
        reason,
    })
}

fn engine_error(error: wasmtime::Error) -> SandboxError {
    SandboxError::Engine {
        reason: format!("{error:#}"),
    }
}

fn build_engine(config: &SandboxConfig, pagemap_scan: bool) -> Result<Engine, SandboxError> {
    let instances = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // A step component holds one core instance per core module (up to 3 for
    // wasip2 guests, plus wit-component's shims), usually one memory and a
    // table or two per core instance.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        // Every attempt runs on a fiber (see `component`): one stack per
        // instance. (The default pool of 1,000 costs a process 1,000
        // `mprotect`s of their guard pages at start, ~5 ms of a cold
        // `weft run`.)
        .total_stacks(instances)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
    if pagemap_scan {
        // Without PAGEMAP_SCAN, keeping pages resident would memset them all on
        // every reuse: only worth it when the dirty ones can be found.
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLES);
    }

    let mut wasm = code_config();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(engine_error)
}

/// The engine of a compiler process (see `isolate`): the sandbox's code
/// settings, without its instance pool (which only running needs).
pub(crate) fn compile_engine() -> Result<Engine, SandboxError> {
    Engine::new(&code_config()).map_err(engine_error)
}

/// Every setting that shapes compiled code (the artifacts of a compiler
/// process must load in the sandbox's engine).
fn code_config() -> Config {
    let mut wasm = Config::new();
    wasm.memory_init_cow(true)
        // Explicit bounds checks instead of guard pages and signal handlers.
        // With virtual-memory bounds, a guest whose heap grew during its
        // call (almost every guest: the allocator grows memory for the
        // input) costs an `mprotect` back to the initial size on the next
        // instantiation of its slot, and shrinking protections flushes the
        // TLB of every CPU with an inter-processor interrupt: ~15 µs of a
        // 28 µs step on the reference VM. Without guard pages a slot stays
        // read/write once grown (the pool zeroes it on reuse, and the
        // checks keep the guest within its current size), so growth is a
        // bounds update. The checks cost the guest's own code a few percent.
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .signals_based_traps(false)
        .epoch_interruption(true)
        .consume_fuel(true);
    wasm
}
