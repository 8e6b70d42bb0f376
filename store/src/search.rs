//! Full-text search over every event of the `events` table (flows and API requests have
//! their own tables and are not in the index), with tantivy.
//!
//! The index (`DATA/index/`) holds one document per row of the `events` table: the raw log
//! line and the key fields an analyst searches by. It is derived data: each document names the
//! Parquet segment its row lives in (`segment`), a flush indexes the segments it wrote after
//! they are in place, and opening the store indexes any segment the index lacks (a crash
//! between the two) or, if the index is unreadable, moves it to `DATA/quarantine/` and
//! rebuilds it from Parquet. Re-indexing a segment first deletes its documents, so it can
//! happen any number of times. Rows are searchable once flushed (every `flush_interval_secs`).
//!
//! The query language is tantivy's: bare words search the line, the user, identities and the
//! reason; `field:value` searches one field; `"a phrase"`; `AND`, `OR`, `NOT`, `+must`,
//! `-must_not`, parentheses; ranges `ip:[10.99.0.0 TO 10.99.0.255]`,
//! `timestamp:[2026-11-25T00:00:00Z TO 2026-11-26T00:00:00Z}`. Fields: see [`FIELDS`].

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use datafusion::arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery,
};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};
use tantivy::{
    DateTime, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::{Error, Result};

/// Memory the index writer may buffer before it writes an index segment.
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// The most hits one search returns.
pub const MAX_LIMIT: usize = 10_000;
/// Case-insensitive exact match: the whole value is one token.
const KEYWORD: &str = "keyword";

/// The searchable fields and what each holds, for help texts and errors.
pub const FIELDS: &[(&str, &str)] = &[
    (
        "raw",
        "the original log line or record (words; the default field)",
    ),
    (
        "user",
        "user.name: IKE, EAP or XAuth identity (whole value, any case; default)",
    ),
    ("identity", "IKE and EAP identities (words; default)"),
    (
        "reason",
        "event.reason: why it failed or ended (words; default)",
    ),
    (
        "ip",
        "source, destination and virtual IPs (exact, or a range [a TO b])",
    ),
    ("session", "session_id (exact)"),
    ("id", "event_id (exact)"),
    (
        "dataset",
        "event.dataset, e.g. strongswan.charon (exact, any case)",
    ),
    (
        "action",
        "event.action, e.g. logged-in, session-stop (exact, any case)",
    ),
    (
        "outcome",
        "event.outcome: success or failure (exact, any case)",
    ),
    (
        "failure",
        "vpn.auth_failure, e.g. psk_mismatch (exact, any case)",
    ),
    ("host", "observer.hostname: the gateway (exact, any case)"),
    ("connection", "vpn.connection (exact, any case)"),
    ("timestamp", "when (RFC 3339; ranges [a TO b])"),
];

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    timestamp: Field,
    segment: Field,
    raw: Field,
    user: Field,
    identity: Field,
    reason: Field,
    ip: Field,
    session: Field,
    dataset: Field,
    action: Field,
    outcome: Field,
    failure: Field,
    host: Field,
    connection: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD)
            .set_index_option(IndexRecordOption::Basic),
    );
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        timestamp: builder.add_date_field(
            "timestamp",
            DateOptions::from(INDEXED)
                .set_stored()
                .set_fast()
                .set_precision(DateTimePrecision::Microseconds),
        ),
        segment: builder.add_text_field("segment", STRING),
        raw: builder.add_text_field("raw", words.clone().set_stored()),
        user: builder.add_text_field("user", keyword.clone().set_stored()),
        identity: builder.add_text_field("identity", words.clone()),
        reason: builder.add_text_field("reason", words.set_stored()),
        ip: builder.add_ip_addr_field("ip", INDEXED | STORED),
        session: builder.add_text_field("session", STRING | STORED),
        dataset: builder.add_text_field("dataset", keyword.clone().set_stored()),
        action: builder.add_text_field("action", keyword.clone().set_stored()),
        outcome: builder.add_text_field("outcome", keyword.clone().set_stored()),
        failure: builder.add_text_field("failure", keyword.clone()),
        host: builder.add_text_field("host", keyword.clone().set_stored()),
        connection: builder.add_text_field("connection", keyword),
    };
    (builder.build(), fields)
}

/// One search hit: an event, with what links it to its session.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    pub event_id: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub session_id: Option<String>,
    pub dataset: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub user_name: Option<String>,
    pub host: Option<String>,
    pub ips: Vec<String>,
    pub reason: Option<String>,
    pub original: Option<String>,
}

/// What [`crate::Store::search`] found: the newest `hits` first, and how many matched in all.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SearchResult {
    pub total: usize,
    pub hits: Vec<Hit>,
}

impl SearchResult {
    /// The hits as `tunnelwatch sql` prints rows (control characters escaped in tables).
    pub fn render(&self, format: crate::OutputFormat) -> Result<String> {
        use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema as ArrowSchema};
        let column = |name: &str, values: Vec<Option<String>>| {
            (
                ArrowField::new(name, DataType::Utf8, true),
                std::sync::Arc::new(StringArray::from(values))
                    as datafusion::arrow::array::ArrayRef,
            )
        };
        let hits = &self.hits;
        let pick = |get: fn(&Hit) -> Option<String>| hits.iter().map(get).collect::<Vec<_>>();
        let columns = vec![
            column("timestamp", pick(|hit| Some(hit.timestamp.clone()))),
            column("event_id", pick(|hit| Some(hit.event_id.clone()))),
            column("event_dataset", pick(|hit| hit.dataset.clone())),
            column("event_action", pick(|hit| hit.action.clone())),
            column("event_outcome", pick(|hit| hit.outcome.clone())),
            column("user_name", pick(|hit| hit.user_name.clone())),
            column(
                "ips",
                pick(|hit| Some(hit.ips.join(",")).filter(|ips| !ips.is_empty())),
            ),
            column("session_id", pick(|hit| hit.session_id.clone())),
            column("observer_hostname", pick(|hit| hit.host.clone())),
            column("event_reason", pick(|hit| hit.reason.clone())),
            column("event_original", pick(|hit| hit.original.clone())),
        ];
        let (fields, arrays): (Vec<_>, Vec<_>) = columns.into_iter().unzip();
        let schema = std::sync::Arc::new(ArrowSchema::new(fields));
        let batch =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|source| Error::Arrow {
                context: "build the search result",
                source,
            })?;
        crate::QueryResult {
            schema,
            batches: vec![batch],
        }
        .render(format)
    }
}

/// A time window and a limit besides the query text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchOptions {
    /// Only events at or after this time.
    pub from: Option<jiff::Timestamp>,
    /// Only events before this time.
    pub to: Option<jiff::Timestamp>,
    /// At most this many hits (default 100, at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

pub(crate) struct SearchIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// None when the store is read-only.
    writer: Option<Mutex<IndexWriter>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("writable", &self.writer.is_some())
            .finish()
    }
}

fn index_error(context: &'static str) -> impl Fn(tantivy::TantivyError) -> Error {
    move |error| Error::Index {
        context,
        detail: error.to_string(),
    }
}

impl SearchIndex {
    /// Opens (or, when `writable`, creates) the index in `dir`. A reader of a store without
    /// an index gets an empty one in memory. An index whose files cannot be read, or whose
    /// schema is not this version's, is a corrupt file ([`durable::FileError::Corrupt`]).
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<SearchIndex> {
        let (schema, fields) = schema();
        let has_meta = std::fs::metadata(dir.join("meta.json")).is_ok();
        let corrupt = |detail: String| Error::corrupt("search index", dir.to_owned(), detail);
        let index = if has_meta {
            let index = Index::open_in_dir(dir).map_err(|error| corrupt(error.to_string()))?;
            if index.schema() != schema {
                return Err(corrupt(
                    "its fields are not this version's (rebuild it with `tunnelwatch store rebuild-index`)"
                        .to_owned(),
                ));
            }
            index
        } else if writable {
            std::fs::create_dir_all(dir)
                .map_err(|error| Error::io("create directory", dir, error))?;
            Index::create_in_dir(dir, schema).map_err(index_error("create the search index"))?
        } else {
            Index::create_in_ram(schema)
        };
        index.tokenizers().register(
            KEYWORD,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|error| corrupt(error.to_string()))?;
        let writer = if writable {
            Some(Mutex::new(
                index
                    .writer(WRITER_HEAP_BYTES)
                    .map_err(index_error("open the search index for writing"))?,
            ))
        } else {
            None
        };
        Ok(SearchIndex {
            index,
            fields,
            reader,
            writer,
        })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>> {
        self.writer
            .as_ref()
            .ok_or_else(|| Error::Index {
                context: "write the search index",
                detail: "the store is read-only".to_owned(),
            })?
            .lock()
            .map_err(|_| Error::Internal("search index lock poisoned".to_owned()))
    }

    /// Whether the index has documents of `segment` (its path under `DATA/tables`).
    pub(crate) fn has_segment(&self, segment: &str) -> Result<bool> {
        let term = Term::from_field_text(self.fields.segment, segment);
        let searcher = self.reader.searcher();
        let n_docs = searcher
            .doc_freq(&term)
            .map_err(index_error("look up a segment in the search index"))?;
        Ok(n_docs > 0)
    }

    /// Documents in the index.
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Replaces the documents of `segment` with the rows of `batches` (`events` table rows).
    /// Takes effect at the next [`SearchIndex::commit`].
    pub(crate) fn index_segment(&self, segment: &str, batches: &[RecordBatch]) -> Result<usize> {
        let writer = self.writer()?;
        writer.delete_term(Term::from_field_text(self.fields.segment, segment));
        let mut n_docs = 0;
        for batch in batches {
            n_docs += self.add_rows(&writer, segment, batch)?;
        }
        Ok(n_docs)
    }

    /// Deletes every document (at the next commit): the start of a rebuild.
    pub(crate) fn clear(&self) -> Result<()> {
        self.writer()?
            .delete_all_documents()
            .map_err(index_error("clear the search index"))?;
        Ok(())
    }

    fn add_rows(&self, writer: &IndexWriter, segment: &str, batch: &RecordBatch) -> Result<usize> {
        let columns = Columns::of(batch);
        let fields = &self.fields;
        for row in 0..batch.num_rows() {
            let mut doc = TantivyDocument::default();
            doc.add_text(fields.segment, segment);
            if let Some(value) = columns.text("event_id", row) {
                doc.add_text(fields.id, value);
            }
            if let Some(micros) = columns.micros(row) {
                doc.add_date(fields.timestamp, tantivy_date(micros));
            }
            let texts = [
                (fields.raw, "event_original"),
                (fields.user, "user_name"),
                (fields.identity, "vpn_ike_id"),
                (fields.identity, "vpn_eap_id"),
                (fields.reason, "event_reason"),
                (fields.reason, "error_message"),
                (fields.session, "session_id"),
                (fields.dataset, "event_dataset"),
                (fields.action, "event_action"),
                (fields.outcome, "event_outcome"),
                (fields.failure, "vpn_auth_failure"),
                (fields.host, "observer_hostname"),
                (fields.connection, "vpn_connection"),
            ];
            for (field, column) in texts {
                if let Some(value) = columns.text(column, row) {
                    doc.add_text(field, value);
                }
            }
            for column in ["source_ip", "destination_ip", "vpn_virtual_ip"] {
                if let Some(ip) = columns
                    .text(column, row)
                    .and_then(|value| value.parse::<IpAddr>().ok())
                {
                    doc.add_ip_addr(fields.ip, to_v6(ip));
                }
            }
            writer
                .add_document(doc)
                .map_err(index_error("add a document to the search index"))?;
        }
        Ok(batch.num_rows())
    }

    /// Deletes the documents of `segment` (at the next commit).
    pub(crate) fn forget_segment(&self, segment: &str) -> Result<()> {
        self.writer()?
            .delete_term(Term::from_field_text(self.fields.segment, segment));
        Ok(())
    }

    /// Makes what was indexed since the last commit durable and searchable.
    pub(crate) fn commit(&self) -> Result<()> {
        self.writer()?
            .commit()
            .map_err(index_error("commit the search index"))?;
        self.reader
            .reload()
            .map_err(index_error("reload the search index"))
    }

    /// Sees what another process committed (a read-only store opened before a flush).
    pub(crate) fn refresh(&self) -> Result<()> {
        self.reader
            .reload()
            .map_err(index_error("reload the search index"))
    }

    pub(crate) fn search(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        let limit = options.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::Search(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        let fields = &self.fields;
        let mut parser = QueryParser::for_index(
            &self.index,
            vec![fields.raw, fields.user, fields.identity, fields.reason],
        );
        parser.set_conjunction_by_default();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if text.trim().is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            // A query of exclusions only ("NOT b") is refused by the parser: it means "all
            // but b".
            let parsed = match parser.parse_query(text) {
                Err(QueryParserError::AllButQueryForbidden) => {
                    parser.parse_query(&format!("* ({text})"))
                }
                parsed => parsed,
            };
            let query = parsed.map_err(|error| {
                Error::Search(format!(
                    "cannot read the search `{}`: {} (fields: {})",
                    escape_controls(text),
                    escape_controls(&error.to_string()),
                    FIELDS
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            clauses.push((Occur::Must, with_negations_anchored(query)));
        }
        if options.from.is_some() || options.to.is_some() {
            let bound = |timestamp: Option<jiff::Timestamp>, inclusive: bool| match timestamp {
                None => std::ops::Bound::Unbounded,
                Some(timestamp) => {
                    let term = Term::from_field_date(
                        fields.timestamp,
                        tantivy_date(timestamp.as_microsecond()),
                    );
                    if inclusive {
                        std::ops::Bound::Included(term)
                    } else {
                        std::ops::Bound::Excluded(term)
                    }
                }
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(options.from, true),
                    bound(options.to, false),
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let (top, total) = searcher
            .search(
                &query,
                &(
                    TopDocs::with_limit(limit)
                        .order_by_fast_field::<DateTime>("timestamp", Order::Desc),
                    Count,
                ),
            )
            .map_err(index_error("search the index"))?;
        let mut hits = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(index_error("read a document of the search index"))?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|value| value.as_str())
                    .map(str::to_owned)
            };
            let timestamp = doc
                .get_first(fields.timestamp)
                .and_then(|value| value.as_datetime())
                .and_then(|date| {
                    jiff::Timestamp::from_microsecond(date.into_timestamp_micros()).ok()
                })
                .map(|timestamp| timestamp.to_string())
                .unwrap_or_default();
            hits.push(Hit {
                event_id: text(fields.id).unwrap_or_default(),
                timestamp,
                session_id: text(fields.session),
                dataset: text(fields.dataset),
                action: text(fields.action),
                outcome: text(fields.outcome),
                user_name: text(fields.user),
                host: text(fields.host),
                ips: doc
                    .get_all(fields.ip)
                    .filter_map(|value| value.as_ip_addr())
                    .map(|ip| from_v6(ip).to_string())
                    .collect(),
                reason: text(fields.reason),
                original: text(fields.raw),
            });
        }
        Ok(SearchResult { total, hits })
    }
}

/// tantivy reads `a AND NOT b` as `+a +(-b)`, and a boolean query with only negative clauses
/// matches nothing, so the whole query would find nothing. Every such all-negative group gets
/// "everything" as its positive part: `NOT b` then means "all but b", as analysts expect.
fn with_negations_anchored(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = boolean
        .clauses()
        .iter()
        .map(|(occur, sub)| (*occur, with_negations_anchored(sub.box_clone())))
        .collect();
    if !clauses.is_empty() && clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// `text` with control characters (ESC, CR, LF, …) escaped, so that an error message that
/// quotes a hostile query cannot drive a terminal or forge log lines.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|ch| {
            if ch.is_control() {
                ch.escape_default().to_string()
            } else {
                ch.to_string()
            }
        })
        .collect()
}

/// tantivy keeps every address as IPv6; IPv4 as IPv4-mapped.
fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn from_v6(ip: std::net::Ipv6Addr) -> IpAddr {
    match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }
}

/// The `events` table's columns by name.
struct Columns<'a> {
    batch: &'a RecordBatch,
    timestamps: Option<&'a TimestampMicrosecondArray>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Columns<'a> {
        Columns {
            batch,
            timestamps: batch
                .column_by_name("timestamp")
                .and_then(|column| column.as_any().downcast_ref()),
        }
    }

    fn text(&self, name: &str, row: usize) -> Option<&'a str> {
        let column: &'a StringArray = self.batch.column_by_name(name)?.as_any().downcast_ref()?;
        (!column.is_null(row)).then(|| column.value(row))
    }

    fn micros(&self, row: usize) -> Option<i64> {
        let column = self.timestamps?;
        (!column.is_null(row)).then(|| column.value(row))
    }
}

/// A time as tantivy holds it (nanoseconds in an i64: years 1678 to 2262); times outside are
/// clamped to the ends, never an overflow.
fn tantivy_date(micros: i64) -> DateTime {
    DateTime::from_timestamp_micros(micros.clamp(i64::MIN / 1_000, i64::MAX / 1_000))
}

#[cfg(test)]
mod tests;
