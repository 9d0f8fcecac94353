"""Regimes: the routes (router.py), who may do what (permissions.py), what they do (service.py), and what a
request carries (bodies.py)."""

from api.routes.regimes.router import router

__all__ = ["router"]
