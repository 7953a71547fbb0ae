"""Test a checkpoint: `python eval.py ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt`."""

from cnnzoo.eval import main

if __name__ == "__main__":
    main()
