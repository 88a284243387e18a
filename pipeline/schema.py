"""The event record contract shared by the generator, the Spark job and the database.

Kept free of pyspark so the generator can import it without starting a JVM.
"""

EVENT_FIELDS = ("event_id", "user_id", "product_id", "event_type", "price", "event_time")
DEFAULT_EVENT_TYPES = ("view", "add_to_cart", "purchase", "remove_from_cart")

# Column widths of the `events` table (sql/001_schema.sql); longer values are rejected, not cut.
MAX_LENGTHS = {"event_id": 64, "user_id": 64, "product_id": 64, "event_type": 32}
# DECIMAL(12,2): ten digits before the point, at most two after.
PRICE_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"

# Reason codes written to events_rejected.reason, in the order they are checked.
REJECT_REASONS = (
    "invalid_utf8",
    "bad_header",
    "wrong_column_count",
    "broken_quoting",
    "missing_event_id",
    "missing_user_id",
    "field_too_long",
    "unknown_event_type",
    "bad_price",
    "negative_price",
    "bad_event_time",
)
