"""The runner's own file handling: YAML read strictly (yamlio) and generated files replaced all together
or not at all (atomic)."""
