"""The grid catalogue: every engagement kind reads elements its grid declares."""

from include.imis_thrive.thrive.grids import ENGAGEMENT_GRIDS, GRID_ELEMENTS, Grid


def test_every_engagement_grid_reads_elements_its_grid_declares():
    for kind, spec in ENGAGEMENT_GRIDS.items():
        for grid in spec.grids:
            declared = {element.lower() for element in GRID_ELEMENTS[grid]}
            assert {name.lower() for name in spec.return_fields()} <= declared, kind


def test_every_grid_token_has_its_elements_listed_and_engagement_grids_are_catalogued():
    assert set(GRID_ELEMENTS) == set(Grid)
    assert {grid for spec in ENGAGEMENT_GRIDS.values() for grid in spec.grids} <= set(Grid)
