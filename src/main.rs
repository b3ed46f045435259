//! The `kiln` binary: parses the configuration, sets up logging, binds and serves; or runs one
//! of the client subcommands against a server.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// kiln — a model-training service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of `serve`, also accepted without the subcommand.
    #[command(flatten)]
    serve: kiln::Config,
}

/// The log filter without `KILN_LOG`. wgpu logs an error for every OpenGL (EGL) driver it fails
/// to load while it looks for GPUs; OpenGL is only its fallback after Vulkan, so that is noise.
const DEFAULT_LOG: &str = "info,wgpu_hal::gles=off";

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve(kiln::Config),
    /// Print the OpenAPI document.
    Openapi,
    /// Measure training throughput of a model on each backend.
    Bench(kiln::bench::BenchArgs),
    /// Train LeNet-BN from weights and batches that bench/parity.py replays in PyTorch.
    Parity(kiln::parity::ParityArgs),
    /// Exit 0 when the server at --bind (KILN_BIND) answers GET /readyz with 200, else 1.
    Healthcheck(kiln::healthcheck::HealthcheckArgs),
    /// Make a new API key: prints the key, then the line that adds it to an --api-keys-file.
    NewApiKey(NewApiKey),
    #[command(flatten)]
    Client(kiln::client::commands::ClientCommand),
}

#[derive(clap::Args)]
struct NewApiKey {
    /// What the key may do: `read` (GET routes and generation) or `write` (everything).
    #[arg(long, default_value = "write", value_parser = ["read", "write"])]
    scope: String,
    /// A label for the key file, e.g. who holds the key.
    #[arg(long, default_value = "")]
    label: String,
}

/// mimalloc rather than glibc's malloc: training allocates and frees buffers of megabytes every
/// step, which glibc returns to the system and faults in again (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (15 in the C headers of libmimalloc-sys 0.1.49; the Rust
/// bindings name no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory with mimalloc for 10 s before it goes back to the system. Its default
/// (1 s, mimalloc v3) is shorter than a training step of the larger models, so part of each
/// step's buffers went back and were faulted in again at the next (ResNet-18 at batch 32: 60,835
/// page faults in eight steps, then 10,326, and 7% less CPU time; docs/benchmarks.md). Memory
/// left unused for longer, as after a job, is still returned.
fn keep_freed_memory_between_steps() {
    // SAFETY: reads and writes an entry of mimalloc's option table, as its environment variables
    // do. Reading the default first (1000 ms) checks that the index names that option; a value
    // set through MIMALLOC_PURGE_DELAY is left alone.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == 1000
            && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000);
        }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory_between_steps();
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet. kiln names every device it trains on; Burn's
        // default device (used internally, e.g. when optimizer state is loaded) stays the CPU.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Serve(_))) {
        end_quietly_on_a_closed_pipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        // Colour codes only on a terminal: not in `docker logs` or a log file.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(config)) => serve(config),
        Some(Command::Openapi) => {
            print!("{}", kiln::http::openapi::pretty());
            Ok(())
        }
        Some(Command::Bench(args)) => kiln::bench::run(&args),
        Some(Command::Parity(args)) => kiln::parity::run(&args),
        Some(Command::Healthcheck(args)) => kiln::healthcheck::run(&args),
        Some(Command::NewApiKey(args)) => {
            let scope = if args.scope == "read" { kiln::keys::Scope::Read } else { kiln::keys::Scope::Write };
            let token = kiln::keys::generate_token();
            println!("{token}");
            println!("{}", kiln::keys::key_file_line(&token, scope, &args.label));
            Ok(())
        }
        Some(Command::Client(command)) => match kiln::client::commands::run(command) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A command whose reader goes away (`kiln jobs | head -1`) ends there, quietly, as every Unix
/// tool does: Rust ignores SIGPIPE, so the next write would fail and `println!` panic. Only for
/// the commands that print; the server keeps ignoring it, so that a client gone makes a socket
/// write fail instead of ending the process.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called once at start, before any other thread, to restore the default action.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn serve(config: kiln::Config) -> Result<(), String> {
    // Before the runtime starts any thread: it sets environment variables.
    kiln::backend::prepare_caches(&config);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener =
            TcpListener::bind(config.bind).await.map_err(|e| format!("binding {}: {e}", config.bind))?;
        kiln::serve(listener, config, shutdown_signal()).await.map_err(|e| e.to_string())
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
