//! Which files of a watched folder are taken: `include` and `exclude` glob patterns (globset),
//! matched without regard to case (acquisition software on Windows writes `A01.TIF`). A pattern
//! without a `/` matches a file's or folder's name at any depth, as in `.gitignore`; one with a
//! `/` matches the path below the watched folder, with `/` between its parts on every system,
//! `*` not crossing a `/` and `**` crossing any number. An excluded folder is not walked into.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The image types spheroseg reads.
pub const DEFAULT_INCLUDE: [&str; 6] = ["*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp"];
/// Hidden files (`.A01.tif`, macOS `._A01.tif`) and the `~` names some programs write first.
pub const DEFAULT_EXCLUDE: [&str; 2] = [".*", "~*"];

/// Compiled include and exclude patterns.
#[derive(Clone, Debug)]
pub struct Filter {
    include: Patterns,
    exclude: Patterns,
}

#[derive(Clone, Debug)]
struct Patterns {
    /// Patterns without a `/`: matched against the last part of the path.
    names: GlobSet,
    /// Patterns with a `/`: matched against the whole relative path.
    paths: GlobSet,
}

impl Patterns {
    fn new(list: &[String]) -> Result<Self, String> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in list {
            let glob = GlobBuilder::new(p.trim_start_matches('/'))
                .case_insensitive(true)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("{p:?} is not a glob pattern: {e}"))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| e.to_string());
        Ok(Patterns {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.names.is_match(name) || self.paths.is_match(rel)
    }
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Filter {
            include: Patterns::new(include).map_err(|e| format!("include: {e}"))?,
            exclude: Patterns::new(exclude).map_err(|e| format!("exclude: {e}"))?,
        })
    }

    /// Whether the file at `rel` (below the watched folder) is to be taken.
    pub fn takes(&self, rel: &Path) -> bool {
        let rel = slashed(rel);
        self.include.matches(&rel) && !self.exclude.matches(&rel)
    }

    /// Whether the folder at `rel` is walked into.
    pub fn enters(&self, rel: &Path) -> bool {
        !self.exclude.matches(&slashed(rel))
    }
}

/// A relative path with `/` between its parts, whatever the system's separator.
pub fn slashed(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_take_images_of_any_case_and_leave_temp_names() {
        let f = Filter::new(&strings(&DEFAULT_INCLUDE), &strings(&DEFAULT_EXCLUDE)).expect("ok");
        for yes in [
            "A01.tif",
            "plate1/B03.TIF",
            "x.PNG",
            "deep/er/z.jpeg",
            "a.bmp",
        ] {
            assert!(f.takes(Path::new(yes)), "{yes}");
        }
        for no in [
            "A01.tif.tmp",
            ".A01.tif",
            "._A01.tif",
            "~A01.tif",
            "notes.txt",
            "A01.tif.part",
        ] {
            assert!(!f.takes(Path::new(no)), "{no}");
        }
        assert!(f.enters(Path::new("plate1")));
        assert!(!f.enters(Path::new(".thumbnails")));
    }

    #[test]
    fn path_patterns_match_below_the_folder_and_prune_folders() {
        let f =
            Filter::new(&strings(&["*.tif"]), &strings(&["raw/**", "*_thumb.tif"])).expect("ok");
        assert!(f.takes(Path::new("plate/A01.tif")));
        assert!(!f.takes(Path::new("raw/A01.tif")));
        assert!(!f.takes(Path::new("A01_thumb.tif")));
        assert!(!f.enters(Path::new("raw/day1")));
        let only_top = Filter::new(&strings(&["/*.tif"]), &[]).expect("ok");
        assert!(only_top.takes(Path::new("A01.tif")));
        assert!(
            !only_top.takes(Path::new("sub/A01.tif")),
            "* does not cross /"
        );
        assert!(Filter::new(&strings(&["[a-"]), &[]).is_err());
    }
}
