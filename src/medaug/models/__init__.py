"""Networks by name: classifiers (``classifiers.py``) and segmentation policies (``policies.py``)."""
