//! The store as the alerting service's [`alerting::AlertSink`].

/// Alert rows go to the store's `alerts` table, through its WAL.
#[derive(Debug, Clone)]
pub struct StoreAlerts(pub store::Store);

impl alerting::AlertSink for StoreAlerts {
    fn append(&self, rows: Vec<model::AlertRecord>) -> Result<(), String> {
        self.0
            .append_alerts(rows)
            .map_err(|error| error.to_string())
    }

    fn load(&self) -> Result<Vec<model::AlertRecord>, String> {
        self.0.alert_records().map_err(|error| error.to_string())
    }
}

/// Where alerting keeps its state (silences) under the data directory…
pub const STATE_DIR: &str = "alerting";
/// …and its notification outbox.
pub const OUTBOX_DIR: &str = "alerting/outbox";

/// Starts alerting over `store`: the service reads what the store accepts from now on. With
/// The store as the source of `query` rules' rows.
pub struct StoreQueries(pub store::Store);

impl alerting::QuerySource for StoreQueries {
    fn query<'a>(
        &'a self,
        sql: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = alerting::QueryRows> + Send + 'a>> {
        Box::pin(async move {
            self.0
                .query_json(sql)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// `notify` and receivers configured, pages go through the outbox in `DATA/alerting/outbox`
/// and its delivery loops run until the process ends.
pub fn start(
    config: &alerting::Config,
    store: &store::Store,
    clock: alerting::Clock,
    notify: bool,
) -> anyhow::Result<(alerting::Alerting, tokio::task::JoinHandle<()>)> {
    let outbox = if notify && !config.receivers.is_empty() {
        alerting::route::check_receivers(&config.receivers)?;
        let notifiers = config
            .receivers
            .iter()
            .map(|receiver| {
                let delivery = receiver.delivery()?;
                receiver
                    .build()
                    .map(|notifier| (receiver.name.clone(), notifier, delivery))
                    .map_err(|error| {
                        anyhow::anyhow!("[alerting] receiver {}: {error}", receiver.name)
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names: Vec<&str> = config
            .receivers
            .iter()
            .map(|receiver| receiver.name.as_str())
            .collect();
        let dir = store.dir().join(OUTBOX_DIR);
        let outbox = alerting::notify::outbox::Outbox::open(&dir, &names).map_err(|error| {
            anyhow::anyhow!(
                "cannot open the notification outbox {}: {error}",
                dir.display()
            )
        })?;
        let running = outbox.clone();
        tokio::spawn(async move {
            if let Err(error) = running
                .run_grouped(
                    notifiers,
                    alerting::notify::outbox::RetryPolicy::default(),
                    std::future::pending::<()>(),
                )
                .await
            {
                tracing::error!(%error, "the notification outbox stopped");
            }
        });
        Some(outbox)
    } else {
        None
    };
    // Silences and what the rules learnt: a replay of history (which pages nobody) learns
    // too, so that a server started after it knows where users logged in from.
    let state_dir = {
        let dir = store.dir().join(STATE_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|error| anyhow::anyhow!("cannot make {}: {error}", dir.display()))?;
        Some(dir)
    };
    let (service, task) = alerting::Alerting::start(
        config,
        std::sync::Arc::new(StoreAlerts(store.clone())),
        clock,
        outbox,
        state_dir.as_deref(),
    )?;
    let tap = service.tap();
    if !store.set_accepted_tap(store::AcceptedTap(std::sync::Arc::new(tap))) {
        anyhow::bail!("the store already feeds another alerting service");
    }
    Ok((service, task))
}
