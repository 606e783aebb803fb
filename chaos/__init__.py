"""The fault-injection suite (`make chaos`): see chaos/__main__.py."""
