"""Minimal Django project used by tests/integration/test_thirdparty.py."""
