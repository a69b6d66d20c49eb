//! The `sluice` binary: parses flags and calls the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sluice_gateway::config::{Cli, Command, LogFormat, ServeArgs};
use sluice_gateway::{Server, demo};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-io")
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // `--demo` writes its models to a directory of its own, removed on exit.
    let demo_dir_opt = match &args.model_repository {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
            demo::write_repository(&dir)
                .with_context(|| format!("writing the demo models to {}", dir.display()))?;
            tracing::info!(repository = %dir.display(), "serving the demo models");
            Some(dir)
        }
    };
    let repository = match (&args.model_repository, &demo_dir_opt) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => anyhow::bail!("give --model-repository DIR or --demo"),
    };
    let ort_dylib_path = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let config = args
        .into_config(repository, ort_dylib_path)
        .map_err(|message| anyhow::anyhow!(message))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let server = Server::start(config, listener).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await?;
    if let Some(dir) = demo_dir_opt {
        let _ = std::fs::remove_dir_all(dir);
    }
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
