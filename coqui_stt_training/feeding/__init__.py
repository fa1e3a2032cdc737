"""Checked samples to batches: loading, features, the feature cache, augmentation."""
