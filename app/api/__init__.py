"""The HTTP edge: the FastAPI app, its routes, dependencies, schemas and error answers."""
