#!/usr/bin/env python3
"""Write the behavioural test suite of the digits model: `models/repository/digits/suite.json`.

Run from the repository root after `models/train.py`:

    python3 models/digits_suite.py

The format is the credit model's (see `models/suites.py`); inputs are whole
rows of the `pixels` input (64 values, 0..16) and changes name one pixel
(`pixels[k]`). Three kinds of case:

- golden: the first image of each digit in the training data, and two more,
  with the class and that class's probability version 1 gives them
  (ONNX Runtime, 6 decimals), within `tolerance`;
- invariance: a faint dot (value 2) in a corner or on the border of an image
  the model is sure of (top probability above 0.9) must not change the
  predicted digit: ink where no digit is drawn is noise;
- minimum functionality: two clear images of each digit, a slice per digit
  (`digit 0` ... `digit 9`), each expected to be recognized.

There is no directional case: no pixel has a direction a digit must follow.
The script asserts that version 1 passes every case.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent
MODEL = ROOT / "repository/digits/1/model.onnx"
TOLERANCE = 1e-4
# Corner and border pixels of the 8x8 image, row-major.
FAINT_DOT_PIXELS = [0, 7, 56, 63, 8, 15, 48, 55, 1, 6, 57, 62]


def load() -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(ROOT / "data/digits_train.csv", delimiter=",", skiprows=1)
    return data[:, :-1].astype(np.float32), data[:, -1].astype(np.int64)


def run(session: ort.InferenceSession, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = session.run(["label", "probabilities"], {"pixels": images.astype(np.float32)})
    return labels, probabilities


def row(image: np.ndarray) -> list[int]:
    return [int(value) for value in image]


def golden_cases(session: ort.InferenceSession, images: np.ndarray, digits: np.ndarray) -> list[dict]:
    picks = [int(np.flatnonzero(digits == digit)[0]) for digit in range(10)]
    picks += [int(index) for index in np.flatnonzero(digits == 8)[1:3]]
    labels, probabilities = run(session, images[picks])
    cases = []
    for index, label, scores in zip(picks, labels, probabilities):
        cases.append(
            {
                "name": f"a {digits[index]} (training row {index + 1})",
                "inputs": {"pixels": row(images[index])},
                "expect": {"label": int(label), f"probabilities[{int(label)}]": round(float(scores[label]), 6)},
            }
        )
    return cases


def invariance_cases(session: ort.InferenceSession, images: np.ndarray, digits: np.ndarray) -> list[dict]:
    labels, probabilities = run(session, images)
    sure = [
        index
        for index in range(len(images))
        if labels[index] == digits[index] and probabilities[index].max() > 0.9
    ]
    cases = []
    for number, pixel in enumerate(FAINT_DOT_PIXELS):
        index = next(i for i in sure[number * 37 :] if images[i][pixel] == 0)
        cases.append(
            {
                "name": f"a faint dot at pixel {pixel} of a {digits[index]} (training row {index + 1})",
                "inputs": {"pixels": row(images[index])},
                "change": {f"pixels[{pixel}]": 2},
            }
        )
    return cases


def minimum_cases(session: ort.InferenceSession, images: np.ndarray, digits: np.ndarray) -> list[dict]:
    labels, probabilities = run(session, images)
    cases = []
    for digit in range(10):
        clear = [
            index
            for index in np.flatnonzero(digits == digit)
            if labels[index] == digit and probabilities[index].max() > 0.99
        ]
        for index in clear[-2:]:
            cases.append(
                {
                    "name": f"a clear {digit} (training row {index + 1})",
                    "slice": f"digit {digit}",
                    "inputs": {"pixels": row(images[index])},
                    "expect": {"label": digit},
                }
            )
    return cases


def check(session: ort.InferenceSession, suite: dict) -> None:
    """Version 1 passes every case, judged as the registry judges them."""
    for case in suite["golden"]:
        label, probabilities = run(session, np.array([case["inputs"]["pixels"]]))
        (name, expected_probability) = [(k, v) for k, v in case["expect"].items() if k != "label"][0]
        column = int(name[len("probabilities[") : -1])
        assert label[0] == case["expect"]["label"], case["name"]
        assert abs(probabilities[0][column] - expected_probability) <= TOLERANCE, case["name"]
    for case in suite["invariance"]:
        before = np.array(case["inputs"]["pixels"], dtype=np.float32)
        after = before.copy()
        for name, value in case["change"].items():
            after[int(name[len("pixels[") : -1])] = value
        labels, _ = run(session, np.stack([before, after]))
        assert labels[0] == labels[1], case["name"]
    for case in suite["minimum"]:
        labels, _ = run(session, np.array([case["inputs"]["pixels"]]))
        assert labels[0] == case["expect"]["label"], case["name"]


def main() -> None:
    session = ort.InferenceSession(str(MODEL))
    images, digits = load()
    suite = {
        "description": "Behavioural tests of the digits model: golden answers of version 1, faint dots that must not "
        "change a sure answer, and clear images of each digit. Written by models/digits_suite.py.",
        "class": "label",
        "tolerance": TOLERANCE,
        "min_pass_rate": 1.0,
        "golden": golden_cases(session, images, digits),
        "invariance": invariance_cases(session, images, digits),
        "minimum": minimum_cases(session, images, digits),
    }
    check(session, suite)
    path = ROOT / "repository/digits/suite.json"
    text = json.dumps(suite, indent=2, sort_keys=True)
    # An image's 64 values on one line: a case per screenful, not a pixel per line.
    text = re.sub(
        r"\[\n\s+((?:-?[\d.]+,\n\s+)*-?[\d.]+)\n\s+\]",
        lambda match: "[" + re.sub(r",\n\s+", ", ", match.group(1)) + "]",
        text,
    )
    path.write_text(text + "\n")
    counts = ", ".join(f"{len(suite[kind])} {kind}" for kind in ("golden", "invariance", "minimum"))
    print(f"wrote {path.relative_to(ROOT.parent)} ({counts}); version 1 passes every case")


if __name__ == "__main__":
    main()
