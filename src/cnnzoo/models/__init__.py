"""The architecture zoo. Importing this package registers every hand-built family."""

from cnnzoo.models import (  # noqa: F401  (imported for their registrations)
    alexnet,
    convnext,
    densenet,
    googlenet,
    lenet,
    preact_resnet,
    resnet,
)
from cnnzoo.models.registry import ModelSpec, create_model, get_spec, model_names, register, specs

__all__ = ["ModelSpec", "create_model", "get_spec", "model_names", "register", "specs"]
