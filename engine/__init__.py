"""The pure rebate engine: SPEC section 4 with no I/O stack (no asyncio, faust, redis, kafka)."""

from engine.errors import BadFill, ConfigError
from engine.fill import Fill, decode_fill, parse_fill
from engine.ledger import Ledger
from engine.rules import RuleBook
from engine.seed import Seed, SeedError, load_seed, parse_seed
from engine.settle import Settlement, settle

__version__ = "0.1.0"

__all__ = [
    "BadFill",
    "ConfigError",
    "Fill",
    "Ledger",
    "RuleBook",
    "Seed",
    "SeedError",
    "Settlement",
    "__version__",
    "decode_fill",
    "load_seed",
    "parse_fill",
    "parse_seed",
    "settle",
]
