"""`python -m connectors.sandbox --host 127.0.0.1 --port 8100`: serve the sandbox backend.
Everything else is configured through ``LINLI_SANDBOX_…`` environment variables."""

from __future__ import annotations

import argparse

import uvicorn

from connectors.sandbox.app import create_sandbox_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connectors.sandbox",
                                     description="Stand-in government service backend (development and tests only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    # A request held by the "timeout" fault must not hold a shutdown for its full length.
    uvicorn.run(create_sandbox_app(), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
