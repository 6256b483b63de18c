"""Training the paper's reference baselines (``ffbench train``) and exporting them."""
