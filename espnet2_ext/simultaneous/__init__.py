"""Simultaneous speech translation over our offline model, as FBK's agents run it.

Audio arrives in chunks; after each chunk the encoder re-runs on the features of
everything received so far, a policy decides what of a fresh hypothesis to commit,
and latency counts how much audio had arrived when each word was written.
Mutable per-stream state lives in small objects with ``reset()``; the decisions
are pure functions of arrays (STYLE.md, point 14). Importing the package loads
no torch.
"""
