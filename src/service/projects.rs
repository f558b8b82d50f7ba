//! What a lab remembers per project: the pixel size of the objective its images were taken with
//! ("10× objective: 0.65 µm/px"). Kept as queue marks under `project:` (JSON values), so a
//! setting is as durable as the jobs and needs no table of its own. A job of a project that gives
//! no pixel size of its own, and whose watch folder gives none, takes the project's when it is
//! submitted (`pixel_size_from = "project"` in its parameters); results then say so.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Service, ServiceError};
use crate::queue::Mark;
use crate::segment::calibration::PLAUSIBLE_UM;
use crate::segment::{PixelSizeGiven, SegmentParams};

/// The marks' key prefix.
const PREFIX: &str = "project:";
/// The longest project name.
pub const MAX_NAME: usize = 200;
/// The longest objective label.
const MAX_LABEL: usize = 200;

/// A project's remembered settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectSettings {
    /// Micrometres per pixel for the project's images; `null` leaves it to each image's file.
    pub pixel_size_um: Option<f32>,
    /// What the pixel size is for, in a person's words (e.g. `10× objective`).
    pub objective: Option<String>,
}

/// A project: its name and settings (serialised side by side: `name`, `pixel_size_um`,
/// `objective`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Project {
    pub name: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: ProjectSettingsView,
}

/// A project's settings as the project shows them, beside its name.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ProjectSettingsView {
    /// Micrometres per pixel for the project's images; `null` leaves it to each image's file.
    pub pixel_size_um: Option<f32>,
    /// What the pixel size is for, in a person's words (e.g. `10× objective`).
    pub objective: Option<String>,
}

impl From<ProjectSettings> for ProjectSettingsView {
    fn from(s: ProjectSettings) -> Self {
        ProjectSettingsView {
            pixel_size_um: s.pixel_size_um,
            objective: s.objective,
        }
    }
}

impl ProjectSettings {
    /// Checks the values a person gave.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if let Some(um) = self.pixel_size_um
            && !(um.is_finite() && PLAUSIBLE_UM.contains(&f64::from(um)))
        {
            return Err(invalid(
                "pixel_size_um",
                format!(
                    "{um} is not a pixel size: give micrometres per pixel between {} and {}",
                    PLAUSIBLE_UM.start(),
                    PLAUSIBLE_UM.end()
                ),
            ));
        }
        if self.objective.as_ref().is_some_and(|o| o.len() > MAX_LABEL) {
            return Err(invalid("objective", format!("at most {MAX_LABEL} bytes")));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, message: String) -> ServiceError {
    ServiceError::Invalid { field, message }
}

/// Checks a project name as a key.
fn check_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.trim() != name {
        return Err(invalid(
            "project",
            format!("a project name is 1 to {MAX_NAME} bytes, without leading or trailing spaces"),
        ));
    }
    Ok(())
}

impl Service {
    /// The settings remembered for `project` (the defaults when none are).
    pub fn project_settings(&self, project: &str) -> Result<ProjectSettings, ServiceError> {
        let key = format!("{PREFIX}{project}");
        Ok(self
            .queue
            .marks(&key)?
            .into_iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Every project: those that hold jobs and those with settings, in name order.
    pub fn projects(&self) -> Result<Vec<Project>, ServiceError> {
        let mut all: std::collections::BTreeMap<String, ProjectSettings> = self
            .queue
            .projects()?
            .into_iter()
            .map(|n| (n, ProjectSettings::default()))
            .collect();
        for (k, v) in self.queue.marks(PREFIX)? {
            if let (Some(name), Ok(s)) = (k.strip_prefix(PREFIX), serde_json::from_slice(&v)) {
                all.insert(name.to_owned(), s);
            }
        }
        Ok(all
            .into_iter()
            .map(|(name, settings)| Project {
                name,
                settings: settings.into(),
            })
            .collect())
    }

    /// Remembers `settings` for `project`, durably; all defaults forget them.
    pub async fn set_project(
        &self,
        project: &str,
        settings: ProjectSettings,
    ) -> Result<Project, ServiceError> {
        check_name(project)?;
        settings.validate()?;
        let settings = ProjectSettings {
            objective: settings
                .objective
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty()),
            ..settings
        };
        let value = (settings != ProjectSettings::default())
            .then(|| serde_json::to_vec(&settings).expect("settings serialise"));
        let mark = Mark {
            key: format!("{PREFIX}{project}"),
            value,
            jobs: Vec::new(),
        };
        self.queue.enqueue_marked(Vec::new(), vec![mark]).await?;
        Ok(Project {
            name: project.to_owned(),
            settings: settings.into(),
        })
    }

    /// The parameters a job of `project` runs with: `params` as given when they name a pixel
    /// size (from `given`), else with the project's remembered one.
    pub fn with_project_pixel_size(
        &self,
        project: Option<&str>,
        mut params: SegmentParams,
        given: PixelSizeGiven,
    ) -> Result<SegmentParams, ServiceError> {
        if params.pixel_size_um.is_some() {
            params.pixel_size_from = given;
            return Ok(params);
        }
        params.pixel_size_from = PixelSizeGiven::Job;
        if let Some(p) = project
            && let Some(um) = self.project_settings(p)?.pixel_size_um
        {
            params.pixel_size_um = Some(um);
            params.pixel_size_from = PixelSizeGiven::Project;
        }
        Ok(params)
    }
}
