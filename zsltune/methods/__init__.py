"""Method trainers. Importing this package registers every method; look one up with :func:`get_method`."""

from zsltune.errors import TrialDiverged, TrialOutOfMemory
from zsltune.methods import clarel, crnet, deml, linear, sgma, tlvsc  # noqa: F401  (importing registers the methods)
from zsltune.methods.base import LossMeter, Trainer
from zsltune.methods.feature_trainer import FeatureTrainer
from zsltune.methods.hparams import HP, Bool, Choice, Float, Int
from zsltune.methods.image_trainer import ImageTrainer
from zsltune.methods.registry import get_method, import_method, import_object, list_methods, method_ref, register_method
from zsltune.metrics import GZSL_KEYS, METRIC_FAMILIES, RETRIEVAL_KEYS

__all__ = [
    "GZSL_KEYS",
    "HP",
    "METRIC_FAMILIES",
    "RETRIEVAL_KEYS",
    "Bool",
    "Choice",
    "FeatureTrainer",
    "Float",
    "ImageTrainer",
    "Int",
    "LossMeter",
    "Trainer",
    "TrialDiverged",
    "TrialOutOfMemory",
    "get_method",
    "import_method",
    "import_object",
    "list_methods",
    "method_ref",
    "register_method",
]
