"""Export a trained model to ONNX or TorchScript, verified against PyTorch, with a JSON sidecar.

    >>> from cnnlab.export import export_model
    >>> result = export_model("runs/convnet-mnist", "onnx")   # runs/convnet-mnist/export/model.onnx(.json)
    >>> result.verification.max_abs_diff

ONNX needs the optional packages of `pip install "cnnlab[export]"`.
"""

from cnnlab.export.exporter import ExportResult, VerificationFailed, default_output, export_model
from cnnlab.export.predict import predict_exported
from cnnlab.export.runtime import FORMATS, ExportedModel, open_exported, read_metadata
from cnnlab.export.sidecar import sidecar_path, transform_from_preprocessing
from cnnlab.export.verify import Verification, verification_images, verify_export

__all__ = [
    "FORMATS",
    "ExportResult",
    "ExportedModel",
    "Verification",
    "VerificationFailed",
    "default_output",
    "export_model",
    "open_exported",
    "predict_exported",
    "read_metadata",
    "sidecar_path",
    "transform_from_preprocessing",
    "verification_images",
    "verify_export",
]
