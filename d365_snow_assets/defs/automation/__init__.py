"""What starts runs without a person: polling sensors (all off until an operator turns them on)."""
