"""backmarket-syncer: a seller-side offer sync engine for the Back Market marketplace."""

__version__ = "0.1.0"
