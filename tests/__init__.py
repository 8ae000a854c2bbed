"""Test package (so same-named test files in tests/torch, tests/keras, ... do not collide)."""
