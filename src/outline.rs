//! Outlines: an object is an outer ring with its holes, in original-image pixel coordinates; and
//! the replaced ML service's flat polygon list, read and written (see ML-CONTRACT.md).
//!
//! Rings are closed implicitly (the last point connects to the first). Outer rings are stored
//! counter-clockwise in image coordinates (y down) as traced; nothing here depends on orientation:
//! every measure uses absolute areas.

use serde::{Deserialize, Serialize};

/// A vertex in image pixels; (0, 0) is the top-left corner of the top-left pixel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub fn new(x: f64, y: f64) -> Self {
        Point { x, y }
    }
}

/// One segmented object: its outer boundary and its own holes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub outer: Vec<Point>,
    pub holes: Vec<Vec<Point>>,
}

/// The `type` of an entry in the flat list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolygonKind {
    External,
    Internal,
}

/// A point as other tools wrote it: `{"x", "y"}` or `[x, y]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointIn {
    Object { x: f64, y: f64 },
    Pair([f64; 2]),
}

impl From<PointIn> for Point {
    fn from(p: PointIn) -> Self {
        match p {
            PointIn::Object { x, y } => Point { x, y },
            PointIn::Pair([x, y]) => Point { x, y },
        }
    }
}

/// One entry of the replaced ML service's polygon list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Polygon {
    pub id: String,
    pub points: Vec<PointIn>,
    #[serde(rename = "type")]
    pub kind: PolygonKind,
    pub class: String,
    #[serde(rename = "parentId", default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// A polygon list that does not describe objects.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OutlineError {
    /// A hole names no parent.
    #[error("hole {id} has no parentId")]
    MissingParent { id: String },
    /// A hole's parent is not an external polygon listed before it.
    #[error("hole {id} names parent {parent}, which is not an external polygon in the list")]
    UnknownParent { id: String, parent: String },
    /// A ring has fewer than three points or a coordinate that is not a finite number.
    #[error("polygon {id} is not a ring: {reason}")]
    BadRing { id: String, reason: &'static str },
}

/// The flat list: each external polygon followed by its holes. Ids are `polygon-N` and `hole-N-M`.
pub fn to_polygons(objects: &[Object]) -> Vec<Polygon> {
    let pts = |ring: &[Point]| -> Vec<PointIn> {
        ring.iter()
            .map(|p| PointIn::Object { x: p.x, y: p.y })
            .collect()
    };
    let mut out = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let id = format!("polygon-{}", i + 1);
        out.push(Polygon {
            id: id.clone(),
            points: pts(&o.outer),
            kind: PolygonKind::External,
            class: "spheroid".into(),
            parent_id: None,
            color: None,
        });
        for (j, h) in o.holes.iter().enumerate() {
            out.push(Polygon {
                id: format!("hole-{}-{}", i + 1, j + 1),
                points: pts(h),
                kind: PolygonKind::Internal,
                class: "hole".into(),
                parent_id: Some(id.clone()),
                color: None,
            });
        }
    }
    out
}

/// Objects from a flat list (from an ML service or a file). Holes attach to their `parentId`.
pub fn from_polygons(list: &[Polygon]) -> Result<Vec<Object>, OutlineError> {
    let mut objects: Vec<Object> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in list.iter().filter(|p| p.kind == PolygonKind::External) {
        index.insert(p.id.as_str(), objects.len());
        objects.push(Object {
            outer: ring(p)?,
            holes: Vec::new(),
        });
    }
    for p in list.iter().filter(|p| p.kind == PolygonKind::Internal) {
        let parent = p
            .parent_id
            .as_deref()
            .ok_or_else(|| OutlineError::MissingParent { id: p.id.clone() })?;
        let &i = index
            .get(parent)
            .ok_or_else(|| OutlineError::UnknownParent {
                id: p.id.clone(),
                parent: parent.to_owned(),
            })?;
        objects[i].holes.push(ring(p)?);
    }
    Ok(objects)
}

fn ring(p: &Polygon) -> Result<Vec<Point>, OutlineError> {
    let pts: Vec<Point> = p.points.iter().map(|&q| q.into()).collect();
    if pts.len() < 3 {
        return Err(OutlineError::BadRing {
            id: p.id.clone(),
            reason: "fewer than three points",
        });
    }
    if pts.iter().any(|q| !(q.x.is_finite() && q.y.is_finite())) {
        return Err(OutlineError::BadRing {
            id: p.id.clone(),
            reason: "a coordinate is not a finite number",
        });
    }
    Ok(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f64, y: f64, s: f64) -> Vec<Point> {
        vec![
            Point::new(x, y),
            Point::new(x + s, y),
            Point::new(x + s, y + s),
            Point::new(x, y + s),
        ]
    }

    #[test]
    fn flat_list_puts_holes_after_their_parent_and_round_trips() {
        let objects = vec![
            Object {
                outer: square(0.0, 0.0, 10.0),
                holes: vec![square(2.0, 2.0, 2.0), square(6.0, 6.0, 2.0)],
            },
            Object {
                outer: square(20.0, 20.0, 5.0),
                holes: vec![],
            },
        ];
        let list = to_polygons(&objects);
        let kinds: Vec<(PolygonKind, Option<&str>)> = list
            .iter()
            .map(|p| (p.kind, p.parent_id.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PolygonKind::External, None),
                (PolygonKind::Internal, Some("polygon-1")),
                (PolygonKind::Internal, Some("polygon-1")),
                (PolygonKind::External, None),
            ]
        );
        let json = serde_json::to_value(&list).expect("json");
        assert_eq!(json[0]["type"], "external");
        assert_eq!(json[0]["class"], "spheroid");
        assert_eq!(json[1]["parentId"], "polygon-1");
        assert_eq!(json[1]["class"], "hole");
        assert_eq!(
            json[0]["points"][1],
            serde_json::json!({"x": 10.0, "y": 0.0})
        );
        assert!(json[0].get("parentId").is_none());
        assert_eq!(from_polygons(&list).expect("parses"), objects);
    }

    #[test]
    fn reads_the_old_services_json_and_pairs() {
        let text = r##"[
          {"id": "polygon-1a2b3c4d", "points": [{"x": 20, "y": 20}, {"x": 21, "y": 20}, {"x": 21, "y": 22}],
           "type": "external", "class": "spheroid", "color": "#3357FF"},
          {"id": "hole-9f8e7d6c", "points": [[20.5, 20.5], [20.7, 20.5], [20.6, 20.9]],
           "type": "internal", "parentId": "polygon-1a2b3c4d", "class": "hole", "color": "#33FF33"}
        ]"##;
        let list: Vec<Polygon> = serde_json::from_str(text).expect("parses");
        let objects = from_polygons(&list).expect("objects");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].holes.len(), 1);
        assert_eq!(objects[0].holes[0][0], Point::new(20.5, 20.5));
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let mut list = to_polygons(&[Object {
            outer: square(0.0, 0.0, 4.0),
            holes: vec![square(1.0, 1.0, 1.0)],
        }]);
        list[1].parent_id = Some("polygon-9".into());
        assert!(matches!(
            from_polygons(&list),
            Err(OutlineError::UnknownParent { .. })
        ));
        list[1].parent_id = None;
        assert!(matches!(
            from_polygons(&list),
            Err(OutlineError::MissingParent { .. })
        ));
        list.truncate(1);
        list[0].points.truncate(2);
        assert!(matches!(
            from_polygons(&list),
            Err(OutlineError::BadRing { .. })
        ));
    }
}
