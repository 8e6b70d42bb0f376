//! `tunnelwatch server`: the pipeline behind the HTTP API and console.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pipeline::Pipeline;

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: store::Store,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    /// Where SQL queries run: threads of their own, so that analysts' queries do not hold up
    /// the tasks that answer ingest and health checks.
    query_runtime: Option<tokio::runtime::Runtime>,
}

/// Threads of the query runtime.
const QUERY_THREADS: usize = 2;

/// What a server needs besides its listener.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    pub store: store::Config,
    pub collector: collector::Config,
    pub ingest_token: Option<String>,
    /// Serve HTTPS with this config (plain HTTP without).
    pub tls: Option<std::sync::Arc<dashboards::tls::ServerConfig>>,
}

impl RunningServer {
    /// Opens the store (replaying its WAL) and serves on `listener`.
    pub async fn start(
        settings: ServerSettings,
        listener: TcpListener,
    ) -> anyhow::Result<RunningServer> {
        let addr = listener
            .local_addr()
            .context("cannot read the listen address")?;
        let store_config = settings.store.clone();
        let store = tokio::task::spawn_blocking(move || store::Store::open(&store_config))
            .await
            .context("opening the store panicked")?
            .with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    settings.store.data_dir.display()
                )
            })?;
        let query_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUERY_THREADS)
            .thread_name("tw-query")
            .enable_all()
            .build()
            .context("cannot start the query threads")?;
        let store = store.with_query_runtime(query_runtime.handle().clone());
        let (pipeline, pipeline_task) =
            Pipeline::start(store.clone(), &settings.store, &settings.collector)?;
        let state = dashboards::AppState {
            store: store.clone(),
            ingest: std::sync::Arc::new(pipeline.clone()),
            ingest_token: settings.ingest_token,
            collector: Some(std::sync::Arc::new(pipeline)),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let tls = settings.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stop_rx.await;
            };
            match tls {
                Some(tls) => dashboards::tls::serve_tls(listener, tls, state, stopped).await,
                None => dashboards::serve(listener, state, stopped).await,
            }
            .context("the HTTP server failed")?;
            // The router (and with it the last pipeline handle) is gone: drain and flush.
            pipeline_task.await.context("the pipeline panicked")??;
            Ok(())
        });
        tracing::info!(%addr, scheme, data = %settings.store.data_dir.display(), "server listening");
        Ok(RunningServer {
            addr,
            store,
            stop: Some(stop_tx),
            task,
            query_runtime: Some(query_runtime),
        })
    }

    /// Stops accepting requests, finishes those in flight, flushes, and returns.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("the server task panicked")?
    }

    /// Waits until the server stops on its own (an error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("the server task panicked")?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // A runtime may not be dropped (and wait for its threads) inside async code.
        if let Some(runtime) = self.query_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `addr` with an error that says what to do when the port is taken.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (is another tunnelwatch or another program using it? choose one with --listen)"))
}
