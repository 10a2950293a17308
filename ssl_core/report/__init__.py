"""Reports from results: the report document, terminal and Markdown tables, plots."""
