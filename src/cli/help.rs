//! The help texts that clap cannot derive: an example for every subcommand, and `segment`'s
//! output files and parameters (from `view::param_fields`, the list the page's form is built
//! from, so the defaults printed here are the ones a job gets).

use std::fmt::Write;

use crate::view::{ParamField, ParamValue, param_fields};

pub(super) const SERVE: &str = "\
Examples:
  spheroseg serve
  spheroseg serve --data-dir /var/lib/spheroseg --bind 127.0.0.1:5001 --workers 4
  spheroseg serve --watch /mnt/microscope/export

The status page is at the address it prints (http://127.0.0.1:5001/ by default).";

pub(super) const SUBMIT: &str = "\
Examples:
  spheroseg submit plate1/*.tif --project plate1 --priority 8
  spheroseg submit plate1/ --params '{\"min_area_fraction\": 0.01}' --wait
  SPHEROSEG_TOKEN=secret spheroseg submit --server http://lab-server:5001 img.png --wait --json

With --wait it follows each job to its end and prints the objects and area found; the exit code
is 0 when every job completed and 1 when any failed.";

pub(super) const STATUS: &str = "\
Examples:
  spheroseg status
  spheroseg status --server http://lab-server:5001 --json";

pub(super) const JOBS: &str = "\
Examples:
  spheroseg jobs list --state failed
  spheroseg jobs list --project plate1 --limit 200 --json
  spheroseg jobs show 0190a5c3-7f1e-7cc2-9d1e-4b8e2f0c1a2b
  spheroseg jobs retry ID1 ID2
  spheroseg jobs cancel ID";

pub(super) const EXPORT: &str = "\
Examples:
  spheroseg export --project plate1 --format csv -o plate1.csv
  spheroseg export --project plate1 --format xlsx -o plate1.xlsx
  spheroseg export --project plate1 --format zip --originals -o plate1.zip";

pub(super) const DB: &str = "\
Examples:
  spheroseg db backup /srv/backups/spheroseg-2025-01-31 --images
  spheroseg db backup ./copy --data-dir ./spheroseg-data
  spheroseg db check --data-dir /srv/backups/spheroseg-2025-01-31

A backup is a data directory: `spheroseg serve --data-dir DEST` opens it.";

pub(super) const JOBS_LIST: &str = "\
Examples:
  spheroseg jobs list --state failed
  spheroseg jobs list --project plate1 --limit 200 --json";

pub(super) const JOBS_SHOW: &str = "\
Example:
  spheroseg jobs show 0190a5c3-7f1e-7cc2-9d1e-4b8e2f0c1a2b --json";

pub(super) const JOBS_CANCEL: &str = "\
Example:
  spheroseg jobs cancel 0190a5c3-7f1e-7cc2-9d1e-4b8e2f0c1a2b";

pub(super) const JOBS_RETRY: &str = "\
Example:
  spheroseg jobs retry $(spheroseg jobs list --state failed --json | jq -r '.jobs[].id')";

pub(super) const DB_BACKUP: &str = "\
Examples:
  spheroseg db backup /srv/backups/spheroseg-2025-01-31 --images
  spheroseg db backup ./copy --data-dir ./spheroseg-data

The backup is a data directory: `spheroseg serve --data-dir DEST` opens it.";

pub(super) const DB_CHECK: &str = "\
Examples:
  spheroseg db check --data-dir /srv/backups/spheroseg-2025-01-31
  spheroseg db check --data-dir ./spheroseg-data --json";

pub(super) const CONFIG_DEFAULT: &str = "\
Example:
  spheroseg config default > /etc/spheroseg/spheroseg.toml";

pub(super) const CONFIG_SHOW: &str = "\
Example:
  spheroseg config show --config /etc/spheroseg/spheroseg.toml --workers 8";

pub(super) const HEALTHCHECK: &str = "\
Examples:
  spheroseg healthcheck
  spheroseg healthcheck --ready --server http://127.0.0.1:5001";

pub(super) const DEMO_IMAGES: &str = "\
Example:
  spheroseg demo-images demo --size 512 --count 2 && spheroseg segment demo";

pub(super) const CONFIG: &str = "\
Examples:
  spheroseg config default > spheroseg.toml
  spheroseg config show --config /etc/spheroseg/spheroseg.toml";

/// `segment`'s help after the options: what it writes, every parameter with its default, and
/// examples.
pub(super) fn segment() -> String {
    let mut out = String::from(
        "Writes into --out (default spheroseg-out/), NAME being the image's file name without its \
         extension, for each --format:\n  \
         json        NAME.spheroseg.json  outlines, metrics, parameters\n  \
         csv         objects.csv, images.csv  a row per object, per image; units in the headers\n  \
         mask        NAME_mask.png        0/255\n  \
         legacy-csv  metrics.csv          the replaced design's 16 columns\n  \
         xlsx        results.xlsx         sheets objects and images\n  \
         coco        coco.json            COCO instance segmentation of the batch\n  \
         roi         NAME_rois.zip        an ImageJ ROI set\n  \
         labels      NAME_labels.png      a 16-bit label image\n  \
         overlay     NAME_overlay.png     numbered outlines on the image\n\n\
         Parameters (--params JSON; a key left out takes its default):\n",
    );
    let fields = param_fields();
    let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &fields {
        let _ = writeln!(
            out,
            "  {:width$}  {:>8}  {}{}",
            f.name,
            default_of(f),
            f.help,
            range_of(f)
        );
    }
    out.push_str(
        "\nExamples:\n  \
         spheroseg segment images/ --format json,csv,overlay\n  \
         spheroseg segment a.tif b.png --pixel-size-um 0.65 --params '{\"min_area_fraction\": 0.01}'",
    );
    out
}

fn default_of(f: &ParamField) -> String {
    match &f.default {
        Some(ParamValue::Boolean(b)) => b.to_string(),
        Some(ParamValue::Number(x)) => x.to_string(),
        Some(ParamValue::Integer(n)) => n.to_string(),
        Some(ParamValue::Text(t)) => t.clone(),
        None => "null".to_owned(),
    }
}

/// The allowed values, in brackets, for a number or a choice.
fn range_of(f: &ParamField) -> String {
    if !f.choices.is_empty() {
        let names: Vec<&str> = f.choices.iter().map(|c| c.value.as_str()).collect();
        return format!(" [{}]", names.join(", "));
    }
    let low = f
        .minimum
        .map(|m| format!("{m} ≤"))
        .or(f.exclusive_minimum.map(|m| format!("{m} <")));
    let unit = f.unit.map(|u| format!(" {u}")).unwrap_or_default();
    let null = f
        .null_means
        .map(|m| format!("; null: {m}"))
        .unwrap_or_default();
    match (low, f.maximum) {
        (Some(l), Some(h)) => format!(" [{l} x ≤ {h}{unit}{null}]"),
        (Some(l), None) => format!(" [{l} x{unit}{null}]"),
        (None, Some(h)) => format!(" [x ≤ {h}{unit}{null}]"),
        (None, None) if !null.is_empty() || !unit.is_empty() => {
            format!(" [{}{}]", unit.trim_start(), null.trim_start_matches("; "))
        }
        (None, None) => String::new(),
    }
}
