//! An axum app on a loopback port, on a thread of its own, stopped on drop:
//! what every fake server of the tests runs on.

/// A running server.
#[derive(Debug)]
pub(crate) struct Served {
    /// `127.0.0.1:PORT`.
    pub(crate) address: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Serves `app` on `127.0.0.1` and an ephemeral port.
///
/// # Panics
/// When no loopback port can be bound: the test cannot run at all.
pub(crate) fn serve(app: axum::Router) -> Served {
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    let (shutdown, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            address_sender
                .send(listener.local_addr().expect("local address"))
                .expect("send address");
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_receiver.await;
                })
                .await
                .expect("serve");
        });
    });
    Served {
        address: address_receiver.recv().expect("server address"),
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
