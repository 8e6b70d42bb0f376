use super::*;

/// Every column is a documented field of the vocabulary (ECS or `vpn.*`), named by
/// `model::fields::column_name`.
#[test]
fn every_column_is_a_documented_field() {
    for table in Table::ALL {
        for column in table.column_names() {
            assert!(
                model::fields::by_column(column).is_some(),
                "{}.{column} is not in model::fields::FIELDS",
                table.name()
            );
        }
    }
}

/// The schema of every table, pinned: column names, order, types and nullability (and
/// any metadata). Parquet segments written before are read with today's schema, so a
/// change here is a migration, not a refactoring.
#[test]
fn tables_keep_their_schemas() {
    let mut rendered = String::new();
    for table in Table::ALL {
        let schema = table.schema();
        rendered.push_str(&format!("{}\n", table.name()));
        assert!(
            schema.metadata().is_empty(),
            "{} has metadata",
            table.name()
        );
        for field in schema.fields() {
            let nullable = if field.is_nullable() {
                "null"
            } else {
                "not null"
            };
            rendered.push_str(&format!(
                "  {}: {:?} {nullable}\n",
                field.name(),
                field.data_type()
            ));
            assert!(field.metadata().is_empty(), "{} has metadata", field.name());
        }
    }
    expect_test::expect_file!["../../testdata/schema/tables.expected"].assert_eq(&rendered);
}

/// Every cell of every table for realistic rows of each kind (testdata/schema/*.jsonl):
/// what the converters write, pinned.
#[test]
fn rows_keep_their_cells() {
    let events = fixture_events();
    let sessions = fixture_sessions();
    let joins: Vec<model::SessionJoinUpdate> =
        jsonl(include_str!("../../testdata/schema/session_joins.jsonl"));
    let at = jiff::Timestamp::from_second(1_795_000_000).unwrap();
    let first = model::AuditDraft {
        action: "retention.delete".to_owned(),
        outcome: Some("success".to_owned()),
        actor: Some("policy:90-days".to_owned()),
        target: None,
        source_ip: None,
        message: "deleted 3 hours of flows".to_owned(),
        role: None,
        details: None,
    }
    .seal(1, at, model::audit::GENESIS);
    let second = model::AuditDraft {
        action: "revoke.terminate".to_owned(),
        outcome: None,
        actor: Some("analyst@example.org".to_owned()),
        target: Some("bob".to_owned()),
        source_ip: Some("2001:db8::5".parse().unwrap()),
        message: "terminated bob's sessions".to_owned(),
        role: None,
        details: None,
    }
    .seal(2, at, &first.hash);
    let mut rendered = String::new();
    for table in Table::ALL {
        let batch = match table {
            Table::Sessions => sessions_batch(&sessions.iter().collect::<Vec<_>>()),
            Table::SessionJoins => session_joins_batch(&joins.iter().collect::<Vec<_>>()),
            Table::AuditLog => audit_batch(&[&first, &second]),
            _ => {
                let taken: Vec<&Event> = events.iter().filter(|event| table.takes(event)).collect();
                table.events_batch(&taken)
            }
        }
        .unwrap();
        rendered.push_str(&render_batch(table.name(), &batch));
    }
    expect_test::expect_file!["../../testdata/schema/rows.expected"].assert_eq(&rendered);
}

fn jsonl<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn fixture_events() -> Vec<Event> {
    jsonl(include_str!("../../testdata/schema/events.jsonl"))
}

fn fixture_sessions() -> Vec<Session> {
    jsonl(include_str!("../../testdata/schema/sessions.jsonl"))
}

fn render_batch(table: &str, batch: &RecordBatch) -> String {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::util::display::array_value_to_string;
    let mut rendered = format!("{table}: {} rows\n", batch.num_rows());
    for row in 0..batch.num_rows() {
        rendered.push_str(&format!("  row {row}\n"));
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let cell = if column.is_null(row) {
                "null".to_owned()
            } else if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
                format!("{:?}", text.value(row))
            } else {
                array_value_to_string(column, row).unwrap()
            };
            rendered.push_str(&format!("    {}: {cell}\n", field.name()));
        }
    }
    rendered
}

#[test]
fn table_names_are_the_ones_users_script_against() {
    let names: Vec<&str> = Table::ALL.iter().map(|table| table.name()).collect();
    assert_eq!(
        names,
        [
            "events",
            "auth_events",
            "sessions",
            "flows",
            "api_requests",
            "alerts",
            "audit_log",
            "session_joins"
        ]
    );
    for required in ["source_ip", "user_name", "event_outcome", "session_id"] {
        assert!(
            Table::AuthEvents.column_names().contains(&required),
            "auth_events lacks {required}"
        );
    }
    for table in [Table::Flows, Table::ApiRequests] {
        assert!(
            table.column_names().contains(&"session_id")
                && table.column_names().contains(&"user_name")
        );
    }
    assert!(Table::Flows.column_names().contains(&"destination_port"));
}

/// What a rule reads with a field's getter is what SQL sees in its column: every cell of
/// every table, for realistic rows of each kind, is the getter's value (an address as text, a
/// time to the microsecond).
#[test]
fn getters_give_what_the_columns_hold() {
    let events = fixture_events();
    for table in Table::ALL.into_iter().filter(|table| table.from_events()) {
        let taken: Vec<&Event> = events.iter().filter(|event| table.takes(event)).collect();
        assert!(!taken.is_empty(), "no fixture event for {}", table.name());
        check_cells(table, &taken);
    }
    check_cells(
        Table::Sessions,
        &fixture_sessions().iter().collect::<Vec<_>>(),
    );
    let joins: Vec<model::SessionJoinUpdate> =
        jsonl(include_str!("../../testdata/schema/session_joins.jsonl"));
    check_cells(Table::SessionJoins, &joins.iter().collect::<Vec<_>>());
}

#[track_caller]
fn check_cells<T: Row>(table: Table, rows: &[&T]) {
    let batch = to_batch(table, rows).unwrap();
    for (column, array) in table.columns().zip(batch.columns()) {
        let get = T::getter(column.field).unwrap();
        for (row_idx, row) in rows.iter().enumerate() {
            assert_eq!(
                cell(array, column.field.ty, row_idx),
                get(row).map(as_stored),
                "{}.{} of row {row_idx}",
                table.name(),
                column.field.column,
            );
        }
    }
}

/// An Arrow cell read back as the value of a field of type `ty`, `None` for null.
fn cell(array: &ArrayRef, ty: FieldType, row: usize) -> Option<Value<'static>> {
    use datafusion::arrow::array::{
        Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    Some(match ty {
        FieldType::Str => Value::from(any.downcast_ref::<StringArray>()?.value(row).to_owned()),
        FieldType::Ip => Value::Ip(any.downcast_ref::<StringArray>()?.value(row).parse().ok()?),
        FieldType::Int => Value::Int(any.downcast_ref::<Int64Array>()?.value(row)),
        FieldType::Float => Value::Float(any.downcast_ref::<Float64Array>()?.value(row)),
        FieldType::Time => {
            let micros = any.downcast_ref::<TimestampMicrosecondArray>()?.value(row);
            Value::Time(jiff::Timestamp::from_microsecond(micros).ok()?)
        }
    })
}

/// A value as the store keeps it: times to the microsecond, text owned.
fn as_stored(value: Value<'_>) -> Value<'static> {
    match value {
        Value::Time(at) => {
            Value::Time(jiff::Timestamp::from_microsecond(at.as_microsecond()).unwrap())
        }
        Value::Str(text) => Value::from(text.into_owned()),
        Value::Int(number) => Value::Int(number),
        Value::Float(number) => Value::Float(number),
        Value::Ip(ip) => Value::Ip(ip),
    }
}

/// A field that no event or session carries names the tables that hold it, and those are
/// the tables that have its column.
#[test]
fn table_only_fields_are_in_the_tables_they_name() {
    for table in Table::ALL {
        for column in table.columns() {
            let field = column.field;
            assert!(
                field.only_in.is_empty() || field.only_in.contains(&table.name()),
                "{}.{} is a column, but {} says it is only in {:?}",
                table.name(),
                field.column,
                field.name,
                field.only_in
            );
        }
    }
    for field in model::fields::FIELDS {
        for name in field.only_in {
            let table = Table::ALL.into_iter().find(|table| table.name() == *name);
            let table = table.unwrap_or_else(|| panic!("{}: no table {name}", field.name));
            assert!(
                table.column_names().contains(&field.column),
                "{} is said to be in {name}, which has no column {}",
                field.name,
                field.column
            );
        }
    }
}
