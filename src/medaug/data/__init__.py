"""Data: readers (one file a format), synthetic radiographs, splits, k-shot and the array cache."""
