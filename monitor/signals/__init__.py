"""What results add up to: header dialects (headers), window statistics (stats) and each
check's signals (per_check). Pure: no I/O."""
