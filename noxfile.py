"""Development sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``demo``, ``fastapi_range``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"

# The oldest and the newest FastAPI release that pyproject.toml admits. The credit
# tests run on both because refunds depend on how FastAPI unwinds dependencies with
# yield, which changed in 0.118 (exit code after the response) and 0.121 (scopes).
# The feature tests run on both because require_feature relies on FastAPI reading
# overrides with app.dependency_overrides.get() while the mapping is not empty.
FASTAPI_RANGE = ["0.115.0", "latest"]

RANGE_TESTS = [
    "tests/test_credits.py",
    "tests/test_credits_faults.py",
    "tests/test_dependencies.py",
    "tests/test_feature_overrides.py",
]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite against the emulator on loopback."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check formatting and lint rules with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "aldero_fastapi", "demo_app", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "aldero_fastapi", "demo_app", "tests", "benchmarks")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy in strict mode."""
    session.install("-e", ".[test,lint]")
    session.run("mypy", "--strict", "aldero_fastapi")


@nox.session(python=PYTHON)
@nox.parametrize("fastapi", FASTAPI_RANGE)
def fastapi_range(session: nox.Session, fastapi: str) -> None:
    """Run the credit and feature tests on the oldest and the newest supported FastAPI."""
    session.install("-e", ".[test]")
    requirement = "fastapi" if fastapi == "latest" else f"fastapi=={fastapi}"
    session.install("--upgrade", requirement)
    session.run("python", "-c", "import fastapi; print('FastAPI', fastapi.__version__)")
    session.run("pytest", *RANGE_TESTS, *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Serve the demo on http://127.0.0.1:8000, on the embedded emulator unless a tenant is set."""
    session.install("-e", ".[demo]")
    session.run(
        "uvicorn",
        "demo_app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        # uvicorn's own logging configuration, plus the plugin's and the demo's loggers
        # at INFO with time, level and logger name.
        "--log-config",
        "demo_app/logging.json",
        *session.posargs,
    )
