//! Reading a submission from a request: the multipart upload of `POST /api/jobs` and
//! `/ml/segment` (image parts streamed to a temp file past a few MiB, never held whole; other
//! fields read with a size limit), the JSON import by path, and the checks of the fields they
//! carry (priority, segmenter, params, and params changed over a job's own for a rerun).

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::images::ImageStore;
use crate::queue::Priority;
use crate::segment::{SegmentParams, SegmenterId};
use crate::service::{Source, SubmitOptions};

/// Image parts up to this size stay in memory; larger ones stream to a temp file.
const SPILL: usize = 4 << 20;
/// The largest value of a form field other than an image (`params` is the largest real one).
pub(super) const MAX_FIELD: usize = 64 << 10;
/// The largest JSON body of an import.
const MAX_JSON: usize = 1 << 20;

pub(super) fn priority(raw: i64) -> Result<Priority, ApiError> {
    Priority::new(raw).ok_or_else(|| {
        ApiError::invalid(
            "priority",
            format!("{raw} is out of range: use 1 (lowest) to 10 (highest)"),
        )
    })
}

/// A segmenter's name; whether this server has it is the service's check.
pub(super) fn segmenter(raw: &str) -> Result<SegmenterId, ApiError> {
    raw.parse()
        .map_err(|e: String| ApiError::invalid("segmenter", e))
}

/// The longest client key (`Idempotency-Key`, `dedupe_key`).
const MAX_KEY: usize = 255;

/// A client's key for a submission: 1 to 255 visible ASCII characters. The `Idempotency-Key`
/// draft sends it as a structured-field string (`"…"`); Stripe's clients send it bare: both are
/// taken.
pub(super) fn client_key(raw: &str, field: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!(
            "{field}: use 1 to {MAX_KEY} visible ASCII characters, such as a UUID"
        )));
    }
    Ok(key.to_owned())
}

pub(super) fn params(raw: &str) -> Result<SegmentParams, ApiError> {
    let p: SegmentParams =
        serde_json::from_str(raw).map_err(|e| ApiError::invalid("params", e.to_string()))?;
    p.validate()
        .map_err(|e| ApiError::invalid(&format!("params.{}", e.field), e.reason))?;
    Ok(p)
}

/// `base` with the fields of `patch` replaced (`null` clears an optional one), checked as a whole
/// like [`params`]: an unknown field, a wrong type or a value out of range is a 422.
pub(super) fn params_patch(
    base: &SegmentParams,
    patch: serde_json::Map<String, serde_json::Value>,
) -> Result<SegmentParams, ApiError> {
    let mut merged = match serde_json::to_value(base) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => unreachable!("parameters serialise as a JSON object"),
    };
    merged.extend(patch);
    params(&serde_json::Value::Object(merged).to_string())
}

pub(super) fn multipart_error(e: MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            ErrorCode::TOO_LARGE,
            format!("the request is larger than the limit: {e}"),
        )
    } else {
        ApiError::new(
            status,
            ErrorCode::BAD_REQUEST,
            format!("malformed multipart body: {e}"),
        )
    }
}

/// An image part: in memory when small, else streamed to a temp file of the image store (which
/// removes it unless it is stored). `expected` is what the client said it sends (the request's
/// length), room made at once up to the in-memory limit instead of growing the buffer by copies.
pub(super) async fn image_field(
    mut field: Field<'_>,
    images: &ImageStore,
    expected: usize,
) -> Result<Source, ApiError> {
    let name = field
        .file_name()
        .unwrap_or("upload")
        .chars()
        .take(255)
        .collect::<String>();
    let io_error =
        |e: std::io::Error| ApiError::from(images.io_error(std::path::Path::new("upload"), e));
    let mut buffer: Vec<u8> = Vec::with_capacity(expected.min(SPILL));
    let mut spilled: Option<(crate::images::Incoming, tokio::fs::File)> = None;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        match spilled.as_mut() {
            Some((_, out)) => out.write_all(&chunk).await.map_err(io_error)?,
            None if buffer.len() + chunk.len() <= SPILL => buffer.extend_from_slice(&chunk),
            None => {
                let tmp = images.incoming()?;
                let mut out = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(tmp.path())
                    .await
                    .map_err(io_error)?;
                out.write_all(&buffer).await.map_err(io_error)?;
                out.write_all(&chunk).await.map_err(io_error)?;
                buffer = Vec::new();
                spilled = Some((tmp, out));
            }
        }
    }
    Ok(match spilled {
        Some((file, mut out)) => {
            out.flush().await.map_err(io_error)?;
            Source::Upload { name, file }
        }
        None => Source::Bytes {
            name,
            bytes: buffer,
        },
    })
}

/// A text field, refused past `limit` bytes instead of being held whole.
pub(super) async fn text_field(mut field: Field<'_>, limit: usize) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FIELD_TOO_LARGE,
                format!("the form field {name:?} is larger than {} KiB", limit >> 10),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::invalid(&name, "is not UTF-8 text"))
}

/// A multipart upload: `image` parts (also `images`, `file`) and the fields `priority`,
/// `project`, `segmenter`, `params`. Temp files of a refused upload are removed when the sources
/// drop. `length` is the request's `Content-Length`, if it sent one.
pub(super) async fn form(
    mut form: Multipart,
    images: &ImageStore,
    length: Option<usize>,
) -> Result<(Vec<Source>, SubmitOptions), ApiError> {
    // The first image part is most of a request.
    let mut expected = length;
    let mut sources = Vec::new();
    let mut opts = SubmitOptions::default();
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" | "images" | "file" => {
                sources.push(image_field(field, images, expected.take().unwrap_or_default()).await?)
            }
            "priority" => {
                let text = text_field(field, MAX_FIELD).await?;
                let n: i64 = text.trim().parse().map_err(|_| {
                    ApiError::invalid(
                        "priority",
                        format!("{text:?} is not a whole number from 1 to 10"),
                    )
                })?;
                opts.priority = priority(n)?;
            }
            "project" => {
                let text = text_field(field, MAX_FIELD).await?;
                opts.project = Some(text).filter(|p| !p.trim().is_empty());
            }
            "segmenter" => {
                opts.segmenter = Some(segmenter(text_field(field, MAX_FIELD).await?.trim())?)
            }
            "params" => opts.params = params(&text_field(field, MAX_FIELD).await?)?,
            "dedupe_key" => {
                opts.key = Some(client_key(
                    &text_field(field, MAX_FIELD).await?,
                    "dedupe_key",
                )?)
            }
            other => return Err(ApiError::bad_request(format!("unknown field {other:?}"))),
        }
    }
    Ok((sources, opts))
}

// For the OpenAPI document only: `form` reads the parts one at a time as they stream in, so
// nothing is ever built from this type.
/// The parts of a multipart upload.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the multipart parts that `form` reads one by one"
)]
pub(super) struct UploadForm {
    /// One part per image file (PNG, JPEG, TIFF or BMP); parts named `images` or `file` are taken
    /// too.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    image: Vec<Vec<u8>>,
    /// 1 (lowest) to 10 (highest); 5 when absent.
    #[schema(minimum = 1, maximum = 10)]
    priority: Option<i64>,
    /// The project the jobs belong to.
    project: Option<String>,
    /// `builtin` or the name of a configured ML service; the configured default when absent.
    segmenter: Option<String>,
    /// The segmentation parameters as JSON text (the fields of `ParamsView`).
    params: Option<String>,
    /// A key for this submission, as the `Idempotency-Key` header: the same key again returns
    /// the jobs it made first instead of new ones.
    dedupe_key: Option<String>,
}

/// Files to import by path, each inside one of the configured import directories.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportBody {
    /// Absolute, or relative to an import directory.
    #[schema(min_items = 1)]
    paths: Vec<String>,
    /// 1 (lowest) to 10 (highest); 5 when absent.
    #[schema(minimum = 1, maximum = 10)]
    priority: Option<i64>,
    project: Option<String>,
    /// `builtin` or the name of a configured ML service.
    segmenter: Option<String>,
    #[schema(value_type = Option<crate::view::ParamsView>)]
    params: Option<serde_json::Value>,
    /// A key for this submission, as the `Idempotency-Key` header.
    dedupe_key: Option<String>,
}

/// Files named by path, each of which must resolve (symlinks and `..` followed) to a file inside
/// one of the import directories.
pub(super) async fn import(
    state: &AppState,
    req: Request,
) -> Result<(Vec<Source>, SubmitOptions), ApiError> {
    let b: ImportBody = json_body(req).await?;
    let mut sources = Vec::with_capacity(b.paths.len());
    for (i, raw) in b.paths.iter().enumerate() {
        sources.push(Source::Path(importable(
            state,
            raw,
            &format!("paths[{i}]"),
        )?));
    }
    let mut opts = SubmitOptions::default();
    if let Some(n) = b.priority {
        opts.priority = priority(n)?;
    }
    opts.project = b.project.filter(|p| !p.trim().is_empty());
    if let Some(s) = &b.segmenter {
        opts.segmenter = Some(segmenter(s)?);
    }
    if let Some(v) = b.params {
        opts.params = params(&v.to_string())?;
    }
    if let Some(k) = &b.dedupe_key {
        opts.key = Some(client_key(k, "dedupe_key")?);
    }
    Ok((sources, opts))
}

/// A JSON body of at most `MAX_JSON` bytes, as `T`.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let body = axum::body::to_bytes(req.into_body(), MAX_JSON)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TOO_LARGE,
                format!("the JSON body is larger than {MAX_JSON} bytes"),
            )
        })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// The canonical path of `raw` if it is a file inside one of the import directories (relative
/// paths are tried against each).
pub(super) fn importable(
    state: &AppState,
    raw: &str,
    field: &str,
) -> Result<std::path::PathBuf, ApiError> {
    if state.import_dirs.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::IMPORT_DISABLED,
            "importing by path is off: configure import_dirs",
        ));
    }
    let p = std::path::Path::new(raw);
    let candidates: Vec<std::path::PathBuf> = if p.is_absolute() {
        vec![p.to_owned()]
    } else {
        state.import_dirs.iter().map(|d| d.join(p)).collect()
    };
    let Some(resolved) = candidates.iter().find_map(|c| c.canonicalize().ok()) else {
        return Err(ApiError::invalid(field, format!("{raw:?} does not exist")));
    };
    if !state.import_dirs.iter().any(|d| resolved.starts_with(d)) || !resolved.is_file() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PATH_NOT_ALLOWED,
            format!("{field}: {raw:?} is not a file inside the import directories"),
        ));
    }
    Ok(resolved)
}
