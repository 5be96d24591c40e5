# mk/voice.mk: filled in by its area
