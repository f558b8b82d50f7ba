//! `spheroseg segment`: files and folders segmented offline, with a progress bar on a terminal
//! and a line per file otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Cli, Exit, WorkersArg};
use crate::offline::{self, Batch, Formats, Outcome};
use crate::segment::SegmentParams;

/// What `segment` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `NAME.spheroseg.json`: outlines, metrics, parameters.
    Json,
    /// `objects.csv` and `images.csv`, units in the headers.
    Csv,
    /// `metrics.csv` in the replaced design's 16 columns.
    LegacyCsv,
    /// `NAME_mask.png`, 0/255.
    Mask,
    /// `results.xlsx`, sheets objects and images.
    Xlsx,
    /// `coco.json`, COCO instance segmentation of the batch.
    Coco,
    /// `NAME_rois.zip`, an ImageJ ROI set.
    Roi,
    /// `NAME_labels.png`, a 16-bit label image.
    Labels,
    /// `NAME_overlay.png`, numbered outlines on the image.
    Overlay,
}

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Images (PNG, JPEG, TIFF 8/16-bit, BMP), folders (every image in them, recursively) or
    /// quoted glob patterns.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "spheroseg-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Outputs, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,csv,mask"
    )]
    pub format: Vec<Format>,
    /// Pixel size in micrometres, for metrics in µm.
    #[arg(long, value_name = "X")]
    pub pixel_size_um: Option<f32>,
    /// Segmentation parameters as JSON, e.g. '{"min_area_fraction": 0.01}'.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    #[command(flatten)]
    pub workers: WorkersArg,
}

pub(super) fn run(cli: &Cli, args: &SegmentArgs, env: HashMap<String, String>) -> Result<(), Exit> {
    let config = cli.load_config(env)?;
    let mut params: SegmentParams = match &args.params {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("--params is not valid segmentation parameters: {e}"))?,
        None => SegmentParams::default(),
    };
    if args.pixel_size_um.is_some() {
        params.pixel_size_um = args.pixel_size_um;
    }
    params.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let files =
        super::inputs::expand(&args.files, Some(&args.out)).map_err(|e| anyhow::anyhow!(e))?;
    let batch = Batch {
        workers: config.workers.min(files.len()).max(1),
        files,
        out: args.out.clone(),
        formats: Formats {
            json: args.format.contains(&Format::Json),
            csv: args.format.contains(&Format::Csv),
            legacy_csv: args.format.contains(&Format::LegacyCsv),
            mask: args.format.contains(&Format::Mask),
            xlsx: args.format.contains(&Format::Xlsx),
            coco: args.format.contains(&Format::Coco),
            roi: args.format.contains(&Format::Roi),
            labels: args.format.contains(&Format::Labels),
            overlay: args.format.contains(&Format::Overlay),
        },
        params,
        limits: config.decode_limits(),
    };
    let total = batch.files.len();
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .expect("valid progress template"),
        );
        bar
    });
    let mut failed = 0;
    let mut report = |o: &Outcome| {
        let line = match &o.result {
            Ok(r) => format!(
                "ok     {}: {} object(s), {:.0} ms{}",
                o.path.display(),
                r.objects.len(),
                o.millis,
                if r.image.pages > 1 {
                    format!(" (segmented the first of {} pages)", r.image.pages)
                } else {
                    String::new()
                }
            ),
            Err(reason) => {
                failed += 1;
                format!("FAILED {}: {reason}", o.path.display())
            }
        };
        match &bar {
            Some(bar) => {
                if o.result.is_err() {
                    bar.println(&line);
                }
                bar.inc(1);
            }
            None if o.result.is_err() => eprintln!("{line}"),
            None => println!("{line}"),
        }
    };
    offline::run(&batch, &mut report)?;
    if let Some(bar) = bar {
        bar.finish_with_message(format!("written to {}", batch.out.display()));
    }
    if failed > 0 {
        return Err(Exit::Partial { failed, total });
    }
    Ok(())
}
