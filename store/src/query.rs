//! SQL over the store with DataFusion.
//!
//! Every query runs in a fresh `SessionContext` over a consistent snapshot: the Parquet
//! segments that existed when the query started (a pinned file list, so a concurrent flush
//! cannot make rows appear twice) plus the rows still in memory. Each table the user sees is a
//! view over both; `sessions` keeps only the newest snapshot of each session, and `flows` and
//! `api_requests` show the newest session join correction of each row, if the snapshot holds
//! any (see [`crate::session_joins`]). User SQL may only read: DDL, DML and `SET`-style
//! statements are refused, so `COPY … TO` or `CREATE EXTERNAL TABLE` cannot touch the file
//! system.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use model::{Event, Session};

use crate::prune::TimePrunedParquet;
use crate::schema::{self, Table};
use crate::segment::Segment;
use crate::session_joins;
use crate::storage::Storage;
use crate::{Error, Result};

/// How `tunnelwatch sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table; control characters in values are escaped so that a hostile
    /// log line cannot drive the terminal.
    #[default]
    Table,
    Csv,
    /// One JSON object per line.
    Json,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<OutputFormat, String> {
        match name {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!(
                "unknown output format `{other}` (known: table, csv, json)"
            )),
        }
    }
}

/// The result of one query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Renders the rows in `format`.
    pub fn render(&self, format: OutputFormat) -> Result<String> {
        match format {
            OutputFormat::Table => {
                let sanitized: Vec<RecordBatch> = self
                    .batches
                    .iter()
                    .map(escape_controls)
                    .collect::<Result<_>>()?;
                let batches = if sanitized.is_empty() {
                    vec![RecordBatch::new_empty(self.schema.clone())]
                } else {
                    sanitized
                };
                let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .map_err(|source| Error::Arrow {
                        context: "format the result",
                        source,
                    })?;
                Ok(format!("{table}\n"))
            }
            OutputFormat::Csv => {
                let mut out = Vec::new();
                {
                    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    if self.batches.is_empty() {
                        writer
                            .write(&RecordBatch::new_empty(self.schema.clone()))
                            .map_err(|source| Error::Arrow {
                                context: "write csv",
                                source,
                            })?;
                    }
                    for batch in &self.batches {
                        writer.write(batch).map_err(|source| Error::Arrow {
                            context: "write csv",
                            source,
                        })?;
                    }
                }
                String::from_utf8(out)
                    .map_err(|error| Error::Internal(format!("csv output is not UTF-8: {error}")))
            }
            OutputFormat::Json => {
                let mut out = Vec::new();
                {
                    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                    let batches: Vec<&RecordBatch> = self.batches.iter().collect();
                    writer
                        .write_batches(&batches)
                        .map_err(|source| Error::Arrow {
                            context: "write json",
                            source,
                        })?;
                    writer.finish().map_err(|source| Error::Arrow {
                        context: "write json",
                        source,
                    })?;
                }
                String::from_utf8(out)
                    .map_err(|error| Error::Internal(format!("json output is not UTF-8: {error}")))
            }
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        })
    }
}

/// Rows as JSON objects (for the HTTP API).
pub(crate) fn to_json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut out = Vec::new();
    {
        let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut out);
        let batches: Vec<&RecordBatch> = batches.iter().collect();
        writer
            .write_batches(&batches)
            .map_err(|source| Error::Arrow {
                context: "write json",
                source,
            })?;
        writer.finish().map_err(|source| Error::Arrow {
            context: "write json",
            source,
        })?;
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out)
        .map_err(|error| Error::Internal(format!("arrow wrote unreadable json: {error}")))
}

/// What a query sees: pinned segment lists and in-memory rows, per table.
pub(crate) struct Snapshot {
    storage: Arc<Storage>,
    segments: BTreeMap<Table, Vec<Segment>>,
    memory: BTreeMap<Table, RecordBatch>,
    /// The tables with session join corrections (in segments or memory).
    corrected: BTreeSet<Table>,
}

impl Snapshot {
    /// Converts the in-memory rows to Arrow (outside the store's lock); `corrected` names the
    /// tables the `session_joins` segments among `segments` correct.
    pub(crate) fn take(
        storage: Arc<Storage>,
        segments: BTreeMap<Table, Vec<Segment>>,
        rows: &crate::Buffer,
        mut corrected: BTreeSet<Table>,
        in_parquet: &dyn Fn(Table, &Event) -> bool,
    ) -> Result<Snapshot> {
        let all_events: Vec<&Event> = rows.all_events().collect();
        let all_sessions: Vec<&Session> = rows.all_sessions().collect();
        let all_audit: Vec<&model::AuditEntry> = rows.all_audit().collect();
        let mut memory = BTreeMap::new();
        for table in Table::ALL {
            let batch = if table == Table::Sessions {
                schema::sessions_batch(&all_sessions)?
            } else if table == Table::AuditLog {
                schema::audit_batch(&all_audit)?
            } else if table == Table::Alerts {
                crate::alerts::alerts_batch(&rows.all_alerts().collect::<Vec<_>>())?
            } else if table == Table::SessionJoins {
                let batch = schema::session_joins_batch(&rows.all_joins().collect::<Vec<_>>())?;
                corrected.extend(session_joins::tables_in_batch(&batch));
                batch
            } else {
                let rows: Vec<&Event> = all_events
                    .iter()
                    .copied()
                    .filter(|event| table.takes(event) && !in_parquet(table, event))
                    .collect();
                table.events_batch(&rows)?
            };
            memory.insert(table, batch);
        }
        Ok(Snapshot {
            storage,
            segments,
            memory,
            corrected,
        })
    }
}

/// The rows of a running query, batch by batch, as they are computed. The query's time limit
/// runs from its start to its last batch; dropping the stream cancels the query.
pub struct QueryStream {
    schema: SchemaRef,
    batches: Batches,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// The query's place among those allowed to run at once, given back when it is dropped.
    _admission: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Where a query's batches come from: computed as they are polled, or by a task on the
/// query runtime that hands them over a channel (dropped: the task stops).
enum Batches {
    Here(datafusion::physical_plan::SendableRecordBatchStream),
    Elsewhere(tokio::sync::mpsc::Receiver<Result<RecordBatch>>),
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch, `None` at the end, an error if the query failed or ran out of time.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        use futures::StreamExt;
        let next = async {
            match &mut self.batches {
                Batches::Here(stream) => stream.next().await.map(|batch| {
                    batch.map_err(|error| Error::Execution(clean(&error.to_string())))
                }),
                Batches::Elsewhere(receiver) => receiver.recv().await,
            }
        };
        match tokio::time::timeout_at(self.deadline, next).await {
            Ok(batch) => batch,
            Err(_) => Some(Err(Error::Timeout(self.timeout.as_secs()))),
        }
    }

    /// Runs the rest of this query on `runtime`, handing its batches over a channel: the
    /// caller's runtime only waits for them.
    pub(crate) fn run_on(mut self, runtime: &tokio::runtime::Handle) -> QueryStream {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let Batches::Here(stream) =
            std::mem::replace(&mut self.batches, Batches::Elsewhere(receiver))
        else {
            return self;
        };
        let mut producer = QueryStream {
            schema: self.schema.clone(),
            batches: Batches::Here(stream),
            deadline: self.deadline,
            timeout: self.timeout,
            _admission: None,
        };
        runtime.spawn(async move {
            while let Some(batch) = producer.next_batch().await {
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        self
    }

    pub(crate) fn admitted(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> QueryStream {
        self._admission = Some(permit);
        self
    }

    /// Every remaining batch.
    pub async fn collect(mut self) -> Result<QueryResult> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next_batch().await {
            batches.push(batch?);
        }
        Ok(QueryResult {
            schema: self.schema,
            batches,
        })
    }
}

/// Renders one batch of a streamed result: JSON lines, or CSV rows (`header` for the first).
pub fn render_batch(batch: &RecordBatch, format: OutputFormat, header: bool) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(header)
                .build(&mut out);
            writer.write(batch).map_err(|source| Error::Arrow {
                context: "write csv",
                source,
            })?;
        }
        OutputFormat::Json | OutputFormat::Table => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write(batch).map_err(|source| Error::Arrow {
                context: "write json",
                source,
            })?;
            writer.finish().map_err(|source| Error::Arrow {
                context: "write json",
                source,
            })?;
        }
    }
    Ok(out)
}

pub(crate) async fn stream(
    snapshot: Snapshot,
    sql: &str,
    timeout: Duration,
    memory_bytes: usize,
) -> Result<QueryStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_bytes, 1.0)
        .build_arc()
        .map_err(|error| Error::Internal(format!("cannot set up the query runtime: {error}")))?;
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    snapshot.storage.register(&ctx);
    // The sources of every table first: a view may read another table's (`flows` those of
    // `session_joins`).
    for table in Table::ALL {
        register_sources(&ctx, table, &snapshot)?;
    }
    for table in Table::ALL {
        create_view(&ctx, table, &snapshot).await?;
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let work = async {
        let frame = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|error| Error::Query(clean(&error.to_string())))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .execute_stream()
            .await
            .map_err(|error| Error::Execution(clean(&error.to_string())))?;
        Ok(QueryStream {
            schema,
            batches: Batches::Here(batches),
            deadline,
            timeout,
            _admission: None,
        })
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(timeout.as_secs())),
    }
}

fn parquet_name(table: Table) -> String {
    format!("_tw_{}_parquet", table.name())
}

fn memory_name(table: Table) -> String {
    format!("_tw_{}_memory", table.name())
}

/// `SELECT` of a table's rows: its Parquet segments and its rows in memory.
fn union_of(table: Table) -> String {
    let columns = table.column_names().join(", ");
    format!(
        "SELECT {columns} FROM {} UNION ALL SELECT {columns} FROM {}",
        parquet_name(table),
        memory_name(table)
    )
}

fn internal(table: Table) -> impl Fn(datafusion::error::DataFusionError) -> Error {
    move |error| Error::Internal(format!("cannot register table {}: {error}", table.name()))
}

/// Registers the Parquet segments and the in-memory rows of `table` (under internal names).
fn register_sources(ctx: &SessionContext, table: Table, snapshot: &Snapshot) -> Result<()> {
    let schema = table.schema();
    let parquet_name = parquet_name(table);
    let memory_name = memory_name(table);
    let internal = internal(table);
    let segments = snapshot.segments.get(&table).cloned().unwrap_or_default();
    let parquet = TimePrunedParquet::new(schema.clone(), snapshot.storage.clone(), segments);
    ctx.register_table(parquet_name.as_str(), Arc::new(parquet))
        .map_err(&internal)?;
    let memory_batch = snapshot
        .memory
        .get(&table)
        .cloned()
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    let memory = MemTable::try_new(schema.clone(), vec![vec![memory_batch]]).map_err(&internal)?;
    ctx.register_table(memory_name.as_str(), Arc::new(memory))
        .map_err(&internal)?;
    Ok(())
}

/// Creates the view users query as `table`.
async fn create_view(ctx: &SessionContext, table: Table, snapshot: &Snapshot) -> Result<()> {
    let name = table.name();
    let columns = table.column_names().join(", ");
    let union = union_of(table);
    let definition = if snapshot.corrected.contains(&table) {
        session_joins::corrected_view(table, &union, &union_of(Table::SessionJoins))
    } else if table == Table::Sessions {
        format!(
            "CREATE VIEW {name} AS SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY session_id ORDER BY vpn_session_version DESC) AS _tw_rank FROM ({union})) WHERE _tw_rank = 1"
        )
    } else {
        format!("CREATE VIEW {name} AS {union}")
    };
    ctx.sql(&definition).await.map_err(internal(table))?;
    Ok(())
}

/// DataFusion prefixes errors with its own plumbing ("Error during planning: …"); users want
/// the sentence that names the problem.
fn clean(message: &str) -> String {
    message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .to_owned()
}

/// Escapes control characters (ESC, CR, LF, BEL, …) in every string column.
fn escape_controls(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut changed = false;
    for column in batch.columns() {
        if column.data_type() == &DataType::Utf8
            && let Some(strings) = column.as_any().downcast_ref::<StringArray>()
            && strings
                .iter()
                .flatten()
                .any(|value| value.chars().any(char::is_control))
        {
            let escaped: StringArray = strings.iter().map(|value| value.map(escape_str)).collect();
            columns.push(Arc::new(escaped));
            changed = true;
        } else {
            columns.push(column.clone());
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(|source| Error::Arrow {
        context: "escape control characters",
        source,
    })
}

fn escape_str(value: &str) -> String {
    value
        .chars()
        .map(|ch| {
            if ch.is_control() {
                ch.escape_default().to_string()
            } else {
                ch.to_string()
            }
        })
        .collect()
}
