"""Softmax classification three ways: the stage code of the DVC pipeline."""
