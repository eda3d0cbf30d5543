"""Residency: where data may go and where it does.

This package owns the region catalog (region ids, their countries, jurisdictions and the
user's own regions). It imports nothing from the rest of GeoGate, so the policy loader can
validate region ids with it without an import cycle.
"""

from geogate.residency.catalog import (
    Catalog,
    CatalogError,
    Network,
    Region,
    RegionSpec,
    UserRegion,
    build_catalog,
    bundled_catalog,
    catalog_for,
    format_path,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "Network",
    "Region",
    "RegionSpec",
    "UserRegion",
    "build_catalog",
    "bundled_catalog",
    "catalog_for",
    "format_path",
]
