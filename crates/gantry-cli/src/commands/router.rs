//! `gantry router`: the embedded weighted router, run as a service until
//! SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use gantry_ci::EnvVars;
use gantry_core::{ExitCode, Secret};
use gantry_deploy::router::{Router, RouterOptions};

use crate::cli::RouterArgs;
use crate::commands::Session;
use crate::commands::signals::terminated;
use crate::printer::Printer;

pub(crate) fn run(args: &RouterArgs, session: &Session<'_>, printer: &Printer) -> Result<ExitCode> {
    let token = session
        .environment
        .get(EnvVars::GANTRY_ROUTER_TOKEN)
        .filter(|token| !token.is_empty())
        .map(Secret::new);
    let sticky_header = args
        .sticky_header
        .as_deref()
        .map(|name| {
            http::HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("--sticky-header {name:?}: not an HTTP header name"))
        })
        .transpose()?;
    let redactor = session.redactor().clone();
    let options = RouterOptions {
        listen: args.listen,
        admin: args.admin,
        state_dir: args.state_dir.clone(),
        token,
        sticky_header,
        health_timeout: args.health_timeout,
        grace: args.grace,
        stop_backends_on_exit: args.stop_backends_on_exit,
        workers: args.workers,
        log: Arc::new(move |line: &str| {
            use std::io::Write as _;
            let line = redactor.redact(line);
            let _ = writeln!(std::io::stderr().lock(), "gantry router: {line}");
        }),
    };
    // The admin API, supervision and the lease watcher are light: one
    // thread; the data port has threads of its own (--workers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let router = Router::bind(options).await?;
        printer.info(&format!(
            "routing http://{} (admin http://{}, state in {})",
            router.listen_addr(),
            router.admin_addr()?,
            args.state_dir.display()
        ));
        router.run(terminated()).await?;
        printer.info("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::PASS)
}
