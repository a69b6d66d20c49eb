//! The `sluice` binary: parses flags and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice::cli::{self, ClientCommand};
use sluice::command::{
    Cli, Command, LogFormat, PredictTokenArgs, RegistryServeArgs, ServeArgs, ServeMode, TokensArgs,
    TokensCommand,
};
use sluice::embedded::{Embedded, EngineInspector};
use sluice_gateway::Server;
use sluice_gateway::config::{ServeConfig, Source};
use sluice_registry::Registry;
use sluice_registry_client::RegistryClient;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    harden_process();
    let cli = Cli::parse();
    let runtime = match init_logging(cli.log_format, &cli.log).and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("sluice-io")
            .build()
            .context("starting the async runtime")
    }) {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let client_command = match cli.command {
        Command::Serve(args) => Err(runtime.block_on(serve(*args))),
        Command::Registry(args) => Err(runtime.block_on(registry(args))),
        Command::Tokens { command, client } => match command {
            TokensCommand::Add(args) => Err(add_token(args)),
            TokensCommand::Live(command) => Ok((ClientCommand::Tokens(command), client)),
        },
        Command::PredictToken(args) => Err(add_predict_token(args)),
        Command::Context { command, client } => Ok((ClientCommand::Context(command), client)),
        Command::Gateways { client } => Ok((ClientCommand::Gateways, client)),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Models { command, client } => Ok((ClientCommand::Models(command), client)),
        Command::Versions { command, client } => Ok((ClientCommand::Versions(command), client)),
        Command::Stage { command, client } => Ok((ClientCommand::Stage(command), client)),
        Command::Alias { command, client } => Ok((ClientCommand::Alias(command), client)),
        Command::Traffic { command, client } => Ok((ClientCommand::Traffic(command), client)),
        Command::Rollout { command, client } => Ok((ClientCommand::Rollout(command), client)),
        Command::Profile { command, client } => Ok((ClientCommand::Profile(command), client)),
        Command::Drift { command, client } => Ok((ClientCommand::Drift(command), client)),
        Command::Contract { command, client } => Ok((ClientCommand::Contract(command), client)),
        Command::Performance { command, client } => Ok((ClientCommand::Performance(command), client)),
        Command::Suite { command, client } => Ok((ClientCommand::Suite(command), client)),
        Command::Quality { command, client } => Ok((ClientCommand::Quality(command), client)),
        Command::Triggers { command, client } => Ok((ClientCommand::Triggers(command), client)),
        Command::Events { args, client } => Ok((ClientCommand::Events(args), client)),
    };
    let result = match client_command {
        Ok((command, client)) => return runtime.block_on(cli::run(command, client)),
        Err(result) => result,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

fn ort_dylib_path() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
}

/// Before anything is opened: files this process creates are its owner's
/// alone whatever the umask it was given (SQLite's journal and the object
/// store's files included), and the soft limit on open descriptors is
/// raised to the hard one, as Go and nginx do, so that the connection
/// bounds derived from it leave room for everything else.
fn harden_process() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused (a hard limit the kernel caps lower): the soft one stays.
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (mode, cache_dir, settings) = args
        .into_parts(ort_dylib_path())
        .map_err(|message| anyhow::anyhow!(message))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    match mode {
        ServeMode::Repository(dir) => {
            let server = Server::start(
                ServeConfig {
                    source: Source::Repository(dir),
                    settings,
                },
                listener,
            )
            .await?;
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            server.shutdown().await?;
        }
        ServeMode::Remote { url, token_opt, tls } => {
            let client = RegistryClient::with_tls(&url, token_opt, &tls)?;
            let server = Server::start(
                ServeConfig {
                    source: Source::Registry { client, cache_dir },
                    settings,
                },
                listener,
            )
            .await?;
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            server.shutdown().await?;
        }
        ServeMode::Embedded {
            registry,
            admin_listen,
            demo,
        } => {
            let admin_listener = tokio::net::TcpListener::bind(admin_listen)
                .await
                .with_context(|| format!("binding the registry's address {admin_listen}"))?;
            let embedded =
                Embedded::start(*registry, settings, cache_dir, admin_listener, listener, demo).await?;
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            embedded.shutdown().await?;
        }
    }
    Ok(())
}

async fn registry(args: RegistryServeArgs) -> anyhow::Result<()> {
    let config = args
        .registry
        .into_config()
        .map_err(|message| anyhow::anyhow!(message))?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let engines = args
        .engines
        .into_options(cores, ort_dylib_path())
        .map_err(|message| anyhow::anyhow!(message))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // Drift, feedback and trigger metrics, for Prometheus to scrape as it does gateways.
    let metrics = sluice_gateway::metrics::handle();
    let inspector = Arc::new(EngineInspector::new(&engines));
    let registry =
        Registry::start_with_metrics(config, listener, inspector, move || metrics.render()).await?;
    shutdown_signal().await;
    tracing::info!("shutting down the registry");
    registry.shutdown().await?;
    Ok(())
}

fn add_predict_token(args: PredictTokenArgs) -> anyhow::Result<()> {
    let token = sluice_gateway::server::access::add_token(
        &args.predict_tokens_file,
        &args.name,
        &args.models,
        args.rate_per_s,
        args.burst,
    )
    .map_err(|message| anyhow::anyhow!(message))?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    Ok(())
}

fn add_token(args: TokensArgs) -> anyhow::Result<()> {
    let token = sluice_registry::auth::add_token(&args.tokens_file, &args.actor, args.role)
        .map_err(|message| anyhow::anyhow!(message))?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    Ok(())
}

/// Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("invalid log filter '{filter}'"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
