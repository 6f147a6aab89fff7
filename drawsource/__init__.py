"""A small HTTP service that plays hidden coins: the stand-in for the external draw API.

``GET /draw`` answers one draw (a run of flips) from a coin picked at random; the
coins, how often each is picked and the faults it injects come from ``DRAWSOURCE_*``
environment variables (see :mod:`drawsource.config`).
"""

from drawsource.app import create_app
from drawsource.coins import CoinPlayer
from drawsource.config import DrawSourceConfig

__all__ = ["CoinPlayer", "DrawSourceConfig", "create_app"]
