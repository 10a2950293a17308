"""The embedded synthetic world: a procedural 3D renderer writing real dataset layouts."""
