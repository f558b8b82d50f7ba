//! Plate, well and other values from file names: a regular expression with named groups
//! (CellProfiler's metadata extraction), searched in the path below the watched folder (`/`
//! between folders), so a group may take a folder's name as well as the file's.

use std::path::Path;

use regex::Regex;

use super::filter::slashed;

/// A compiled `metadata` pattern.
#[derive(Clone, Debug)]
pub struct Metadata {
    re: Regex,
    names: Vec<String>,
}

impl Metadata {
    /// `pattern` must compile and name at least one group, e.g.
    /// `(?P<plate>plate\d+)_(?P<well>[A-P]\d{2})`.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let re = Regex::new(pattern).map_err(|e| {
            let first = e.to_string();
            let last = first.lines().last().unwrap_or_default().trim().to_owned();
            format!("{pattern:?} is not a regular expression: {last}")
        })?;
        let names: Vec<String> = re.capture_names().flatten().map(str::to_owned).collect();
        if names.is_empty() {
            return Err(format!(
                "{pattern:?} names no group: write (?P<well>[A-P]\\d{{2}}) for a column well"
            ));
        }
        Ok(Metadata { re, names })
    }

    /// The group names, in the pattern's order: the extra CSV columns.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The named values found in `rel`; a group that did not take part is absent.
    pub fn extract(&self, rel: &Path) -> Vec<(String, String)> {
        let text = slashed(rel);
        let Some(caps) = self.re.captures(&text) else {
            return Vec::new();
        };
        self.names
            .iter()
            .filter_map(|n| caps.name(n).map(|m| (n.clone(), m.as_str().to_owned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_groups_become_values() {
        let m = Metadata::new(r"(?P<plate>plate\d+)_(?P<well>[A-P]\d{2})").expect("ok");
        assert_eq!(m.names(), ["plate", "well"]);
        assert_eq!(
            m.extract(Path::new("run3/plate07_B03_day3.tif")),
            vec![
                ("plate".to_owned(), "plate07".to_owned()),
                ("well".to_owned(), "B03".to_owned())
            ]
        );
        assert!(m.extract(Path::new("A01.tif")).is_empty());
        let folder = Metadata::new(r"(?P<plate>[^/]+)/(?P<well>[A-P]\d{2})\.tif$").expect("ok");
        assert_eq!(folder.extract(Path::new("P7/A01.tif")).len(), 2);
    }

    #[test]
    fn a_pattern_must_compile_and_name_a_group() {
        assert!(Metadata::new(r"(?P<well>[A-P]").is_err());
        let e = Metadata::new(r"[A-P]\d{2}").expect_err("no group");
        assert!(e.contains("names no group"), "{e}");
    }
}
