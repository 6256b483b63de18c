"""Training the reference models (``ffbench train``, ``ffbench sweep``) and exporting them.

``config`` (settings, defaults, validation; no torch), ``model`` (Transformer, LSTM, memory
estimate), ``ssm`` (the selective state-space model), ``checkpoint`` (what inference loads),
``trainer`` (the resumable training loop and evaluation), ``sweep``, ``sharpen``, ``export``.
"""
