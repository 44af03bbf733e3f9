"""Models: the open_clip factory (named, hub, local-dir and shipped tiny configs) and wrappers."""
