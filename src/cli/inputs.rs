//! The image files a command line names: files as given, folders walked (recursively, in name
//! order, for the extensions spheroseg reads), and glob patterns that the shell left alone (a
//! quoted `'plate1/*.tif'`, or a shell that does not expand them) matched against the files
//! under the pattern's literal start. Results folders spheroseg writes are never walked.

use std::path::{Path, PathBuf};

/// Extensions of the images spheroseg reads, lowercase.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"];
/// Folders spheroseg writes results to, skipped by a walk.
const RESULTS_DIRS: [&str; 2] = ["spheroseg-results", "spheroseg-out"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_glob(arg: &Path) -> bool {
    arg.to_string_lossy().contains(['*', '?', '['])
}

/// Every image under `dir`, in name order; `skip` (an output folder) is not walked.
fn walk(dir: &Path, skip: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let skipped = RESULTS_DIRS.contains(&name) || skip.is_some_and(|s| same_dir(s, &path));
            if !skipped {
                walk(&path, skip, out)?;
            }
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The files matching `pattern`, searched under its components before the first one with a
/// wildcard.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_string_lossy();
    let matcher = globset::GlobBuilder::new(&text)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{text}: not a glob pattern: {e}"))?
        .compile_matcher();
    let base: PathBuf = pattern
        .components()
        .take_while(|c| !is_glob(Path::new(c.as_os_str())))
        .collect();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut all = Vec::new();
    walk(&base, None, &mut all)?;
    let relative = base == Path::new(".") && !text.starts_with("./");
    Ok(all
        .into_iter()
        .filter(|p| {
            let p = if relative {
                p.strip_prefix(".").unwrap_or(p)
            } else {
                p
            };
            matcher.is_match(p)
        })
        .map(|p| {
            if relative {
                p.strip_prefix(".").map(Path::to_owned).unwrap_or(p)
            } else {
                p
            }
        })
        .collect())
}

/// The image files `args` name, in order, each once. A folder or pattern that holds no image is
/// an error; a file given by name is taken whatever its extension, and a path that does not
/// exist is passed on, for the command to report beside the others' results. `skip` is an
/// output folder.
pub(super) fn expand(args: &[PathBuf], skip: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = Vec::new();
    for arg in args {
        let found = if arg.is_dir() {
            let mut found = Vec::new();
            walk(arg, skip, &mut found)?;
            found
        } else if is_glob(arg) && !arg.exists() {
            glob(arg)?
        } else {
            // A file, or a path that is not there: the command reports it with the others.
            vec![arg.clone()]
        };
        if found.is_empty() {
            return Err(format!(
                "{}: holds no image ({})",
                arg.display(),
                IMAGE_EXTENSIONS.join(", ")
            ));
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_and_globs_matched_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            "b.png",
            "a.TIF",
            "notes.txt",
            "sub/c.jpg",
            "spheroseg-results/x.png",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, b"x").expect("write");
        }
        let got = expand(&[d.to_owned()], None).expect("walked");
        assert_eq!(got, [d.join("a.TIF"), d.join("b.png"), d.join("sub/c.jpg")]);
        let got = expand(&[d.join("*.png"), d.join("b.png")], None).expect("globbed");
        assert_eq!(got, [d.join("b.png")]);
        assert!(expand(&[d.join("*.bmp")], None).is_err());
        let missing = d.join("missing.png");
        assert_eq!(
            expand(std::slice::from_ref(&missing), None),
            Ok(vec![missing])
        );
        let got = expand(&[d.to_owned()], Some(&d.join("sub"))).expect("walked");
        assert_eq!(got.len(), 2);
    }
}
