"""The library core: prunable layers, the scoring registry and ``score()``, MORT calibration,
masks, the family artifact, counting, the dataclass-to-argparse machinery, validation and atomic
I/O. It never imports ``yopo.experiment`` or ``yopo.cli``; the registry loads ``yopo.methods``
on first use."""
