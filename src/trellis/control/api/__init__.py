"""The control plane's REST API (FastAPI): resources, registry, status, and the admin token."""

from trellis.control.api.app import create_app
from trellis.control.api.auth import AdminToken, TokenSetup, load_or_create
from trellis.control.api.state import ApiState

__all__ = ["AdminToken", "ApiState", "TokenSetup", "create_app", "load_or_create"]
