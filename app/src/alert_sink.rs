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

/// Starts alerting over `store`: the service reads what the store accepts from now on.
pub fn start(
    config: &alerting::Config,
    store: &store::Store,
    clock: alerting::Clock,
) -> anyhow::Result<(alerting::Alerting, tokio::task::JoinHandle<()>)> {
    let (service, task) = alerting::Alerting::start(
        config,
        std::sync::Arc::new(StoreAlerts(store.clone())),
        clock,
    )?;
    let tap = service.tap();
    if !store.set_accepted_tap(store::AcceptedTap(std::sync::Arc::new(tap))) {
        anyhow::bail!("the store already feeds another alerting service");
    }
    Ok((service, task))
}
