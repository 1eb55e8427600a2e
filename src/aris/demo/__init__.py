"""Bundled material for ``aris demo``: a real chest radiograph and a locally built tiny model."""
