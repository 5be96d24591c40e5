# mk/store.mk: filled in by its area
