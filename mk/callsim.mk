# mk/callsim.mk: filled in by its area
