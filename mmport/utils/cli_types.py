"""argparse types shared by mmport's command lines (tools and benchmarks)."""
import argparse


def positive_int(text: str) -> int:
    """argparse type of a count that must be 1 or more (``--workers``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be 1 or more, got {value}')
    return value
