//! Tensors on the wire. The request: the image as the [`Plan`] asks, in the binary tensor
//! extension (a JSON header whose length `Inference-Header-Content-Length` gives, then the raw
//! little-endian data) or as JSON numbers; the reply: the chosen output, from its binary part or
//! its JSON data, as a map of one value per pixel or as the polygon JSON a BYTES element holds.

use serde::{Deserialize, Serialize};

use super::plan::{Dim, Dtype, InputKind, Plan};
use crate::outline::Polygon;
use crate::segment::builtin::resize;

/// The header that gives the JSON part's length in a binary request or reply.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// How the image was fitted to the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    pub image: (usize, usize),
    pub model: (usize, usize),
}

/// The input tensor's data.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
    /// One BYTES element: the encoded file.
    Bytes(Vec<u8>),
}

/// An input tensor ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
    /// `None` for an encoded file (the model decodes and sizes it itself).
    pub scaling: Option<Scaling>,
}

/// The pixels of `gray` (its own units, `max` the largest value its bit depth holds), fitted and
/// laid out as `plan` asks. CPU-bound.
pub fn pixels(plan: &Plan, gray: &[f32], w: usize, h: usize, max: f32) -> Tensor {
    let InputKind::Pixels { dtype, dims } = &plan.kind else {
        unreachable!("pixels are made only for a pixel input")
    };
    let (mut mw, mut mh, mut channels, mut channels_last) = (w, h, 1, false);
    let mut seen_hw = false;
    let shape = dims
        .iter()
        .map(|d| match *d {
            Dim::Batch => 1,
            Dim::Channels(c) => {
                channels = c;
                channels_last = seen_hw;
                c
            }
            Dim::Height(m) => {
                mh = m.unwrap_or(h);
                seen_hw = true;
                mh
            }
            Dim::Width(m) => {
                mw = m.unwrap_or(w);
                mw
            }
        })
        .collect();
    let plane = resize(gray, w, h, mw, mh);
    let scale = 1.0 / max.max(f32::MIN_POSITIVE);
    let unit = |v: f32| (v * scale).clamp(0.0, 1.0);
    let order = |plane: Vec<f32>| -> Vec<f32> {
        match (channels, channels_last) {
            (1, _) => plane,
            (c, true) => plane
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, c))
                .collect(),
            (c, false) => plane.repeat(c),
        }
    };
    let values = order(plane);
    let data = match dtype {
        Dtype::U8 => Data::U8(
            values
                .iter()
                .map(|&v| (unit(v) * 255.0).round() as u8)
                .collect(),
        ),
        Dtype::U16 => Data::U16(
            values
                .iter()
                .map(|&v| (unit(v) * 65535.0).round() as u16)
                .collect(),
        ),
        Dtype::F32 => Data::F32(values.iter().map(|&v| unit(v)).collect()),
    };
    Tensor {
        name: plan.input.clone(),
        shape,
        data,
        scaling: Some(Scaling {
            image: (w, h),
            model: (mw, mh),
        }),
    }
}

/// The encoded file as the BYTES tensor `plan` asks for (`-1` dimensions are 1).
pub fn encoded(plan: &Plan, file: &[u8]) -> Tensor {
    let InputKind::Encoded { shape } = &plan.kind else {
        unreachable!("an encoded tensor is made only for a BYTES input")
    };
    let shape = if shape.is_empty() {
        vec![1]
    } else {
        shape.iter().map(|&d| d.max(1) as usize).collect()
    };
    Tensor {
        name: plan.input.clone(),
        shape,
        data: Data::Bytes(file.to_vec()),
        scaling: None,
    }
}

#[derive(Serialize)]
struct RequestJson<'a> {
    inputs: [InputJson<'a>; 1],
    outputs: [OutputRequest<'a>; 1],
}

#[derive(Serialize)]
struct InputJson<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<InputParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataJson<'a>>,
}

#[derive(Serialize)]
struct InputParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data_size: Option<usize>,
    /// MLServer's name for base64 text in a BYTES tensor sent as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DataJson<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    F32(&'a [f32]),
    Text([String; 1]),
}

#[derive(Serialize)]
struct OutputRequest<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<OutputParameters>,
}

#[derive(Serialize)]
struct OutputParameters {
    binary_data: bool,
}

/// A request body: the JSON header and, with the binary extension, the data after it.
pub struct Body {
    pub bytes: Vec<u8>,
    /// The JSON part's length when binary data follows it.
    pub header_len: Option<usize>,
}

/// The request for `tensor`, asking for `output`; binary (the data after the JSON) or JSON.
pub fn request(tensor: &Tensor, output: &str, binary: bool) -> Body {
    let raw: Vec<u8> = if binary {
        raw(&tensor.data)
    } else {
        Vec::new()
    };
    let datatype = match &tensor.data {
        Data::U8(_) => "UINT8",
        Data::U16(_) => "UINT16",
        Data::F32(_) => "FP32",
        Data::Bytes(_) => "BYTES",
    };
    let data = (!binary).then(|| match &tensor.data {
        Data::U8(v) => DataJson::U8(v),
        Data::U16(v) => DataJson::U16(v),
        Data::F32(v) => DataJson::F32(v),
        Data::Bytes(v) => DataJson::Text([base64(v)]),
    });
    let parameters = if binary {
        Some(InputParameters {
            binary_data_size: Some(raw.len()),
            content_type: None,
        })
    } else {
        matches!(tensor.data, Data::Bytes(_)).then_some(InputParameters {
            binary_data_size: None,
            content_type: Some("base64"),
        })
    };
    let json = RequestJson {
        inputs: [InputJson {
            name: &tensor.name,
            shape: &tensor.shape,
            datatype,
            parameters,
            data,
        }],
        outputs: [OutputRequest {
            name: output,
            parameters: binary.then_some(OutputParameters { binary_data: true }),
        }],
    };
    let mut bytes = serde_json::to_vec(&json).expect("a request serialises");
    let header_len = binary.then_some(bytes.len());
    bytes.extend_from_slice(&raw);
    Body { bytes, header_len }
}

/// Little-endian, row-major, no padding; a BYTES element is its 4-byte length, then its bytes.
fn raw(data: &Data) -> Vec<u8> {
    match data {
        Data::U8(v) => v.clone(),
        Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::Bytes(v) => {
            let mut out = (v.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(v);
            out
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

#[derive(Deserialize)]
struct ResponseJson {
    #[serde(default)]
    outputs: Vec<OutputJson>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
    #[serde(default)]
    parameters: Option<OutputParametersIn>,
    #[serde(default)]
    data: Option<Vec<Element>>,
}

#[derive(Deserialize)]
struct OutputParametersIn {
    #[serde(default)]
    binary_data_size: Option<usize>,
}

/// A JSON tensor element: flat or nested as the shape.
#[derive(Deserialize)]
#[serde(untagged)]
enum Element {
    Number(f64),
    Bool(bool),
    Text(String),
    Nested(Vec<Element>),
}

/// What the chosen output holds.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// One value per pixel of the model's output plane.
    Map { w: usize, h: usize, data: Vec<f32> },
    /// The polygons a BYTES element held, in original-image pixels.
    Polygons(Vec<Polygon>),
}

/// The polygon JSON a model may send: the replaced contract's list, bare or as `{"polygons"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PolygonJson {
    List(Vec<Polygon>),
    Object { polygons: Vec<Polygon> },
}

/// Reads output `name` of an infer reply (`header_len` from [`HEADER_LENGTH`] when binary data
/// follows the JSON). The error says what was wrong, naming the tensor.
pub fn output(body: &[u8], header_len: Option<usize>, name: &str) -> Result<Output, String> {
    let json_len = header_len.unwrap_or(body.len());
    if json_len > body.len() {
        return Err(format!(
            "the reply says its JSON part is {json_len} bytes but the body has {}",
            body.len()
        ));
    }
    let reply: ResponseJson = serde_json::from_slice(&body[..json_len]).map_err(|e| {
        let snippet = String::from_utf8_lossy(&body[..json_len.min(200)]).into_owned();
        format!("the reply is not an inference response ({e}): {snippet}")
    })?;
    let mut offset = json_len;
    let mut found = None;
    for o in reply.outputs.iter() {
        let size = o.parameters.as_ref().and_then(|p| p.binary_data_size);
        if o.name == name {
            found = Some((o, size.map(|s| (offset, s))));
        }
        offset += size.unwrap_or(0);
    }
    let Some((o, binary)) = found else {
        let sent: Vec<String> = reply
            .outputs
            .iter()
            .map(|o| format!("\"{}\"", o.name))
            .collect();
        return Err(format!(
            "the reply has no output tensor \"{name}\" (it sent: {})",
            if sent.is_empty() {
                "none".into()
            } else {
                sent.join(", ")
            }
        ));
    };
    let raw = match binary {
        Some((at, size)) => Some(body.get(at..at + size).ok_or_else(|| {
            format!("output tensor \"{name}\" claims {size} bytes past the end of the reply")
        })?),
        None => None,
    };
    if o.datatype == "BYTES" {
        let text = match (raw, &o.data) {
            (Some(r), _) => {
                let len = r
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                len.and_then(|l| r.get(4..4 + l))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }
            (None, Some(data)) => match data.first() {
                Some(Element::Text(t)) => Some(t.clone()),
                _ => None,
            },
            (None, None) => None,
        }
        .ok_or_else(|| format!("output tensor \"{name}\" (BYTES) holds no element"))?;
        let polygons = serde_json::from_str::<PolygonJson>(&text)
            .map_err(|e| format!("output tensor \"{name}\" (BYTES) is not a polygon list ({e})"))?;
        return Ok(Output::Polygons(match polygons {
            PolygonJson::List(p) | PolygonJson::Object { polygons: p } => p,
        }));
    }
    // H×W are the last two dimensions (before a trailing channel of 1); all others are 1.
    let mut dims: Vec<usize> = o.shape.iter().map(|&d| d.max(0) as usize).collect();
    if dims.len() > 2 && dims.last() == Some(&1) {
        dims.pop();
    }
    let plane = match dims.len() {
        n if n >= 2 && dims[..n - 2].iter().all(|&d| d == 1) => Some((dims[n - 2], dims[n - 1])),
        _ => None,
    };
    let Some((h, w)) = plane else {
        return Err(format!(
            "output tensor \"{name}\" has shape {:?}: spheroseg reads one probability or label \
             plane (H×W, with any other dimensions 1)",
            o.shape
        ));
    };
    let data = match raw {
        Some(r) => from_raw(r, &o.datatype).ok_or_else(|| {
            format!(
                "output tensor \"{name}\" has datatype {}; spheroseg reads BOOL, integer and \
                 FP32/FP64 maps, or BYTES",
                o.datatype
            )
        })?,
        None => {
            let mut v = Vec::with_capacity(w * h);
            for e in o.data.iter().flatten() {
                flatten(e, &mut v).map_err(|()| {
                    format!("output tensor \"{name}\" holds text where numbers belong")
                })?;
            }
            v
        }
    };
    if data.len() != w * h {
        return Err(format!(
            "output tensor \"{name}\" has shape {:?} but holds {} values",
            o.shape,
            data.len()
        ));
    }
    Ok(Output::Map { w, h, data })
}

fn flatten(e: &Element, out: &mut Vec<f32>) -> Result<(), ()> {
    match e {
        Element::Number(n) => out.push(*n as f32),
        Element::Bool(b) => out.push(f32::from(u8::from(*b))),
        Element::Nested(v) => {
            for e in v {
                flatten(e, out)?;
            }
        }
        Element::Text(_) => return Err(()),
    }
    Ok(())
}

fn from_raw(r: &[u8], datatype: &str) -> Option<Vec<f32>> {
    fn each<const N: usize>(r: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        r.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N")))
            .collect()
    }
    Some(match datatype {
        "BOOL" | "UINT8" => r.iter().map(|&b| f32::from(b)).collect(),
        "INT8" => r.iter().map(|&b| f32::from(b as i8)).collect(),
        "UINT16" => each(r, |b| f32::from(u16::from_le_bytes(b))),
        "INT16" => each(r, |b| f32::from(i16::from_le_bytes(b))),
        "UINT32" => each(r, |b| u32::from_le_bytes(b) as f32),
        "INT32" => each(r, |b| i32::from_le_bytes(b) as f32),
        "UINT64" => each(r, |b| u64::from_le_bytes(b) as f32),
        "INT64" => each(r, |b| i64::from_le_bytes(b) as f32),
        "FP32" => each(r, f32::from_le_bytes),
        "FP64" => each(r, |b| f64::from_le_bytes(b) as f32),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::oip::plan::InputKind;

    fn plan(dtype: Dtype, dims: Vec<Dim>) -> Plan {
        Plan {
            model: "m".into(),
            input: "image".into(),
            kind: InputKind::Pixels { dtype, dims },
            output: "mask".into(),
        }
    }

    #[test]
    fn pixels_follow_the_layout_and_the_model_size() {
        let p = plan(
            Dtype::U8,
            vec![
                Dim::Batch,
                Dim::Height(Some(4)),
                Dim::Width(Some(4)),
                Dim::Channels(3),
            ],
        );
        let t = pixels(&p, &[255.0; 4], 2, 2, 255.0);
        assert_eq!(t.shape, vec![1, 4, 4, 3]);
        assert_eq!(t.data, Data::U8(vec![255; 48]));
        assert_eq!(t.scaling.expect("scaled").model, (4, 4));
        let p = plan(
            Dtype::F32,
            vec![Dim::Channels(1), Dim::Height(None), Dim::Width(None)],
        );
        let t = pixels(&p, &[0.0, 65535.0], 2, 1, 65535.0);
        assert_eq!(
            (t.shape, t.data),
            (vec![1, 1, 2], Data::F32(vec![0.0, 1.0]))
        );
    }

    #[test]
    fn a_binary_request_puts_the_data_after_the_json() {
        let p = plan(Dtype::U16, vec![Dim::Height(None), Dim::Width(None)]);
        let t = pixels(&p, &[1.0, 2.0], 2, 1, 65535.0);
        let body = request(&t, "mask", true);
        let n = body.header_len.expect("binary");
        assert_eq!(&body.bytes[n..], &[1, 0, 2, 0]);
        let head: serde_json::Value = serde_json::from_slice(&body.bytes[..n]).expect("json");
        assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 4);
        assert_eq!(head["outputs"][0]["parameters"]["binary_data"], true);
        let json = request(&t, "mask", false);
        assert!(json.header_len.is_none());
        let head: serde_json::Value = serde_json::from_slice(&json.bytes).expect("json");
        assert_eq!(head["inputs"][0]["data"], serde_json::json!([1, 2]));
    }

    #[test]
    fn replies_are_read_from_binary_and_json() {
        let head = br#"{"outputs":[{"name":"other","datatype":"UINT8","shape":[1],"parameters":{"binary_data_size":1}},{"name":"mask","datatype":"FP32","shape":[1,1,1,2],"parameters":{"binary_data_size":8}}]}"#;
        let mut body = head.to_vec();
        body.push(9);
        body.extend(0.25f32.to_le_bytes());
        body.extend(1.0f32.to_le_bytes());
        let out = output(&body, Some(head.len()), "mask").expect("read");
        assert_eq!(
            out,
            Output::Map {
                w: 2,
                h: 1,
                data: vec![0.25, 1.0]
            }
        );
        let json =
            br#"{"outputs":[{"name":"mask","datatype":"INT64","shape":[2,1],"data":[[0],[1]]}]}"#;
        let out = output(json, None, "mask").expect("read");
        assert_eq!(
            out,
            Output::Map {
                w: 1,
                h: 2,
                data: vec![0.0, 1.0]
            }
        );
        let e = output(json, None, "prob").unwrap_err();
        assert!(e.contains("\"prob\"") && e.contains("\"mask\""), "{e}");
        let poly = br#"{"outputs":[{"name":"p","datatype":"BYTES","shape":[1],"data":["[{\"id\":\"a\",\"points\":[[0,0],[4,0],[4,4]],\"type\":\"external\",\"class\":\"spheroid\"}]"]}]}"#;
        let Output::Polygons(p) = output(poly, None, "p").expect("read") else {
            panic!("polygons expected")
        };
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
    }
}
