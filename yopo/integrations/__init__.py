"""Integrations with other libraries: ``hf_stream`` scores Hugging Face transformers configs at
initialization layer by layer (streamed to disk, no download) and calibrates over the shards."""
