"""The HTTP API: FastAPI routers over the ledger's commands and read models."""
