"""Model execution with torch: the only place that runs a forward pass or generation."""
