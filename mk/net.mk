# mk/net.mk: filled in by its area
