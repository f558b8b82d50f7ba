"""A stand-in for the ResUNet behind an Open Inference Protocol server (Seldon MLServer), for
spheroseg's tests and benches: it takes out the uneven illumination (a quadratic background fitted
with the dark outliers left out), smooths, splits at Otsu's threshold and calls the darker side
spheroid (brightfield spheroids are darker than their field).

model-settings.json `parameters.extra` chooses what it answers:
  "reply": "map"      (default) the mask as a tensor of the input's height and width, in the
                      output's datatype (FP32 probabilities or UINT8 labels);
  "reply": "polygons" the replaced contract's polygon JSON in a BYTES tensor, one rectangle per
                      row span of the mask (input at the image's own size, so pixels are the
                      image's pixels);
  "sleep_ms": N       hold the server N ms per call, blocking (a GPU runs one call at a time),
                      for the bench and the outage test.
"""

import json
import time

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


def otsu(values):
    hist, edges = np.histogram(values, bins=256)
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return centres[int(np.argmax(between))]


def box_blur(img, r):
    padded = np.pad(img, r, mode="edge")
    c = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def flatten(img):
    """The image minus its illumination: a quadratic surface fitted to it, refitted three times
    without the pixels far below it (the spheroid)."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], -1).reshape(-1, 6)
    values = img.reshape(-1)
    keep = np.ones(h * w, bool)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
        residual = values - basis @ coef
        keep = residual > -2 * np.std(residual[keep])
    return residual.reshape(h, w)


def plane(array, shape):
    """The H×W plane of an image tensor laid out as the declared input shape says."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3:
        a = a[0] if a.shape[0] in (1, 3) and a.shape[2] not in (1, 3) else a[..., 0]
    return a


class ThresholdModel(MLModel):
    async def load(self) -> bool:
        extra = {}
        if self.settings.parameters is not None and self.settings.parameters.extra:
            extra = self.settings.parameters.extra
        self.reply = extra.get("reply", "map")
        self.sleep = float(extra.get("sleep_ms", 0)) / 1000.0
        outputs = self.settings.outputs or []
        self.out_name = outputs[0].name if outputs else "mask"
        self.out_dtype = outputs[0].datatype if outputs else "FP32"
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if self.sleep:
            time.sleep(self.sleep)
        tensor = payload.inputs[0]
        img = plane(NumpyCodec.decode_input(tensor), tensor.shape)
        smooth = box_blur(flatten(img), 2)
        mask = smooth < otsu(smooth)
        if self.reply == "polygons":
            text = json.dumps(polygons(mask))
            out = StringCodec.encode_output(self.out_name, [text])
        else:
            if self.out_dtype == "UINT8":
                data = mask.astype(np.uint8)
            else:
                data = mask.astype(np.float32)
            out = NumpyCodec.encode_output(self.out_name, data[np.newaxis, np.newaxis])
        return InferenceResponse(model_name=self.name, outputs=[out])


def polygons(mask):
    """One external polygon tracing the mask's row spans (left edges down, right edges up)."""
    rows = [y for y in range(mask.shape[0]) if mask[y].any()]
    if not rows:
        return []
    left, right = [], []
    for y in rows:
        xs = np.nonzero(mask[y])[0]
        left += [{"x": int(xs[0]), "y": y}, {"x": int(xs[0]), "y": y + 1}]
        right += [{"x": int(xs[-1]) + 1, "y": y}, {"x": int(xs[-1]) + 1, "y": y + 1}]
    points = left + right[::-1]
    return [{"id": "polygon-1", "points": points, "type": "external", "class": "spheroid"}]
