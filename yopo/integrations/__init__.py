"""Integrations with other libraries (each an optional extra, imported on use):

* ``hf_stream`` scores Hugging Face transformers configs at initialization layer by layer
  (streamed to disk, no download) and calibrates over the shards;
* ``torch_pruning`` removes pruned channels physically with Torch-Pruning (extra ``structured``);
* ``torch_prune``: YOPO as a ``torch.nn.utils.prune`` pruning method;
* ``hf_trainer`` / ``lightning``: callbacks that train with yopo masks (extras ``hf`` /
  ``lightning``), sharing ``masking`` (where their masks come from).
"""
