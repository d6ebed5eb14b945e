//! aifactory-http: the HTTP shim web clients use to reach aifactoryd. It holds no state of its
//! own: every request goes to the daemon through the `aifactory-common` client.

mod api;
mod auth;
mod cli;
mod config;
mod daemon;
mod error;
mod hosts;
mod listener;
mod login;
mod page;
mod state;
mod token;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Cli;
use crate::config::Config;
use crate::state::AppState;

/// How long open requests and streams get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aifactory-http: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.manpage {
        use clap::CommandFactory;
        return clap_mangen::Man::new(Cli::command())
            .section("1")
            .manual("aifactory")
            .render(&mut std::io::stdout().lock())
            .context("cannot write the man page");
    }
    let config = Config::load(&cli)?;
    if cli.print_token {
        let token = token::load_or_create(&config.token_file)?;
        println!("{}", token.as_str());
        return Ok(());
    }
    if cli.print_url {
        let token = token::load_or_create(&config.token_file)?;
        let code = login::new_code(&token).context("cannot make a login code")?;
        println!("{}", login_url(config.listen, &code));
        return Ok(());
    }
    aifactory_common::logging::init(cli.log, &config.log_level)?;
    let token = token::load_or_create(&config.token_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aifactory-http")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, token))
}

/// The page's login URL on this shim's address; an unspecified address is reached as loopback.
fn login_url(listen: std::net::SocketAddr, code: &str) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/login#code={code}")
}

async fn serve(config: Config, token: token::Token) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another with --listen ADDR:PORT, or stop what uses it",
                config.listen
            )
        })?;
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    if !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "listening on a non-loopback address (--allow-remote): anyone who reaches it and has the token controls the agents; put TLS in front"
        );
    }
    let shutdown = CancellationToken::new();
    let consoles = TaskTracker::new();
    let hosts = hosts::Hosts::new(&config.hosts, &shutdown);
    let state = AppState {
        hosts,
        token,
        token_file: config.token_file.clone(),
        spent_codes: login::SpentCodes::default(),
        allowed_origins: Arc::new(config.allowed_origins.clone()),
        listen,
        shutdown: shutdown.clone(),
        consoles: consoles.clone(),
        doctor_turn: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let app = api::router(state);
    tracing::info!(
        hosts = %config
            .hosts
            .iter()
            .map(|h| format!("{}={}", h.name, h.url))
            .collect::<Vec<_>>()
            .join(" "),
        token_file = %config.token_file.display(),
        config_file = %config.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into()),
        origins = ?config.allowed_origins,
        "listening on http://{listen}"
    );
    let stop = shutdown.clone();
    let server = axum::serve(listener::JsonErrorsListener(listener), app).with_graceful_shutdown(
        async move {
            stop.cancelled().await;
        },
    );
    let server = tokio::spawn(async move { server.await });
    wait_for_signal().await?;
    tracing::info!("stopping: consoles close with 1001, event streams end");
    shutdown.cancel();
    consoles.close();
    let drained = async {
        let served = server.await;
        consoles.wait().await;
        served
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, drained).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e).context("the HTTP server failed"),
        Ok(Err(e)) => return Err(e).context("the HTTP server task failed"),
        Err(_) => tracing::warn!(
            "open connections did not finish within {} s; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
