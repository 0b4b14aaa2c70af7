"""The example shop: its tasks live in :mod:`shop.tasks`."""
