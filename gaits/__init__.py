"""Gait generators: the analytical leg IK and the sinewave walking gait."""
