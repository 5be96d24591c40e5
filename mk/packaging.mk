# mk/packaging.mk: filled in by its area
