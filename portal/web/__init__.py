"""The portal's web layer (FastAPI app, routes, templates)."""
