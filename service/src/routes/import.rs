//! `POST /api/v1/competitors/import`: a start list in, upserted by bib.
//!
//! The body is CSV (`text/csv`, also `application/csv` and `text/plain`: UTF-8, a header row,
//! comma or semicolon separated as the header shows, quoted fields, a BOM tolerated) or a JSON
//! array of objects (`application/json`); without a `Content-Type`, a body starting with `[`
//! is JSON. Columns (keys) are the race definition's competitor fields, matched without regard
//! to case or surrounding spaces, plus an optional `status` (`DNS`, `DNF`, `DSQ` or empty to
//! clear); every definition field must be present. An unknown column is an error unless
//! `?ignore_unknown=true`. Cells are trimmed.
//!
//! Rows are upserted by bib: a new bib is created, an existing one has its fields replaced
//! (times kept; status kept unless the file has a `status` column). By default the file is
//! all or nothing: any invalid row answers 422 listing every error by row, line and column,
//! and nothing is stored. `?mode=partial` stores the valid rows and lists the rejected ones.
//! Bodies up to [`IMPORT_LIMIT`] (some 80,000 rows of a typical start list).

use std::collections::{HashMap, HashSet};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::{ApiError, ApiQuery},
    model::{Bib, Status},
    race::Race,
    state::AppState,
    store::ImportRecord,
};

/// The largest start list accepted, in bytes.
pub const IMPORT_LIMIT: usize = 8 * 1024 * 1024;
/// The optional column that sets a competitor's status.
const STATUS_COLUMN: &str = "status";

/// The import route.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/competitors/import",
        post(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
    )
}

/// Query of the import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    ignore_unknown: bool,
}

/// What happens to a file with invalid rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Nothing is stored.
    #[default]
    All,
    /// The valid rows are stored.
    Partial,
}

/// One problem of the file, where it is.
#[derive(Debug, Clone, Serialize)]
struct RowError {
    /// The data row, from 1 (CSV: after the header; JSON: the array item); null for the header.
    row: Option<usize>,
    /// The CSV line it starts on (the header is line 1); null in JSON.
    line: Option<u64>,
    /// The column (field), when the problem is one cell.
    column: Option<String>,
    /// The row's bib, when it has a valid one.
    bib: Option<String>,
    /// What is wrong.
    error: String,
}

impl RowError {
    fn describe(&self) -> String {
        let mut place = Vec::new();
        if let Some(line) = self.line {
            place.push(format!("line {line}"));
        } else if let Some(row) = self.row {
            place.push(format!("item {row}"));
        }
        if let Some(column) = &self.column {
            place.push(format!("column `{column}`"));
        }
        if place.is_empty() {
            self.error.clone()
        } else {
            format!("{}: {}", place.join(", "), self.error)
        }
    }
}

/// A data row before validation: where it is, and its cells by field name.
struct RawRow {
    row: usize,
    line: Option<u64>,
    cells: Vec<(String, String)>,
}

/// The file's rows, or the errors that make its rows unreadable.
struct Sheet {
    rows: Vec<RawRow>,
    errors: Vec<RowError>,
}

impl Sheet {
    /// The non-empty cells of `field`, row by row.
    fn cells<'s>(&'s self, field: &'s str) -> impl Iterator<Item = &'s str> {
        self.rows.iter().filter_map(move |raw| {
            raw.cells
                .iter()
                .find(|(f, v)| f == field && !v.is_empty())
                .map(|(_, v)| v.as_str())
        })
    }
}

/// What the rows refer to that must exist in the store (a wave) or must not belong to another
/// competitor (a chip). Checked before anything is written, so that such a row is refused with
/// its line and column like any other invalid row, and a file is still stored all or nothing:
/// the upsert would refuse it too, but only after the other rows were written.
#[derive(Default)]
struct References {
    waves: HashSet<String>,
    /// chip → the competitor it belongs to now.
    chip_holders: HashMap<String, String>,
}

impl References {
    /// Reads the waves and the holders of the chips the file names (nothing when it names none).
    async fn read(store: &crate::store::Store, sheet: &Sheet) -> Result<Self, ApiError> {
        let waves = if sheet.cells(WAVE_FIELD).next().is_some() {
            store.wave_names().await?
        } else {
            HashSet::new()
        };
        let chips: Vec<&str> = sheet.cells(CHIP_FIELD).collect();
        let chip_holders = store
            .chip_holders(&chips)
            .await?
            .into_iter()
            .map(|(chip, bib)| (chip.to_owned(), bib))
            .collect();
        Ok(Self {
            waves,
            chip_holders,
        })
    }
}

/// The competitor fields that refer to something else.
const WAVE_FIELD: &str = "wave";
const CHIP_FIELD: &str = "chip";

fn header_error(line: Option<u64>, column: Option<&str>, error: String) -> RowError {
    RowError {
        row: None,
        line,
        column: column.map(str::to_owned),
        bib: None,
        error,
    }
}

/// The 422 answer listing every error.
fn invalid_file(errors: Vec<RowError>, stored: bool) -> Response {
    let first = errors.first().map(RowError::describe).unwrap_or_default();
    let message = if stored {
        format!("{} problems; {first}", errors.len())
    } else {
        format!(
            "{} problem{} in the file, nothing stored; the first: {first}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        )
    };
    let body = serde_json::json!({"error": message, "code": "invalid", "errors": errors});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// Maps header names to the definition's fields (and `status`): each known one once, every
/// field present, unknown ones refused unless ignored. Returns the field of each column.
fn map_columns(
    race: &Race,
    names: &[(Option<u64>, String)],
    ignore_unknown: bool,
) -> Result<Vec<Option<String>>, Vec<RowError>> {
    let known: Vec<&str> = race
        .fields
        .iter()
        .map(String::as_str)
        .chain([STATUS_COLUMN])
        .collect();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(names.len());
    for (line, name) in names {
        let name = name.trim();
        let field = known.iter().find(|k| k.eq_ignore_ascii_case(name));
        match field {
            Some(field) if !seen.insert(*field) => {
                errors.push(header_error(
                    *line,
                    Some(field),
                    format!("column `{field}` appears twice"),
                ));
                fields.push(None);
            }
            Some(field) => fields.push(Some((*field).to_owned())),
            None if ignore_unknown => fields.push(None),
            None => {
                errors.push(header_error(
                    *line,
                    Some(name),
                    format!(
                        "unknown column `{name}`; the columns are: {} (or add ?ignore_unknown=true)",
                        known.join(", ")
                    ),
                ));
                fields.push(None);
            }
        }
    }
    let line = names.first().and_then(|(line, _)| *line);
    for field in &race.fields {
        if !seen.contains(field.as_str()) {
            errors.push(header_error(
                line,
                Some(field),
                format!("missing column `{field}`"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(fields)
    } else {
        Err(errors)
    }
}

/// The separator the header line uses: `;` when it has more semicolons than commas outside
/// quotes, else `,`.
fn delimiter(text: &[u8]) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for &b in text {
        match b {
            b'\n' | b'\r' if !quoted => break,
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas { b';' } else { b',' }
}

/// Reads a CSV start list.
fn read_csv(race: &Race, body: &[u8], ignore_unknown: bool) -> Result<Sheet, Vec<RowError>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(body))
        .flexible(true)
        .has_headers(false)
        .from_reader(body);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(vec![header_error(
                None,
                None,
                "the file is empty: expected a header row and a row per competitor".into(),
            )]);
        }
        Some(Err(err)) => return Err(vec![header_error(Some(1), None, err.to_string())]),
        Some(Ok(header)) => header,
    };
    let header_line = header.position().map_or(1, csv::Position::line);
    let mut names = Vec::with_capacity(header.len());
    let mut errors = Vec::new();
    for (i, name) in header.iter().enumerate() {
        match std::str::from_utf8(name) {
            Ok(name) => names.push((Some(header_line), name.to_owned())),
            Err(_) => errors.push(header_error(
                Some(header_line),
                None,
                format!("the name of column {} is not valid UTF-8", i + 1),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let fields = map_columns(race, &names, ignore_unknown)?;
    let mut rows = Vec::new();
    for (index, record) in records.enumerate() {
        let row = index + 1;
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map(csv::Position::line);
                errors.push(RowError {
                    row: Some(row),
                    line,
                    column: None,
                    bib: None,
                    error: err.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map(csv::Position::line);
        let fail = |column: Option<&str>, error: String| RowError {
            row: Some(row),
            line,
            column: column.map(str::to_owned),
            bib: None,
            error,
        };
        if record.len() != fields.len() {
            errors.push(fail(
                None,
                format!(
                    "{} fields, but the header has {}",
                    record.len(),
                    fields.len()
                ),
            ));
            continue;
        }
        let mut cells = Vec::with_capacity(race.fields.len() + 1);
        let mut readable = true;
        for (field, value) in fields.iter().zip(record.iter()) {
            let Some(field) = field else { continue };
            match std::str::from_utf8(value) {
                Ok(text) => cells.push((field.clone(), text.trim().to_owned())),
                Err(err) => {
                    readable = false;
                    errors.push(fail(
                        Some(field),
                        format!(
                            "not valid UTF-8 (byte {} of the cell); save the file as UTF-8",
                            err.valid_up_to() + 1
                        ),
                    ));
                }
            }
        }
        if readable {
            rows.push(RawRow { row, line, cells });
        }
    }
    Ok(Sheet { rows, errors })
}

/// Reads a JSON array of competitor objects.
fn read_json(race: &Race, body: &[u8], ignore_unknown: bool) -> Result<Sheet, ApiError> {
    let items: Vec<Value> = crate::json::unique_value(body)
        .and_then(serde_json::from_value)
        .map_err(|err| match err.classify() {
            serde_json::error::Category::Data => ApiError::Unprocessable(format!(
                "invalid body: {err}; expected an array of competitor objects"
            )),
            _ => ApiError::BadRequest(format!("malformed JSON: {err}")),
        })?;
    let mut rows = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let row = index + 1;
        let fail = |column: Option<&str>, error: String| RowError {
            row: Some(row),
            line: None,
            column: column.map(str::to_owned),
            bib: None,
            error,
        };
        let Value::Object(object) = item else {
            errors.push(fail(None, format!("expected an object, got {item}")));
            continue;
        };
        let names: Vec<(Option<u64>, String)> = object.keys().map(|k| (None, k.clone())).collect();
        let fields = match map_columns(race, &names, ignore_unknown) {
            Ok(fields) => fields,
            Err(found) => {
                errors.extend(found.into_iter().map(|e| RowError {
                    row: Some(row),
                    ..e
                }));
                continue;
            }
        };
        let mut cells = Vec::with_capacity(fields.len());
        let mut readable = true;
        for (field, (_, value)) in fields.iter().zip(&object) {
            let Some(field) = field else { continue };
            match json_cell(field, value) {
                Ok(text) => cells.push((field.clone(), text)),
                Err(error) => {
                    readable = false;
                    errors.push(fail(Some(field), error));
                }
            }
        }
        if readable {
            rows.push(RawRow {
                row,
                line: None,
                cells,
            });
        }
    }
    Ok(Sheet { rows, errors })
}

/// A JSON value as cell text: strings (trimmed), a whole-number bib, a null status.
fn json_cell(field: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.trim().to_owned()),
        Value::Number(n) if field == "bib" && (n.is_u64() || n.is_i64()) => Ok(n.to_string()),
        Value::Null if field == STATUS_COLUMN => Ok(String::new()),
        other => Err(format!("expected a string, got {other}")),
    }
}

/// Validates the rows: every cell, and bibs unique in the file.
fn validate(
    race: &Race,
    sheet: Sheet,
    references: &References,
) -> (Vec<ImportRecord>, Vec<RowError>) {
    let Sheet { rows, mut errors } = sheet;
    let mut records = Vec::with_capacity(rows.len());
    let mut first_seen: HashMap<String, (usize, Option<u64>)> = HashMap::new();
    let mut chip_first_seen: HashMap<String, (usize, Option<u64>)> = HashMap::new();
    let place = |(row, line): (usize, Option<u64>)| {
        line.map_or_else(|| format!("item {row}"), |l| format!("line {l}"))
    };
    for raw in rows {
        let mut row_errors = Vec::new();
        let mut fail = |column: &str, error: String| {
            row_errors.push(RowError {
                row: Some(raw.row),
                line: raw.line,
                column: Some(column.to_owned()),
                bib: None,
                error,
            });
        };
        let cells: HashMap<&str, &str> = raw
            .cells
            .iter()
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .collect();
        let bib = match Bib::parse(cells.get("bib").copied().unwrap_or_default()) {
            Ok(bib) => Some(bib),
            Err(err) => {
                fail("bib", err.0);
                None
            }
        };
        let mut fields = Vec::with_capacity(race.fields.len());
        for field in &race.fields {
            let text = cells.get(field.as_str()).copied().unwrap_or_default();
            if field != "bib"
                && let Err(err) = race.check_value(field, text)
            {
                fail(field, err.0);
            }
            fields.push((field.clone(), text.to_owned()));
        }
        let status = match cells.get(STATUS_COLUMN) {
            None => None,
            Some(&"") => Some(None),
            Some(text) => match Status::from_stored(&text.to_ascii_uppercase()) {
                Some(status) => Some(Some(status)),
                None => {
                    fail(
                        STATUS_COLUMN,
                        format!("unknown status `{text}`; allowed: DNS, DNF, DSQ or empty"),
                    );
                    None
                }
            },
        };
        if let Some(bib) = &bib {
            match first_seen.get(bib.as_str()) {
                Some(seen) => fail("bib", format!("bib `{bib}` is already on {}", place(*seen))),
                None => {
                    first_seen.insert(bib.as_str().to_owned(), (raw.row, raw.line));
                }
            }
        }
        if let Some(wave) = cells.get(WAVE_FIELD).filter(|w| !w.is_empty())
            && !references.waves.contains(*wave)
        {
            fail(
                WAVE_FIELD,
                format!("unknown wave `{wave}`; create it first with PUT /api/v1/waves/{wave}"),
            );
        }
        if let Some(chip) = cells.get(CHIP_FIELD).filter(|c| !c.is_empty()) {
            let holder = references.chip_holders.get(*chip);
            if let Some(holder) =
                holder.filter(|holder| bib.as_ref().is_none_or(|bib| bib.as_str() != *holder))
            {
                fail(
                    CHIP_FIELD,
                    format!("chip `{chip}` is already competitor `{holder}`'s"),
                );
            } else if let Some(seen) = chip_first_seen.get(*chip) {
                // Only a chip the row may have counts: a refused one claims nothing.
                fail(
                    CHIP_FIELD,
                    format!("chip `{chip}` is already on {}", place(*seen)),
                );
            } else {
                chip_first_seen.insert((*chip).to_owned(), (raw.row, raw.line));
            }
        }
        match bib {
            Some(bib) if row_errors.is_empty() => records.push(ImportRecord {
                bib,
                fields,
                status,
            }),
            bib => errors.extend(row_errors.into_iter().map(|e| RowError {
                bib: bib.as_ref().map(|b| b.as_str().to_owned()),
                ..e
            })),
        }
    }
    errors.sort_by_key(|e| (e.row, e.line));
    (records, errors)
}

/// The format of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// The body's format from its `Content-Type` (sniffed without one); `Err` holds the
/// unsupported type.
fn format(headers: &HeaderMap, body: &[u8]) -> Result<Format, String> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        return Ok(if first == Some(&b'[') {
            Format::Json
        } else {
            Format::Csv
        });
    };
    let text = String::from_utf8_lossy(content_type.as_bytes());
    if crate::json::is_json_media_type(&text) {
        return Ok(Format::Json);
    }
    let csv = text.parse::<mime::Mime>().ok().is_some_and(|media| {
        let essence = media.essence_str();
        let utf8 = media
            .get_param(mime::CHARSET)
            .is_none_or(|charset| charset == mime::UTF_8);
        utf8 && matches!(essence, "text/csv" | "application/csv" | "text/plain")
    });
    if csv {
        Ok(Format::Csv)
    } else {
        Err(text.into_owned())
    }
}

/// `POST /api/v1/competitors/import`.
async fn import(
    State(state): State<AppState>,
    actor: crate::auth::Actor,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: IMPORT_LIMIT,
            }
        } else {
            ApiError::from(rejection)
        }
    })?;
    let race = &state.race;
    let format = match format(&headers, &body) {
        Ok(format) => format,
        Err(unsupported) => {
            let body = serde_json::json!({
                "error": format!("expected a start list as `text/csv` or `application/json` (UTF-8), got `{unsupported}`"),
                "code": "unsupported_media_type",
            });
            return Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(body)).into_response());
        }
    };
    let sheet = match format {
        Format::Csv => match read_csv(race, &body, query.ignore_unknown) {
            Ok(sheet) => sheet,
            Err(errors) => return Ok(invalid_file(errors, false)),
        },
        Format::Json => read_json(race, &body, query.ignore_unknown)?,
    };
    let references = References::read(&state.store, &sheet).await?;
    let (records, errors) = validate(race, sheet, &references);
    if !errors.is_empty() && query.mode == Mode::All {
        return Ok(invalid_file(errors, false));
    }
    let counts = state.store.import(actor.as_str(), &records).await?;
    let body = serde_json::json!({
        "created": counts.created,
        "updated": counts.updated,
        "rejected": errors,
    });
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_follows_the_header() {
        assert_eq!(delimiter(b"bib,first_name;x\n1;2;3"), b',');
        assert_eq!(delimiter(b"bib;first_name;\"a,b,c\"\n"), b';');
        assert_eq!(delimiter(b"bib"), b',');
    }

    #[test]
    fn errors_say_where() {
        let e = RowError {
            row: Some(2),
            line: Some(3),
            column: Some("gender".into()),
            bib: None,
            error: "unknown gender".into(),
        };
        assert_eq!(e.describe(), "line 3, column `gender`: unknown gender");
    }
}
