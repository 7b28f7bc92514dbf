"""Model catalog: specs, prices, capabilities, cost from usage."""

from tierwise.core import Capability, Usage
from tierwise.models.catalog import Catalog, load_builtin, spec_from_config
from tierwise.models.spec import ModelSpec

__all__ = ["Capability", "Catalog", "ModelSpec", "Usage", "load_builtin", "spec_from_config"]
