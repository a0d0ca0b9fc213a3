"""Network definitions (created by name through the registry) and the committed weight files."""
from pathlib import Path

from models import backbones as _backbones  # noqa: F401  (registers the architectures)
from models import landmarker as _landmarker  # noqa: F401  (registers the landmark network)
from models.registry import create_model, list_models, register_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["WEIGHTS_DIR", "create_model", "list_models", "register_model"]
