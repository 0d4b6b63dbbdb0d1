"""The flows the commands share: what a command runs once it has its config (see README, "Development")."""
