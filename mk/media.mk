# mk/media.mk: filled in by its area
