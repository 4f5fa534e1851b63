"""Per-run result records (result.json) and their aggregation into tables."""
from .record import RESULT_FILE, build_record, read_result, write_result  # noqa: F401
