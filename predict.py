"""Classify images: `python predict.py ckpt_path=…/best.ckpt inputs=photos/`. See the README."""

from cnnzoo.predict import main

if __name__ == "__main__":
    main()
