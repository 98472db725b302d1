"""The experiment layer, built on the library (``yopo.core``, ``yopo.methods``, ``yopo.models``) and
never imported by it: datasets and loaders (``data``), masked training (``train``), sweeps
(``sweep``) with their SQLite results store (``store``), reports (``report``), sanity-check mask
variants (``sanity``) and transfer metrics (``metrics``)."""
