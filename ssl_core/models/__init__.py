"""Where an encoder comes from: checkpoint files of every layout, random init, a recipe's model."""
