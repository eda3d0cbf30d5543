"""Residency: where data may go and where it does.

This package owns the region catalog (region ids, their countries, jurisdictions and the
user's own regions), the attribution of provider host names to regions, and the check that a
destination address lies in its region. It imports nothing from the rest of GeoGate, so the
policy loader can validate region ids with it without an import cycle.
"""

from geogate.residency.addresses import (
    AddressBook,
    AddressDataError,
    Match,
    StoredRanges,
    address_ranges_path,
    import_address_ranges,
    load_address_book,
)
from geogate.residency.attribution import (
    Attribution,
    Unattributable,
    attribute_host,
    attribute_url,
    classify_host,
    classify_url,
)
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
from geogate.residency.destinations import DestinationCheck, Evidence, RegionUnverified

__all__ = [
    "AddressBook",
    "AddressDataError",
    "Attribution",
    "Catalog",
    "CatalogError",
    "DestinationCheck",
    "Evidence",
    "Match",
    "Network",
    "Region",
    "RegionSpec",
    "RegionUnverified",
    "StoredRanges",
    "Unattributable",
    "UserRegion",
    "address_ranges_path",
    "attribute_host",
    "attribute_url",
    "build_catalog",
    "bundled_catalog",
    "catalog_for",
    "classify_host",
    "classify_url",
    "format_path",
    "import_address_ranges",
    "load_address_book",
]
