"""Reports over results stores: read (frame), estimate (aggregate, speedup, reference), lay out (build, tables),
draw (plots) and publish (leaderboard: Markdown, HTML, CSV, JSON). `srpo-bench report` is the entry point."""
