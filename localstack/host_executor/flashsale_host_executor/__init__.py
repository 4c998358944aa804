"""LocalStack Lambda runtime executor that runs `provided.*` functions as host processes."""
