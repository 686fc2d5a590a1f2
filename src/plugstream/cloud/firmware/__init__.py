"""PlugStream Cloud's firmware repository: signed images, downloads, rollouts."""
