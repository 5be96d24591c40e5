# mk/shm.mk: filled in by its area
