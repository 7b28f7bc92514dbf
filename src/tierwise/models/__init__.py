"""Model catalog: specs, prices, capabilities, cost from usage."""

from tierwise.models.catalog import Catalog, load_builtin, spec_from_config
from tierwise.models.spec import Capability, ModelSpec, Usage

__all__ = ["Capability", "Catalog", "ModelSpec", "Usage", "load_builtin", "spec_from_config"]
