//! What a model's metadata (`GET /v2/models/{model}[/versions/{v}]`) asks for, checked once into
//! a [`Plan`]: which input tensor gets the image and how (a pixel tensor in NCHW, NHWC, CHW, HWC
//! or HW layout, UINT8, UINT16 or FP32, at the model's size or the image's own where a dimension
//! is -1; or a BYTES tensor holding the encoded file), and which output to read. A mismatch is
//! an error that names the tensor and says what spheroseg can send.

use serde::Deserialize;

/// A tensor as the metadata describes it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    #[serde(default)]
    pub shape: Vec<i64>,
}

/// The model metadata response of the V2 protocol (the fields spheroseg reads).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub inputs: Vec<TensorMetadata>,
    #[serde(default)]
    pub outputs: Vec<TensorMetadata>,
}

/// The pixel type of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    U16,
    F32,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::U8 => "UINT8",
            Dtype::U16 => "UINT16",
            Dtype::F32 => "FP32",
        }
    }
}

/// One dimension of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Batch,
    Channels(usize),
    /// The model's height, or `None` (-1): the image's own.
    Height(Option<usize>),
    Width(Option<usize>),
}

/// How the image goes to the model.
#[derive(Clone, Debug, PartialEq)]
pub enum InputKind {
    /// Pixels, in the order of `dims`.
    Pixels { dtype: Dtype, dims: Vec<Dim> },
    /// The encoded file as one BYTES element, in a tensor of this shape.
    Encoded { shape: Vec<i64> },
}

/// The checked request plan for one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The model as the errors name it (`resunet` or `resunet` version `2`).
    pub model: String,
    pub input: String,
    pub kind: InputKind,
    /// The output tensor to read.
    pub output: String,
}

impl Plan {
    /// The plan for `meta`, reading output `output` (needed when the model has several).
    pub fn new(meta: &ModelMetadata, model: &str, output: Option<&str>) -> Result<Plan, String> {
        let input = match meta.inputs.as_slice() {
            [one] => one,
            [] => {
                return Err(format!(
                    "model {model} lists no inputs in its metadata: declare its input tensor \
                     (for MLServer, `inputs` in model-settings.json)"
                ));
            }
            many => {
                return Err(format!(
                    "model {model} has {} inputs ({}); spheroseg sends one image tensor",
                    many.len(),
                    names(many)
                ));
            }
        };
        let kind = input_kind(input, model)?;
        let output = match (output, meta.outputs.as_slice()) {
            (Some(o), []) => o.to_owned(),
            (Some(o), outputs) => {
                if !outputs.iter().any(|t| t.name == o) {
                    return Err(format!(
                        "model {model} has no output tensor \"{o}\" (it has: {})",
                        names(outputs)
                    ));
                }
                o.to_owned()
            }
            (None, [one]) => one.name.clone(),
            (None, []) => {
                return Err(format!(
                    "model {model} lists no outputs in its metadata: set ml.output to the \
                     tensor that holds the mask"
                ));
            }
            (None, many) => {
                return Err(format!(
                    "model {model} has {} outputs ({}): set ml.output to the one that holds \
                     the mask",
                    many.len(),
                    names(many)
                ));
            }
        };
        Ok(Plan {
            model: model.to_owned(),
            input: input.name.clone(),
            kind,
            output,
        })
    }
}

fn names(tensors: &[TensorMetadata]) -> String {
    tensors
        .iter()
        .map(|t| format!("\"{}\"", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn input_kind(t: &TensorMetadata, model: &str) -> Result<InputKind, String> {
    let dtype = match t.datatype.as_str() {
        "BYTES" => {
            return Ok(InputKind::Encoded {
                shape: t.shape.clone(),
            });
        }
        "UINT8" => Dtype::U8,
        "UINT16" => Dtype::U16,
        "FP32" => Dtype::F32,
        other => {
            return Err(format!(
                "input tensor \"{}\" of model {model} has datatype {other}; spheroseg sends \
                 images as UINT8, UINT16 or FP32, or the encoded file as BYTES",
                t.name
            ));
        }
    };
    let bad = || {
        format!(
            "input tensor \"{}\" of model {model} has shape {:?}: spheroseg sends an image as \
             NCHW, NHWC, CHW, HWC or HW with 1 or 3 channels",
            t.name, t.shape
        )
    };
    let channel = |d: i64| d == 1 || d == 3;
    let c = |d: i64| Dim::Channels(if d == 3 { 3 } else { 1 });
    let size = |d: i64| (d > 0).then_some(d as usize);
    let hw = |h: i64, w: i64| -> Result<[Dim; 2], String> {
        if h == 0 || w == 0 || h < -1 || w < -1 {
            return Err(bad());
        }
        Ok([Dim::Height(size(h)), Dim::Width(size(w))])
    };
    let dims = match *t.shape.as_slice() {
        [h, w] => hw(h, w)?.to_vec(),
        [n, a, b, d] if n == -1 || n == 1 => {
            if channel(d) && !channel(a) {
                let [h, w] = hw(a, b)?;
                vec![Dim::Batch, h, w, c(d)]
            } else if channel(a) {
                let [h, w] = hw(b, d)?;
                vec![Dim::Batch, c(a), h, w]
            } else {
                return Err(bad());
            }
        }
        [a, b, d] => {
            if channel(d) && !channel(a) {
                let [h, w] = hw(a, b)?;
                vec![h, w, c(d)]
            } else if channel(a) {
                let [h, w] = hw(b, d)?;
                vec![c(a), h, w]
            } else if a == -1 {
                let [h, w] = hw(b, d)?;
                vec![Dim::Batch, h, w]
            } else {
                return Err(bad());
            }
        }
        _ => return Err(bad()),
    };
    Ok(InputKind::Pixels { dtype, dims })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(inputs: &[(&str, &str, &[i64])], outputs: &[&str]) -> ModelMetadata {
        let t = |(n, d, s): &(&str, &str, &[i64])| TensorMetadata {
            name: n.to_string(),
            datatype: d.to_string(),
            shape: s.to_vec(),
        };
        ModelMetadata {
            name: "m".into(),
            versions: vec![],
            platform: String::new(),
            inputs: inputs.iter().map(t).collect(),
            outputs: outputs.iter().map(|n| t(&(n, "FP32", &[-1]))).collect(),
        }
    }

    #[test]
    fn layouts_are_read_from_the_shape() {
        let p = Plan::new(
            &meta(&[("x", "FP32", &[-1, 1, 1024, 1024])], &["y"]),
            "m",
            None,
        );
        let dims = vec![
            Dim::Batch,
            Dim::Channels(1),
            Dim::Height(Some(1024)),
            Dim::Width(Some(1024)),
        ];
        assert_eq!(
            p.expect("plan").kind,
            InputKind::Pixels {
                dtype: Dtype::F32,
                dims
            }
        );
        let p = Plan::new(&meta(&[("x", "UINT8", &[1, -1, -1, 3])], &["y"]), "m", None);
        let dims = vec![
            Dim::Batch,
            Dim::Height(None),
            Dim::Width(None),
            Dim::Channels(3),
        ];
        assert_eq!(
            p.expect("plan").kind,
            InputKind::Pixels {
                dtype: Dtype::U8,
                dims
            }
        );
        let p = Plan::new(&meta(&[("x", "BYTES", &[-1])], &["y"]), "m", None).expect("plan");
        assert_eq!(p.kind, InputKind::Encoded { shape: vec![-1] });
    }

    #[test]
    fn mismatches_name_the_tensor() {
        let e = Plan::new(
            &meta(&[("image", "INT64", &[1, 1, 8, 8])], &["y"]),
            "m",
            None,
        );
        assert!(e.unwrap_err().contains("\"image\""));
        let e = Plan::new(
            &meta(&[("image", "FP32", &[1, 5, 8, 8])], &["y"]),
            "m",
            None,
        );
        assert!(e.unwrap_err().contains("\"image\""));
        let e = Plan::new(
            &meta(&[("x", "FP32", &[8, 8])], &["a", "b"]),
            "m",
            Some("mask"),
        );
        assert!(e.unwrap_err().contains("\"mask\""));
        let e = Plan::new(&meta(&[("x", "FP32", &[8, 8])], &["a", "b"]), "m", None);
        assert!(e.unwrap_err().contains("ml.output"));
    }
}
