"""Reports over the results store: tables now; rliable intervals, plots and leaderboards build on them."""
