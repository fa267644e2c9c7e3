"""Data sets shipped with the package (UCI Adult, for the demo and `document adult`) and the
identity of a data file as lineage records it."""
