//! `agent run`: the node daemon.

use std::{
    sync::{Arc, RwLock, atomic::AtomicUsize, mpsc},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    config::{EngineArgs, parse_duration},
    engine::{Engine, SharedSnapshot},
    exporter, http, mounts, privileges, probes,
};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Address and port to serve /metrics and /healthz on.
    #[arg(long, default_value = http::DEFAULT_LISTEN, env = "CHOKEPOINT_LISTEN")]
    listen: String,

    /// Span of the sliding window each cgroup is classified over (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "CHOKEPOINT_WINDOW")]
    window: Duration,

    /// How long a bottleneck class must hold before it is raised, and not
    /// hold before it is cleared (e.g. 10s); 0 follows every window.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "CHOKEPOINT_MIN_DURATION")]
    min_duration: Duration,

    /// Value of the `node` label; defaults to the host name. In Kubernetes,
    /// set it from spec.nodeName.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,

    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.engine.engine_config(args.window, args.min_duration)?;
    let address = http::parse_listen(&args.listen)?;
    privileges::check_probe_privileges()?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        kernel = %probes::kernel_release().as_deref().unwrap_or("unknown"),
        "starting chokepoint agent"
    );
    mounts::ensure_tracefs();

    // Bind before loading probes so a port already in use fails fast.
    let tick = config.tick;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("binding the metrics listener on {address} failed"))?;
    listener.set_nonblocking(true)?;

    let mut engine = Engine::start(config)?;
    release_freed_memory();
    return_large_buffers_when_freed();
    let attached = engine.probe_states().iter().filter(|state| state.skipped.is_none()).count();
    info!(attached, total = engine.probe_states().len(), "probes ready");

    let snapshot: SharedSnapshot = Arc::new(RwLock::new(Arc::new(engine.tick())));
    let (stop_sender, stop_receiver) = mpsc::channel::<()>();
    let engine_thread = spawn_engine(engine, snapshot.clone(), tick, stop_receiver)?;

    let node = args.node_name.unwrap_or_else(host_name);
    let server = http::Server {
        registry: exporter::registry(snapshot.clone(), node),
        snapshot,
        stale_after: tick * 5 + Duration::from_secs(5),
        last_body_len: AtomicUsize::new(0),
    };
    info!(%address, "serving /metrics and /healthz");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime failed")?;
    let outcome = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            result = http::serve(listener, server) => result,
            _ = terminate.recv() => { info!("SIGTERM received; shutting down"); Ok(()) }
            _ = interrupt.recv() => { info!("SIGINT received; shutting down"); Ok(()) }
        }
    });

    drop(stop_sender);
    if engine_thread.join().is_err() {
        warn!("the collection thread panicked");
    }
    info!("probes detached; exiting");
    outcome
}

/// Runs the engine on its own thread, publishing a snapshot every tick
/// until `stop` is dropped. Dropping the engine detaches the probes.
fn spawn_engine(
    mut engine: Engine,
    snapshot: SharedSnapshot,
    tick: Duration,
    stop: mpsc::Receiver<()>,
) -> anyhow::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
                let next = Arc::new(engine.tick());
                match snapshot.write() {
                    Ok(mut current) => *current = next,
                    Err(_) => break,
                }
            }
            drop(engine);
        })
        .context("starting the collection thread failed")
}

/// Returns freed heap pages to the kernel. Loading the probes parses the
/// kernel's BTF (in the agent and again in aya) into many small
/// allocations, which are free afterwards but stay in glibc's heap, and so
/// in the agent's RSS, until trimmed.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases memory
    // that is already free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc serve every allocation of 1 MiB or more with its own
/// mapping, which goes back to the kernel when freed. By default glibc
/// raises that threshold after the first such buffer is freed, so later
/// ones come from the heap and stay in the RSS. At a thousand cgroups the
/// `/metrics` bodies (about 6 MiB each) left some 8 MiB there.
fn return_large_buffers_when_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning, and setting the
    // threshold also turns off its dynamic adjustment.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
