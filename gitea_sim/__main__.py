"""`python -m gitea_sim serve --host 127.0.0.1 --port PORT --data DIR --admin-token TOKEN [--flavour forgejo]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aiohttp import web

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gitea_sim", description="A Gitea simulator for tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the simulated Gitea over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--data", type=Path, required=True, help="directory for the bare repositories")
    serve.add_argument("--admin-token", required=True, help="API token of the site admin user `admin`")
    serve.add_argument("--flavour", choices=("gitea", "forgejo"), default="gitea")
    serve.add_argument("--base-url", default="", help="public URL (default http://HOST:PORT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    base_url = args.base_url or f"http://{args.host}:{args.port}"
    app = create_app(args.data, args.admin_token, args.flavour, base_url)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
