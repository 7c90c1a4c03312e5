"""Listings 6.35 and 6.36: the common-sense baseline on the Jena temperatures, and its error in degrees.

    python examples/06_jena_baseline.py            # the real file if seqtorch has it, else a synthetic one
    python examples/06_jena_baseline.py --small

Predict that the temperature 24 hours from now equals the temperature now. Its mean absolute error over
the validation batches is what a model must beat. The book's: 0.29 normalized, 2.57 degrees Celsius.
"""

import torch
from torch.utils.data import DataLoader

import book
import seqtorch
from seqtorch.data.jena import TEMPERATURE, naive_mae


def main(argv=None) -> float:
    args = book.arguments(__doc__, argv, epochs=0, data="jena")
    prep = book.jena(args)  # listings 6.28-6.34: the data and the generators' batches

    # Listing 6.35: computing the common-sense baseline MAE
    batch_maes = []
    for samples, targets in DataLoader(prep.eval_dataset("val"), batch_size=prep.batch_size):
        preds = samples[:, -1, TEMPERATURE]  # the last temperature of each window
        batch_maes.append(torch.mean(torch.abs(preds - targets)).item())
    val_mae = sum(batch_maes) / len(batch_maes)
    print(f"common-sense baseline: validation MAE {val_mae:.4f} (normalized)")
    assert abs(val_mae - naive_mae(prep.data, prep.val_batches, prep.spec)) < 1e-6  # seqtorch's own

    # Listing 6.36: converting the MAE back to a Celsius error
    celsius_mae = val_mae * prep.target_std
    print(f"that is {celsius_mae:.2f} degrees Celsius")
    return val_mae


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
