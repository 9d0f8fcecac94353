"""Regimes: the routes (router.py), who may do what (permissions.py), what they do (service.py), and what a
request carries (bodies.py)."""

from api.routes.regimes.router import router
from api.routes.regimes.service import REJECTION_STATUS  # tests/test_vocab.py compares it with the workflows'

__all__ = ["REJECTION_STATUS", "router"]
