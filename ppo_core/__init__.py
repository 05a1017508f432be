"""ppo_core package."""
