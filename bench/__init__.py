"""trialbridge's benchmark suite (``make bench``): figures as ratios against a baseline from the same run."""
