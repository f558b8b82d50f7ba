//! Entry points for the fuzz targets in `fuzz/`: thin wrappers over crate-private readers of
//! untrusted input, doing exactly what their callers do with it. Not an API (hidden from the
//! docs); it holds nothing the targets do not call.

use crate::error_code::ErrorCode;
use crate::outline::Polygon;
use crate::segment::Failure;
use crate::segment::{command, http};

/// The http segmenter's reading of the body of a 2xx `/segment` reply from the service `name`.
pub fn http_reply(name: &str, body: &[u8]) -> Result<Vec<Polygon>, Failure> {
    http::reply_polygons(name, body)
}

/// The command segmenter's reading of the result JSON a program that exited 0 wrote. Bytes that
/// are not UTF-8 fail as reading the file does.
pub fn command_reply(bytes: &[u8]) -> Result<Vec<Polygon>, Failure> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Failure::transient(
            ErrorCode::ML_MALFORMED,
            format!("cannot read the result JSON: {e}"),
        )
    })?;
    command::parse_reply(text)
        .map_err(|m| Failure::transient(ErrorCode::ML_MALFORMED, m))
        .and_then(command::reply_polygons)
}
