"""Read-only HTTP API over the results database (`oxeo-flows serve`).

`oxeo_flows.api.app.create_app` builds the FastAPI app (GET routes only, a read-only database engine);
`oxeo_flows.api.auth` holds the bearer-token checks (tokens are stored only as SHA-256 hashes);
`oxeo_flows.api.cli` adds the `serve` subcommand. Importing this package imports neither FastAPI nor
uvicorn, so the command line stays fast.
"""
