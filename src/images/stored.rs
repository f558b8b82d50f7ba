//! A stored image decoded again, inside the decode budget, for work on it after its job ran:
//! the metrics of outlines corrected by hand are measured on the image itself.

use super::{BUDGET_WAIT, ImageStore, ImageStoreError};
use crate::segment::Decoded;
use crate::segment::decode::{decode_page, probe_from};

impl ImageStore {
    /// Runs `f` on page `page` (0 is the first) of the image `hash`, decoded while the decode
    /// budget holds its bytes. Blocking: call it off the async runtime.
    pub fn with_decoded<T>(
        &self,
        hash: &str,
        page: u32,
        f: impl FnOnce(&Decoded) -> T,
    ) -> Result<T, ImageStoreError> {
        let bytes = self.read(hash)?;
        let refused = |source| ImageStoreError::Refused {
            name: hash.to_owned(),
            source,
        };
        let header = probe_from(&bytes.as_slice(), &self.limits).map_err(refused)?;
        let _reserved = self
            .budget
            .reserve(header.footprint().decode_bytes(), BUDGET_WAIT)
            .ok_or_else(|| self.busy())?;
        let decoded = decode_page(&bytes, page, &self.limits).map_err(refused)?;
        Ok(f(&decoded))
    }
}
