"""A FastAPI app that shows every part of aldero_fastapi, on the embedded emulator by default."""
