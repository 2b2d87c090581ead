"""What every step shares and no step owns."""
