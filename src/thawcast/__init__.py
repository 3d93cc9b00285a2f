"""thawcast: forecast active-layer soil temperature and thaw of Alaska's permafrost.

Library modules (readers, geometry, aggregation, synthetic data, validation) are plain
functions on arrays and config sections; ``thawcast.stages`` wires them to files and
``thawcast.cli`` wires stages to commands.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thawcast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
