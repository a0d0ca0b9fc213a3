"""Network definitions (created by name through the registry) and the committed weight files."""

from pathlib import Path

from models.registry import create_model, list_models, register_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The embedder and the 68-point network the service loads unless told otherwise; training tools
#: default to them too (they live here, not in ``app``, so ``training`` never imports the service).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "arcface_iresnet18_half_80_celeba.pt"
DEFAULT_LANDMARK_WEIGHTS = WEIGHTS_DIR / "landmarks_integral_96.pt"

__all__ = [
    "DEFAULT_LANDMARK_WEIGHTS",
    "DEFAULT_WEIGHTS",
    "WEIGHTS_DIR",
    "create_model",
    "list_models",
    "register_model",
]
