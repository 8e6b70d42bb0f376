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
    /// Accounts, tokens and sessions.
    pub access: dashboards::access::Access,
    /// The alerting service (its rules reload with [`alerting::Alerting::watch_rules`]).
    pub alerting: alerting::Alerting,
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
    /// `[dashboards] tls_client_ca_file` is set: clients may present certificates.
    pub client_certificates: bool,
    /// Anonymous access, second factors, session timeouts.
    pub access: dashboards::access::Settings,
    /// `[dashboards] allow_unauthenticated_ingest`.
    pub allow_unauthenticated_ingest: bool,
    /// `[alerting]`.
    pub alerting: alerting::Config,
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
        // Before the query runtime: a runtime may not be dropped on an error path in here.
        let access = {
            let store = store.clone();
            let data_dir = settings.store.data_dir.clone();
            let access_settings = settings.access.clone();
            tokio::task::spawn_blocking(move || {
                dashboards::access::Access::open(&data_dir, access_settings, store)
            })
            .await
            .context("opening the accounts panicked")??
        };
        if !settings.client_certificates {
            for token in access.tokens() {
                if let (
                    None,
                    dashboards::access::Grant::Gateway {
                        gateway,
                        client_subject: Some(subject),
                    },
                ) = (token.revoked, &token.grant)
                {
                    tracing::warn!(
                        token = token.name,
                        gateway,
                        subject,
                        "this gateway token is bound to a client certificate, but no tls_client_ca_file is set: its gateway's events will be refused"
                    );
                }
            }
        }
        // Before the pipeline: every event the store accepts from the first one on is seen.
        // (The tap is the store's, shared by the clone that gets the query runtime.)
        let (alerting, _alerting_task) =
            crate::alert_sink::start(&settings.alerting, &store, alerting::Clock::Wall, true)
                .context("cannot start alerting")?;
        let control = crate::control::listen(
            &settings.store.data_dir,
            access.clone(),
            Some(alerting.clone()),
        )
        .context("cannot open the control socket the `user`, `token`, `alerts` and `silence` commands use")?;
        let query_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUERY_THREADS)
            .thread_name("tw-query")
            .enable_all()
            .build()
            .context("cannot start the query threads")?;
        let store = store.with_query_runtime(query_runtime.handle().clone());
        // `query` rules read the store as analysts do (read-only, its limits).
        let _queries = alerting.run_queries(std::sync::Arc::new(crate::alert_sink::StoreQueries(
            store.clone(),
        )));
        let (pipeline, pipeline_task) =
            Pipeline::start(store.clone(), &settings.store, &settings.collector)?;
        let state = dashboards::AppState {
            store: store.clone(),
            ingest: std::sync::Arc::new(pipeline.clone()),
            ingest_token: settings.ingest_token,
            access: access.clone(),
            web: dashboards::WebSettings {
                secure_cookies: settings.tls.is_some(),
                allow_unauthenticated_ingest: settings.allow_unauthenticated_ingest,
            },
            collector: Some(std::sync::Arc::new(pipeline)),
            alerting: Some(alerting.clone()),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let tls = settings.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let flushing = alerting.clone();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stop_rx.await;
            };
            match tls {
                Some(tls) => dashboards::tls::serve_tls(listener, tls, state, stopped).await,
                None => dashboards::serve(listener, state, stopped).await,
            }
            .context("the HTTP server failed")?;
            control.abort();
            // The router (and with it the last pipeline handle) is gone: drain and flush.
            pipeline_task.await.context("the pipeline panicked")??;
            // What the last events made the engine decide, stored (the WAL keeps it).
            flushing.flush().await;
            Ok(())
        });
        tracing::info!(%addr, scheme, data = %settings.store.data_dir.display(), "server listening");
        if let Some(setup_token) = access.setup_token() {
            tracing::warn!(
                "no account exists yet: open {scheme}://{addr}/login and create the first admin with the one-time setup token {setup_token} (or run `tunnelwatch user add NAME --role admin --data {}`)",
                settings.store.data_dir.display()
            );
        }
        Ok(RunningServer {
            addr,
            store,
            access,
            alerting,
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
