//! Every error code spheroseg gives, in one place: the stable kebab-case strings that job errors,
//! API error bodies and logs carry, so code matches on constants instead of string literals
//! (pict-rs keeps its codes the same way). Codes are stored in job records as their strings, so a
//! code may be added but never renamed.

use std::fmt;

/// A stable kebab-case error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(&'static str);

impl ErrorCode {
    // ---- jobs: what a failed attempt says ----
    /// The attempt ran longer than its timeout.
    pub const TIMEOUT: ErrorCode = ErrorCode("timeout");
    /// The attempt was stopped.
    pub const STOPPED: ErrorCode = ErrorCode("stopped");
    /// The attempt stopped reporting and its lease ran out.
    pub const LEASE_EXPIRED: ErrorCode = ErrorCode("lease-expired");
    /// The job was running each time spheroseg stopped.
    pub const INTERRUPTED: ErrorCode = ErrorCode("interrupted");
    /// The segmenter panicked (see the log).
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode("internal-error");
    /// The stored image is gone.
    pub const IMAGE_MISSING: ErrorCode = ErrorCode("image-missing");
    /// The job names a segmenter that is not configured.
    pub const UNKNOWN_SEGMENTER: ErrorCode = ErrorCode("unknown-segmenter");
    /// The ML service's circuit breaker is open.
    pub const BREAKER_OPEN: ErrorCode = ErrorCode("breaker-open");

    // ---- decoding ----
    /// Not PNG, JPEG, TIFF or BMP.
    pub const NOT_AN_IMAGE: ErrorCode = ErrorCode("not-an-image");
    /// A variant of a format spheroseg does not read.
    pub const UNSUPPORTED_IMAGE: ErrorCode = ErrorCode("unsupported-image");
    /// Cut short or inconsistent.
    pub const DAMAGED_IMAGE: ErrorCode = ErrorCode("damaged-image");
    /// Over the size limits or the decode budget.
    pub const IMAGE_TOO_LARGE: ErrorCode = ErrorCode("image-too-large");
    /// Smaller than the segmenter can work on.
    pub const IMAGE_TOO_SMALL: ErrorCode = ErrorCode("image-too-small");
    /// The image could not be decoded.
    pub const DECODE_FAILED: ErrorCode = ErrorCode("decode-failed");

    // ---- segmenters ----
    /// A service returned polygons that do not pair or close.
    pub const BAD_POLYGONS: ErrorCode = ErrorCode("bad-polygons");
    /// A service returned points outside the image.
    pub const POLYGONS_OUT_OF_IMAGE: ErrorCode = ErrorCode("polygons-out-of-image");
    /// The segmentation parameters are out of range.
    pub const INVALID_PARAMS: ErrorCode = ErrorCode("invalid-params");
    /// The ML service did not answer in time.
    pub const ML_TIMEOUT: ErrorCode = ErrorCode("ml-timeout");
    /// The ML service could not be reached or answered 5xx.
    pub const ML_UNAVAILABLE: ErrorCode = ErrorCode("ml-unavailable");
    /// The request to the ML service could not be made.
    pub const ML_REQUEST: ErrorCode = ErrorCode("ml-request");
    /// The ML service refused the image (4xx).
    pub const ML_REJECTED: ErrorCode = ErrorCode("ml-rejected");
    /// The ML service answered success false.
    pub const ML_ERROR: ErrorCode = ErrorCode("ml-error");
    /// The ML service's answer is not the contract's.
    pub const ML_MALFORMED: ErrorCode = ErrorCode("ml-malformed");
    /// The ML service's answer is larger than allowed.
    pub const ML_REPLY_TOO_LARGE: ErrorCode = ErrorCode("ml-reply-too-large");
    /// The model's metadata asks for tensors spheroseg cannot send or read (`oip`).
    pub const ML_MODEL_MISMATCH: ErrorCode = ErrorCode("ml-model-mismatch");
    /// The command segmenter is misconfigured.
    pub const COMMAND_CONFIG: ErrorCode = ErrorCode("command-config");
    /// The program could not be started.
    pub const COMMAND_SPAWN: ErrorCode = ErrorCode("command-spawn");
    /// Waiting for the program failed.
    pub const COMMAND_WAIT: ErrorCode = ErrorCode("command-wait");
    /// The program's input or output could not be prepared.
    pub const COMMAND_IO: ErrorCode = ErrorCode("command-io");
    /// The program wrote no usable result.
    pub const COMMAND_OUTPUT: ErrorCode = ErrorCode("command-output");
    /// The program failed (exit code 2 or another).
    pub const COMMAND_FAILED: ErrorCode = ErrorCode("command-failed");
    /// The program could not read the image (exit code 1).
    pub const UNREADABLE_INPUT: ErrorCode = ErrorCode("unreadable-input");
    /// The program ran out of GPU memory (exit code 3).
    pub const GPU_OUT_OF_MEMORY: ErrorCode = ErrorCode("gpu-out-of-memory");
    /// The program hit a GPU or runtime error (exit code 4).
    pub const GPU_ERROR: ErrorCode = ErrorCode("gpu-error");
    /// The program was killed by a signal.
    pub const KILLED: ErrorCode = ErrorCode("killed");
    /// The job failed.
    pub const FAILED: ErrorCode = ErrorCode("failed");
    /// A stored result cannot be read.
    pub const RESULT_UNREADABLE: ErrorCode = ErrorCode("result-unreadable");

    // ---- the queue ----
    /// No job has this id.
    pub const JOB_NOT_FOUND: ErrorCode = ErrorCode("job-not-found");
    /// The attempt is no longer the job's current one.
    pub const STALE_ATTEMPT: ErrorCode = ErrorCode("stale-attempt");
    /// A result version was made from one that is no longer the latest.
    pub const STALE_VERSION: ErrorCode = ErrorCode("stale-version");
    /// The action does not apply to the job's state.
    pub const INVALID_STATE: ErrorCode = ErrorCode("invalid-state");
    /// A submitted value is out of range.
    pub const INVALID_JOB: ErrorCode = ErrorCode("invalid-job");
    /// Another spheroseg holds the database.
    pub const DATABASE_IN_USE: ErrorCode = ErrorCode("database-in-use");
    /// A newer spheroseg wrote the database.
    pub const DATABASE_TOO_NEW: ErrorCode = ErrorCode("database-too-new");
    /// The database is damaged.
    pub const DATABASE_CORRUPT: ErrorCode = ErrorCode("database-corrupt");
    /// The storage engine failed.
    pub const STORAGE_ERROR: ErrorCode = ErrorCode("storage-error");
    /// The queue is closed.
    pub const QUEUE_CLOSED: ErrorCode = ErrorCode("queue-closed");

    // ---- the image store and the disk ----
    /// No space left on the data directory's disk.
    pub const DISK_FULL: ErrorCode = ErrorCode("disk-full");
    /// The decode budget is in use; try again.
    pub const BUSY: ErrorCode = ErrorCode("busy");
    /// The file system failed.
    pub const IO_ERROR: ErrorCode = ErrorCode("io-error");

    // ---- the API ----
    /// The request is malformed.
    pub const BAD_REQUEST: ErrorCode = ErrorCode("bad-request");
    /// A field is out of range.
    pub const INVALID_FIELD: ErrorCode = ErrorCode("invalid-field");
    /// No such route or thing.
    pub const NOT_FOUND: ErrorCode = ErrorCode("not-found");
    /// The job has no result.
    pub const NO_RESULT: ErrorCode = ErrorCode("no-result");
    /// An export could not be written.
    pub const EXPORT_FAILED: ErrorCode = ErrorCode("export-failed");
    /// The request body is larger than the limit.
    pub const TOO_LARGE: ErrorCode = ErrorCode("too-large");
    /// Too many images in one request.
    pub const TOO_MANY_FILES: ErrorCode = ErrorCode("too-many-files");
    /// A form field is larger than its limit.
    pub const FIELD_TOO_LARGE: ErrorCode = ErrorCode("field-too-large");
    /// The body's content type is not the one the endpoint takes.
    pub const UNSUPPORTED_MEDIA_TYPE: ErrorCode = ErrorCode("unsupported-media-type");
    /// Importing by path is off.
    pub const IMPORT_DISABLED: ErrorCode = ErrorCode("import-disabled");
    /// The path is outside the import directories.
    pub const PATH_NOT_ALLOWED: ErrorCode = ErrorCode("path-not-allowed");
    /// An idempotency key (or dedupe key) already made a job from another request.
    pub const KEY_REUSED: ErrorCode = ErrorCode("idempotency-key-reused");
    /// The token is missing or wrong.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode("unauthorized");
    /// The Host does not name this server.
    pub const HOST_NOT_ALLOWED: ErrorCode = ErrorCode("host-not-allowed");
    /// Another site may not change the queue.
    pub const CROSS_SITE_REQUEST: ErrorCode = ErrorCode("cross-site-request");

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ErrorCode {
    fn eq(&self, other: &String) -> bool {
        self.0 == other
    }
}

impl PartialEq<ErrorCode> for String {
    fn eq(&self, other: &ErrorCode) -> bool {
        self == other.0
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_kebab_case() {
        for c in [
            ErrorCode::TIMEOUT,
            ErrorCode::GPU_OUT_OF_MEMORY,
            ErrorCode::CROSS_SITE_REQUEST,
        ] {
            let s = c.as_str();
            assert!(
                s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{s}"
            );
            assert_eq!(c.to_string(), s);
        }
        assert_eq!(ErrorCode::DISK_FULL, *"disk-full");
    }
}
