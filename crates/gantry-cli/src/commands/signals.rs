//! Signals a long-running command stops on.

/// The first SIGTERM or SIGINT (a service manager's stop, a cancelled CI job,
/// Ctrl-C); never, if the handlers cannot be installed.
pub(crate) async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
}
