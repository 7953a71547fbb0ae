"""Export a checkpoint: `python export.py ckpt_path=…/best.ckpt format=onnx`. See the README."""

from cnnzoo.export import main

if __name__ == "__main__":
    main()
